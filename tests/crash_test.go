package tests

// # Crash tests
//
// TestCrash checks wasmstream's exactly-once promise end to end: a job
// whose process dies by SIGKILL again and again, at random moments and at
// named points of its checkpoints and sink commits, and whose NATS server
// is restarted under it, must in the end have written exactly the records a
// plain-Go oracle computes for the whole stream.
//
// # What runs
//
// The job is the freqcap example (testdata/crash/*.yaml: 1-day sliding
// window, parallelism 2, checkpoints every 300ms). It runs in a child
// process, the wasmstream binary built from cmd/wasmstream once per test
// process, with the freqcap plugin built from examples/freqcap/plugin and
// written next to the job config:
//
//	wasmstream run -f job.yaml --nats nats://127.0.0.1:<port>
//
// The test owns the embedded NATS server (host/natsembed, store in a
// temporary directory, on a port kept across restarts). It publishes a
// generated freqcap stream (views 30 s apart, shuffled within the job's
// max_out_of_orderness) in paced batches, a further share of it during each
// run, so the job is live when it dies. Each run starts a fresh child,
// which restores the latest complete checkpoint, and ends in one of these
// ways:
//
//   - a fault point: WASMSTREAM_FAULTPOINT=<point>:<n> (internal/faultpoint)
//     makes the child kill itself the n-th time it passes <point>, one of
//     checkpoint.after-barrier, checkpoint.after-snapshot,
//     checkpoint.after-commit (during a checkpoint), sink.mid-publish and
//     sink.after-publish (during an exactly-once sink's commit); the child
//     must die there, of SIGKILL;
//   - SIGKILL after a random delay from the start, some short enough to
//     land in startup and restore;
//   - SIGKILL shortly after a new complete checkpoint appears in the
//     checkpoint storage;
//   - SIGKILL as soon as the sink subjects hold more records than when the
//     run started;
//   - a restart of the NATS server under the running job (down for
//     0.2–1.5 s), with events published before and after it. The job may
//     ride it out, and must then publish records again, or exit; either
//     way it is then killed or restarted.
//
// Waits for progress are bounded (crashWait) and fail with the child's
// log; no assertion depends on timing. Once the whole stream is published,
// a last child runs with --until-caught-up (a bounded run: it ends by
// firing every event-time timer) and must exit 0. The records on the sink
// subjects are then compared, as a multiset of (output, key, value), with
// freqcap.Expect for the whole stream:
//
//   - exactly_once sinks: nothing missing, nothing duplicated, nothing the
//     oracle does not have; every record carries a Nats-Msg-Id
//     "<job>/<checkpoint>/<worker>/<ordinal>"; a NATS KV bucket (the
//     committed-epoch markers) exists;
//   - at_least_once sinks: nothing missing, nothing the oracle does not
//     have; duplicates are counted and logged.
//
// In every variant the late-event and dead-letter subjects stay empty and
// `wasmstream checkpoints list -f job.yaml` succeeds and names the newest
// checkpoint.
//
// # Variants
//
//	exactly_once/memory               memory state, checkpoints in a directory
//	exactly_once/pebble               Pebble state, checkpoints in a directory
//	at_least_once/memory              at-least-once sinks
//	exactly_once/nats_restart/memory  memory state, checkpoints in a NATS
//	                                  Object Store, the NATS server
//	                                  restarted mid-run
//	exactly_once/nats_restart/pebble  the same with Pebble state, whose
//	                                  checkpoints share files
//
// # Reduced and full form
//
// The reduced form is the default (CI runs it; -short always selects it):
// 20,000 events per variant and 3–4 runs ending in a kill or a NATS
// restart: at least 4 + 4 + 3 + 1 + 1 kills and four NATS restarts,
// every fault point at least once; about 50 s on 2 cores:
//
//	go test ./tests -run TestCrash -v
//
// The full form runs 200,000 events and 24 runs ending in a kill per
// variant: every fault point twice in exactly_once/memory and
// exactly_once/pebble, the checkpoint ones twice in at_least_once/memory,
// two of them twice in each nats_restart variant, which also has six runs
// with a NATS restart; about 4 minutes on 2 cores:
//
//	WASMSTREAM_CRASH_FULL=1 go test ./tests -run TestCrash -v -timeout 60m
//	go test ./tests -run TestCrash -v -timeout 60m -crash.full
//
// The moments of the kills come from a seed the test logs;
// WASMSTREAM_CRASH_SEED=<n> repeats a schedule (the events are always the
// same). Each variant logs a summary line (runs, kills by kind, fault
// points fired, NATS restarts, records compared, duplicates). The output of
// every child (run with -v) goes to run-NN.log in the variant's job
// directory; on a failure the tail of the failing child's log is printed,
// and with WASMSTREAM_CRASH_KEEP=<dir> the job directory (logs,
// checkpoints, state) of a failed variant is copied there. When
// exactly-once records are lost or duplicated, the test also prints which
// records each checkpoint epoch and worker published, from their
// Nats-Msg-Ids.

import (
	"context"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wasmstream/wasmstream/examples/freqcap"
	"github.com/wasmstream/wasmstream/internal/jsread"
	"github.com/wasmstream/wasmstream/internal/wasmbuild"
)

var crashFullFlag = flag.Bool("crash.full", false, "run TestCrash in its full form (see tests/crash_test.go); also WASMSTREAM_CRASH_FULL=1")

const (
	// crashWait bounds every wait for progress of a child: reaching a fault
	// point, a new checkpoint, new sink records, a reconnect.
	crashWait = 60 * time.Second
	// crashFinalWait bounds the last, bounded run.
	crashFinalWait = 5 * time.Minute
	// crashSeed is the seed of the generated events.
	crashSeed = 61
)

// The fault points of the checkpoint and sink paths.
var (
	checkpointFaults = []string{"checkpoint.after-barrier", "checkpoint.after-snapshot", "checkpoint.after-commit"}
	sinkFaults       = []string{"sink.mid-publish", "sink.after-publish"}
)

// crashOutputs are the job's outputs, in the order of its sinks.
var crashOutputs = []string{"capped", "released"}

// crashForm is the size of a variant's campaign.
type crashForm struct {
	full   bool
	events int
	// Publishing pace: batches of batch events, pause apart.
	batch int
	pause time.Duration
	// runs is the number of runs ending in a kill in the full form, before
	// the NATS restarts and the last, bounded run; the reduced form's
	// schedules are fixed per variant.
	runs int
}

func crashFormFor() crashForm {
	if (*crashFullFlag || os.Getenv("WASMSTREAM_CRASH_FULL") == "1") && !testing.Short() {
		return crashForm{full: true, events: 200_000, batch: 250, pause: 20 * time.Millisecond, runs: 24}
	}
	return crashForm{events: 20_000, batch: 100, pause: 20 * time.Millisecond}
}

// killKind is how a run ends.
type killKind int

const (
	killFault           killKind = iota // the child dies at an armed fault point
	killDelay                           // SIGKILL after a delay from the start
	killAfterCheckpoint                 // SIGKILL shortly after a new complete checkpoint
	killAfterOutput                     // SIGKILL as soon as the sinks hold more records
	killServerRestart                   // the NATS server restarts under the job
)

// plan is how one run ends.
type plan struct {
	kind  killKind
	point string        // killFault
	n     int           // killFault: the pass of point that kills
	delay time.Duration // killDelay, killAfterCheckpoint: before SIGKILL; killServerRestart: the outage
}

func (p plan) String() string {
	switch p.kind {
	case killFault:
		return fmt.Sprintf("fault point %s:%d", p.point, p.n)
	case killDelay:
		return fmt.Sprintf("SIGKILL after %s", p.delay.Round(time.Millisecond))
	case killAfterCheckpoint:
		return fmt.Sprintf("SIGKILL %s after a new checkpoint", p.delay.Round(time.Millisecond))
	case killAfterOutput:
		return "SIGKILL on new sink records"
	case killServerRestart:
		return fmt.Sprintf("NATS server down for %s", p.delay.Round(time.Millisecond))
	}
	return "?"
}

// planner draws the random parts of plans.
type planner struct {
	rng      *rand.Rand
	interval time.Duration // the job's checkpoint interval
}

func (pl planner) fault(point string) plan {
	return plan{kind: killFault, point: point, n: 1 + pl.rng.IntN(3)}
}

func (pl planner) delay() plan {
	// A quarter die early: during startup and restore.
	if pl.rng.IntN(4) == 0 {
		return plan{kind: killDelay, delay: 50*time.Millisecond + time.Duration(pl.rng.Int64N(int64(450*time.Millisecond)))}
	}
	return plan{kind: killDelay, delay: 500*time.Millisecond + time.Duration(pl.rng.Int64N(int64(2*time.Second)))}
}

func (pl planner) afterCheckpoint() plan {
	return plan{kind: killAfterCheckpoint, delay: time.Duration(pl.rng.Int64N(int64(pl.interval)))}
}

func (pl planner) serverRestart() plan {
	return plan{kind: killServerRestart, delay: 200*time.Millisecond + time.Duration(pl.rng.Int64N(int64(1300*time.Millisecond)))}
}

// random is a delay, checkpoint or output kill.
func (pl planner) random() plan {
	switch pl.rng.IntN(3) {
	case 0:
		return pl.delay()
	case 1:
		return pl.afterCheckpoint()
	}
	return plan{kind: killAfterOutput}
}

// crashVariant is one job config under a schedule of kills.
type crashVariant struct {
	name   string
	config string // in testdata/crash
	// reduced is the schedule of the reduced form.
	reduced func(planner) []plan
	// faults are the fault points of the full form, each used twice;
	// restarts the NATS restarts of the full form.
	faults   []string
	restarts int
}

var crashVariants = []crashVariant{
	{
		name:   "exactly_once/memory",
		config: "exactly_once_memory.yaml",
		reduced: func(pl planner) []plan {
			return []plan{pl.fault("checkpoint.after-barrier"), pl.fault("sink.mid-publish"), pl.fault("checkpoint.after-snapshot"), pl.delay()}
		},
		faults: append(slices.Clone(checkpointFaults), sinkFaults...),
	},
	{
		name:   "exactly_once/pebble",
		config: "exactly_once_pebble.yaml",
		reduced: func(pl planner) []plan {
			return []plan{pl.fault("checkpoint.after-commit"), pl.afterCheckpoint(), pl.fault("sink.after-publish"), pl.delay()}
		},
		faults: append(slices.Clone(checkpointFaults), sinkFaults...),
	},
	{
		name:   "at_least_once/memory",
		config: "at_least_once_memory.yaml",
		reduced: func(pl planner) []plan {
			return []plan{{kind: killAfterOutput}, pl.afterCheckpoint(), pl.delay()}
		},
		faults: checkpointFaults,
	},
	{
		name:   "exactly_once/nats_restart/memory",
		config: "exactly_once_object_store_memory.yaml",
		reduced: func(pl planner) []plan {
			return []plan{pl.serverRestart(), {kind: killAfterOutput}, pl.serverRestart()}
		},
		faults:   []string{"checkpoint.after-commit", "sink.mid-publish"},
		restarts: 6,
	},
	{
		name:   "exactly_once/nats_restart/pebble",
		config: "exactly_once_object_store_pebble.yaml",
		reduced: func(pl planner) []plan {
			return []plan{pl.serverRestart(), pl.fault("checkpoint.after-snapshot"), pl.serverRestart()}
		},
		faults:   []string{"checkpoint.after-barrier", "sink.after-publish"},
		restarts: 6,
	},
}

// schedule returns the plans of v's runs in form f.
func (v crashVariant) schedule(f crashForm, pl planner) []plan {
	if !f.full {
		return v.reduced(pl)
	}
	var plans []plan
	for range 2 {
		for _, p := range v.faults {
			plans = append(plans, pl.fault(p))
		}
	}
	for len(plans) < f.runs {
		plans = append(plans, pl.random())
	}
	for range v.restarts {
		plans = append(plans, pl.serverRestart())
	}
	pl.rng.Shuffle(len(plans), func(i, j int) { plans[i], plans[j] = plans[j], plans[i] })
	return plans
}

func TestCrash(t *testing.T) {
	form := crashFormFor()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("WASMSTREAM_CRASH_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("WASMSTREAM_CRASH_SEED=%q: want a decimal integer", s)
		}
		seed = n
	}
	name := "reduced"
	if form.full {
		name = "full"
	}
	t.Logf("crash tests, %s form: %d events per variant; kill schedule seed %d (WASMSTREAM_CRASH_SEED=%d repeats it)", name, form.events, seed, seed)
	bin := buildWasmstream(t)
	wasm := wasmbuild.ForTest(t, "examples/freqcap/plugin")
	for i, v := range crashVariants {
		t.Run(v.name, func(t *testing.T) {
			c := newCampaign(t, v, form, bin, wasm, seed+uint64(i))
			c.run()
		})
	}
}

// campaign is one variant's sequence of runs and its final check.
type campaign struct {
	t       *testing.T
	v       crashVariant
	form    crashForm
	bin     string
	dir     string
	jobPath string
	job     *crashJob
	srv     *crashServer
	pub     *publisher
	data    [][]byte
	want    []string
	plans   []plan

	// What happened, for the summary.
	runs           int
	kills          map[string]int // by kind
	faults         map[string]int // fault points that fired
	serverRestarts int
	outageExits    int // children that exited during a NATS restart
}

func newCampaign(t *testing.T, v crashVariant, form crashForm, bin string, wasm []byte, seed uint64) *campaign {
	t.Helper()
	dir := t.TempDir()
	if keep := os.Getenv("WASMSTREAM_CRASH_KEEP"); keep != "" {
		t.Cleanup(func() {
			if !t.Failed() {
				return
			}
			to := filepath.Join(keep, strings.ReplaceAll(t.Name(), "/", "_"))
			if err := os.CopyFS(to, os.DirFS(dir)); err != nil {
				t.Logf("keeping the job directory: %v", err)
				return
			}
			t.Logf("job directory kept in %s", to)
		})
	}
	job, jobPath := loadCrashJob(t, v.config, dir)
	if err := os.WriteFile(filepath.Join(dir, job.Plugin.Path), wasm, 0o644); err != nil {
		t.Fatal(err)
	}
	interval := job.duration(t, "checkpoint.interval", job.Checkpoint.Interval)
	bound := job.duration(t, "event_time.max_out_of_orderness", job.EventTime.MaxOutOfOrderness).Milliseconds()

	// Views 30 s apart: with the 1-day window pairs are capped and released
	// within the stream.
	data := freqcap.Generate(form.events, freqcap.GenOptions{Seed: crashSeed, Users: 300, Ads: 30, StepMs: 30_000, Disorder: bound})
	var want []string
	outputs := map[string]int{}
	for _, r := range freqcap.Expect(data, freqcap.Params{Cap: int(job.pluginInt(t, "cap")), Window: job.pluginInt(t, "window_ms"), MaxOutOfOrderness: bound}) {
		want = append(want, r.Output+" "+r.Key+" "+r.Value)
		outputs[r.Output]++
	}
	if outputs["capped"] < 500 || outputs["released"] < 500 {
		t.Fatalf("the oracle has %v records: the stream does not exercise the window", outputs)
	}

	srv := newCrashServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), crashWait)
	defer cancel()
	if _, err := srv.js.CreateStream(ctx, jetstream.StreamConfig{Name: job.Source.Stream, Subjects: job.Source.Subjects}); err != nil {
		t.Fatal(err)
	}
	subject := strings.TrimSuffix(job.Source.Subjects[0], ">") + "web"
	pub := newPublisher(srv, subject, data, form.batch, form.pause)
	t.Cleanup(pub.stop)

	pl := planner{rng: rand.New(rand.NewPCG(seed, seed^0x5eed)), interval: interval}
	return &campaign{
		t: t, v: v, form: form, bin: bin, dir: dir, jobPath: jobPath, job: job, srv: srv, pub: pub,
		data: data, want: want, plans: v.schedule(form, pl),
		kills: map[string]int{}, faults: map[string]int{},
	}
}

// outputs returns how many records the sink subjects hold.
func (c *campaign) outputs() (uint64, error) {
	var n uint64
	for _, o := range crashOutputs {
		k, err := c.srv.subjectCount(c.job.sinkSubject(o))
		if err != nil {
			return 0, err
		}
		n += k
	}
	return n, nil
}

// outputsNow returns how many records the sink subjects hold, asking
// again while the server does not answer (it may be recovering its
// streams after a restart).
func (c *campaign) outputsNow(what string) uint64 {
	deadline := time.Now().Add(crashWait)
	for {
		n, err := c.outputs()
		if err == nil {
			return n
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s: counting the sink records: %v", what, err)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// outputsBeyond reports whether the sink subjects hold more than n
// records.
func (c *campaign) outputsBeyond(n uint64) bool {
	k, err := c.outputs()
	return err == nil && k > n
}

// start starts run i of the job.
func (c *campaign) start(i int, fault string, extra ...string) *child {
	args := append([]string{"run", "-f", c.jobPath, "--nats", c.srv.url, "--status", "1s", "-v"}, extra...)
	c.runs++
	return startChild(c.t, c.bin, c.dir, filepath.Join(c.dir, fmt.Sprintf("run-%02d.log", i)), fault, args...)
}

func (c *campaign) kill(ch *child, how string) {
	ch.kill()
	c.kills[how]++
}

// exitedOnItsOwn fails the test: an unbounded run ended without being
// killed.
func (c *campaign) exitedOnItsOwn(what string, ch *child) {
	c.t.Fatalf("%s: the job exited on its own (%s) after %s; its log ends:\n%s", what, ch.status(), time.Since(ch.start).Round(time.Millisecond), ch.tail(30))
}

// await polls cond until it holds; it fails the test when the child ends
// first or crashWait passes.
func (c *campaign) await(what string, ch *child, desc string, cond func() bool) {
	deadline := time.Now().Add(crashWait)
	for !cond() {
		if ch.exited() {
			c.exitedOnItsOwn(what+", waiting for "+desc, ch)
		}
		if time.Now().After(deadline) {
			ch.kill()
			c.t.Fatalf("%s: no %s within %s of the start; the job's log ends:\n%s", what, desc, crashWait, ch.tail(30))
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func (c *campaign) run() {
	t := c.t
	n := len(c.data)
	t.Logf("%s: %d events, %d runs ending in a kill or a NATS restart, then a bounded run; job directory %s", c.v.name, n, len(c.plans), c.dir)
	for i, p := range c.plans {
		// Run i gets the i-th share of the stream, published while it runs.
		c.runOne(i, p, n*i/len(c.plans), n*(i+1)/len(c.plans))
		if _, err := c.pub.progress(); err != nil {
			t.Fatal(err)
		}
	}

	if err := c.pub.waitAll(crashWait); err != nil {
		t.Fatal(err)
	}
	ch := c.start(len(c.plans), "", "--until-caught-up")
	if !ch.waitExit(crashFinalWait) {
		ch.kill()
		t.Fatalf("the bounded run (--until-caught-up) did not end within %s; its log ends:\n%s", crashFinalWait, ch.tail(30))
	}
	if ch.err != nil {
		t.Fatalf("the bounded run (--until-caught-up) ended with %s; its log ends:\n%s", ch.status(), ch.tail(30))
	}
	t.Logf("bounded run: %s", lastLine(ch.log()))
	c.check()
}

// runOne runs the job once, publishing events up to hi meanwhile, and ends
// the run as p says.
func (c *campaign) runOne(i int, p plan, lo, hi int) {
	t := c.t
	what := fmt.Sprintf("run %d (%s)", i, p)
	fault := ""
	if p.kind == killFault {
		fault = p.point + ":" + strconv.Itoa(p.n)
	}
	startCk, startOut := c.srv.newestCheckpoint(c.job), c.outputsNow(what)
	if p.kind == killServerRestart {
		c.pub.upTo((lo + hi) / 2) // the rest after the restart
	} else {
		c.pub.upTo(hi)
	}
	ch := c.start(i, fault)
	outcome := ""
	switch p.kind {
	case killFault:
		if !ch.waitExit(crashWait) {
			ch.kill()
			t.Fatalf("%s: the job did not reach %s within %s (is the fault point on the %s path?); its log ends:\n%s", what, fault, crashWait, strings.Split(p.point, ".")[0], ch.tail(30))
		}
		if !ch.sigkilled() || !strings.Contains(ch.log(), "fault point "+p.point+":") {
			t.Fatalf("%s: the job ended (%s) without being killed at fault point %s; its log ends:\n%s", what, ch.status(), p.point, ch.tail(30))
		}
		c.faults[p.point]++
		c.kills["fault point"]++
		outcome = "killed at " + p.point

	case killDelay:
		if ch.waitExit(p.delay) {
			c.exitedOnItsOwn(what, ch)
		}
		c.kill(ch, "delay")
		outcome = "killed"

	case killAfterCheckpoint:
		c.await(what, ch, fmt.Sprintf("checkpoint newer than %d", startCk), func() bool { return c.srv.newestCheckpoint(c.job) > startCk })
		if ch.waitExit(p.delay) {
			c.exitedOnItsOwn(what, ch)
		}
		c.kill(ch, "after a checkpoint")
		outcome = "killed"

	case killAfterOutput:
		c.await(what, ch, fmt.Sprintf("sink records beyond %d", startOut), func() bool { return c.outputsBeyond(startOut) })
		c.kill(ch, "on sink records")
		outcome = "killed"

	case killServerRestart:
		c.await(what, ch, fmt.Sprintf("checkpoint newer than %d before the restart", startCk), func() bool { return c.srv.newestCheckpoint(c.job) > startCk })
		if err := c.srv.restart(p.delay); err != nil {
			ch.kill()
			t.Fatalf("%s: %v", what, err)
		}
		c.serverRestarts++
		c.pub.upTo(hi)
		// The job rides the outage out, and then goes on processing the
		// events published after it and publishing their records, or exits
		// and is restarted by the next run; either is fine.
		after := c.outputsNow(what)
		deadline := time.Now().Add(crashWait)
		for outcome == "" {
			switch {
			case ch.exited():
				c.outageExits++
				outcome = "exited after the NATS restart (" + ch.status() + "): " + lastLine(ch.log())
			case c.outputsBeyond(after):
				c.kill(ch, "after a NATS restart")
				outcome = fmt.Sprintf("rode out the NATS restart, published records again %s after it, killed", time.Since(deadline.Add(-crashWait)).Round(time.Millisecond))
			case time.Now().After(deadline):
				ch.kill()
				t.Fatalf("%s: after the NATS server came back the job neither exited nor published records beyond the %d stored within %s, while events were published; its log ends:\n%s", what, after, crashWait, ch.tail(30))
			default:
				time.Sleep(25 * time.Millisecond)
			}
		}
	}
	published, _ := c.pub.progress()
	records, _ := c.outputs()
	t.Logf("%s: %s after %s; %d events published, newest checkpoint %d, %d sink records",
		what, outcome, time.Since(ch.start).Round(time.Millisecond), published, c.srv.newestCheckpoint(c.job), records)
}

// lastLine returns the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

// check compares what the sinks hold with the oracle and checks the side
// subjects, the checkpoint listing and the commit markers.
func (c *campaign) check() {
	t := c.t
	ctx, cancel := context.WithTimeout(context.Background(), crashWait)
	defer cancel()
	exactlyOnce := c.job.exactlyOnce()
	msgID := regexp.MustCompile(`^` + regexp.QuoteMeta(c.job.Name) + `/([0-9]+)/([0-9]+)/([0-9]+)$`)
	var got []string
	published := epochRecords{}
	badIDs := 0
	for _, o := range crashOutputs {
		subject := c.job.sinkSubject(o)
		recs, err := jsread.All(ctx, c.srv.js, subject)
		if err != nil {
			t.Fatalf("reading %s: %v", subject, err)
		}
		for _, r := range recs {
			got = append(got, o+" "+r.Key+" "+string(r.Data))
			if !exactlyOnce {
				continue
			}
			id := nats.Header(r.Header).Get(nats.MsgIdHdr)
			m := msgID.FindStringSubmatch(id)
			var epoch, ord uint64
			var w int
			if m != nil {
				epoch, _ = strconv.ParseUint(m[1], 10, 64)
				w, _ = strconv.Atoi(m[2])
				ord, _ = strconv.ParseUint(m[3], 10, 64)
			}
			if m == nil || w >= c.job.Parallelism {
				if badIDs++; badIDs <= 5 {
					t.Errorf("%s seq %d: %s %q, want \"%s/<checkpoint>/<worker < %d>/<ordinal>\"", subject, r.Seq, nats.MsgIdHdr, id, c.job.Name, c.job.Parallelism)
				}
				continue
			}
			published.add(epoch, w, o, ord)
		}
	}
	missing, foreign, dups := diffRecords(got, c.want)
	report := func(what string, lines []string) {
		if len(lines) > 0 {
			t.Errorf("%s: %d records %s, e.g. %q", c.v.name, len(lines), what, lines[:min(5, len(lines))])
		}
	}
	report("the oracle has but the sinks do not (lost)", missing)
	report("the sinks hold but the oracle does not", foreign)
	dupCount := 0
	for _, d := range dups {
		dupCount += d.n
	}
	if exactlyOnce && len(dups) > 0 {
		var e []string
		for _, d := range dups[:min(5, len(dups))] {
			e = append(e, fmt.Sprintf("%s (×%d more)", d.line, d.n))
		}
		t.Errorf("%s: %d records duplicated (%d extra copies) by exactly-once sinks, e.g. %q", c.v.name, len(dups), dupCount, e)
	}
	if exactlyOnce && (len(missing) > 0 || len(dups) > 0) {
		t.Logf("the records the exactly-once sinks published, by checkpoint epoch and worker (from their %s; a worker's records of an epoch are numbered from 0 across the outputs in the order of the sinks, so an output absent or a gap in the numbers is where records went missing):\n%s", nats.MsgIdHdr, published.show(crashOutputs))
	}

	for _, s := range []struct{ what, subject string }{{"late", c.job.Late.Subject}, {"dead-letter", c.job.DeadLetter.Subject}} {
		if n, err := c.srv.subjectCount(s.subject); err != nil || n != 0 {
			t.Errorf("the %s subject %s holds %d records (%v): every event is on time and well formed", s.what, s.subject, n, err)
		}
	}

	newest := c.srv.newestCheckpoint(c.job)
	args := []string{"checkpoints", "list", "-f", c.jobPath}
	if c.job.Checkpoint.Storage.Type == "object_store" {
		args = append(args, "--nats", c.srv.url)
	}
	lctx, lcancel := context.WithTimeout(ctx, crashWait)
	defer lcancel()
	cmd := exec.CommandContext(lctx, c.bin, args...)
	cmd.Dir = c.dir
	out, err := cmd.CombinedOutput()
	switch {
	case err != nil:
		t.Errorf("wasmstream %s: %v\n%s", strings.Join(args, " "), err, out)
	case newest == 0:
		t.Errorf("no complete checkpoint in the %s storage after the runs", c.job.Checkpoint.Storage.Type)
	case !regexp.MustCompile(`\b` + strconv.FormatUint(newest, 10) + `\b`).Match(out):
		t.Errorf("wasmstream checkpoints list does not name the newest checkpoint %d:\n%s", newest, out)
	default:
		t.Logf("wasmstream checkpoints list:\n%s", strings.TrimRight(string(out), "\n"))
	}

	if exactlyOnce {
		var buckets []string
		names := c.srv.js.KeyValueStoreNames(ctx)
		for n := range names.Name() {
			buckets = append(buckets, n)
		}
		if len(buckets) == 0 {
			t.Errorf("no NATS KV bucket after runs with exactly-once sinks: where are the committed-epoch markers? (%v)", names.Error())
		}
	}

	kills := 0
	for _, n := range c.kills {
		kills += n
	}
	sinks := "at-least-once sinks"
	if exactlyOnce {
		sinks = fmt.Sprintf("exactly-once sinks, records of %d checkpoint epochs", len(published))
	}
	t.Logf("summary %s: %d events; %d runs, %d ending in SIGKILL %v, fault points fired %v; %d NATS restarts (%d jobs exited during one); newest checkpoint %d; %s: %d records compared with %d of the oracle: %d lost, %d foreign, %d duplicates",
		c.v.name, len(c.data), c.runs, kills, c.kills, c.faults, c.serverRestarts, c.outageExits, newest,
		sinks, len(got), len(c.want), len(missing), len(foreign), dupCount)
}

// epochRecords are the ordinals of the records exactly-once sinks
// published, by checkpoint epoch, worker and output. A worker numbers its
// records of an epoch from 0 across the sinks, in the order of the job's
// sinks, so together they run 0..n-1.
type epochRecords map[uint64]map[int]map[string][]uint64

func (e epochRecords) add(epoch uint64, worker int, output string, ord uint64) {
	if e[epoch] == nil {
		e[epoch] = map[int]map[string][]uint64{}
	}
	if e[epoch][worker] == nil {
		e[epoch][worker] = map[string][]uint64{}
	}
	e[epoch][worker][output] = append(e[epoch][worker][output], ord)
}

// show lists, per epoch and worker, each output's records: how many, their
// ordinal range and the ordinals missing within it.
func (e epochRecords) show(outputs []string) string {
	var lines []string
	for _, epoch := range slices.Sorted(maps.Keys(e)) {
		var workers []string
		for _, w := range slices.Sorted(maps.Keys(e[epoch])) {
			var outs []string
			for _, o := range outputs {
				ords := slices.Compact(slices.Sorted(slices.Values(e[epoch][w][o])))
				if len(ords) == 0 {
					outs = append(outs, o+" none")
					continue
				}
				desc := fmt.Sprintf("%s %d (%d..%d", o, len(e[epoch][w][o]), ords[0], ords[len(ords)-1])
				if gaps := int(ords[len(ords)-1]-ords[0]) + 1 - len(ords); gaps > 0 {
					desc += fmt.Sprintf(", %d missing within", gaps)
				}
				outs = append(outs, desc+")")
			}
			workers = append(workers, fmt.Sprintf("worker %d: %s", w, strings.Join(outs, ", ")))
		}
		lines = append(lines, fmt.Sprintf("\tepoch %d: %s", epoch, strings.Join(workers, "; ")))
	}
	return strings.Join(lines, "\n")
}

// dup is a record stored n times more than the oracle has it.
type dup struct {
	line string
	n    int
}

// diffRecords compares the multiset got with want: the lines missing from
// got (once per missing copy), the lines want does not have at all, and
// the lines got holds more often than want.
func diffRecords(got, want []string) (missing, foreign []string, dups []dup) {
	count := map[string]int{}
	for _, r := range want {
		count[r]++
	}
	inWant := maps.Clone(count)
	for _, r := range got {
		count[r]--
	}
	for _, r := range slices.Sorted(maps.Keys(count)) {
		switch n := count[r]; {
		case n > 0:
			for range n {
				missing = append(missing, r)
			}
		case n < 0 && inWant[r] == 0:
			foreign = append(foreign, fmt.Sprintf("%s (×%d)", r, -n))
		case n < 0:
			dups = append(dups, dup{r, -n})
		}
	}
	return missing, foreign, dups
}
