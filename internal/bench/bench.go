// Package bench measures, on one generated stream in one run: raw JetStream
// consumption (no processing), the frequency-capping job with a native Go
// operator, and the same job with the Wasm plugin. The three share the
// embedded server, the stream and the engine, so their ratios are fair even on
// a noisy machine.
//
// With State "pebble" it measures instead the Wasm job with memory state and
// with Pebble state on the same Zipf stream (and raw consumption), then a
// uniform run: Uniform distinct users, one event each, through the Wasm job
// with Pebble state, reporting its rate and peak resident memory. The
// uniform run's job runs in a child process (Options.Exe) so that its peak
// RSS (VmHWM) is the job's alone: the parent holds the embedded NATS server
// and the generated Zipf stream, and the kernel keeps no way to reset a
// process's peak.
package bench

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wasmstream/wasmstream/examples/freqcap"
	"github.com/wasmstream/wasmstream/host/engine"
	"github.com/wasmstream/wasmstream/host/job"
	"github.com/wasmstream/wasmstream/host/natsembed"
	"github.com/wasmstream/wasmstream/host/process"
	"github.com/wasmstream/wasmstream/host/runner"
	"github.com/wasmstream/wasmstream/internal/wasmbuild"
)

// Options shape a benchmark run.
type Options struct {
	Events int // default 500000
	// Users is the number of Zipf-distributed users: default 100000, or
	// 1000000 with State pebble.
	Users       int
	Parallelism int // default 1
	Cap         int // default 3
	// Rounds repeats the measurements on the Zipf stream, alternating, and
	// keeps each one's best (default 1).
	Rounds int
	// State is "memory" (default): raw consume, native and Wasm with
	// memory state; or "pebble": raw consume and Wasm with memory and with
	// Pebble state, then the uniform run.
	State string
	// Uniform is the number of distinct users, one event each, of the
	// uniform run with Pebble state (State pebble only; 0 skips it).
	Uniform int
	// CacheMB is the Pebble jobs' state.cache_mb (0: the job default).
	CacheMB int
	// Exe is the wasmstream executable that runs the uniform run's job in
	// a child process (wasmstream bench --phase uniform ...). Empty runs it
	// in this process, whose peak RSS then includes everything the
	// benchmark did before.
	Exe string
	// Progress receives one line per step.
	Progress func(format string, args ...any)
}

// Result is what a run measured.
type Result struct {
	Events      int     `json:"events"`
	Users       int     `json:"users"`
	Parallelism int     `json:"parallelism"`
	Rounds      int     `json:"rounds"`
	State       string  `json:"state"`
	CacheMB     int     `json:"cache_mb,omitempty"`
	RawConsume  float64 `json:"raw_consume_events_per_sec"`
	Native      float64 `json:"native_events_per_sec,omitempty"`
	Wasm        float64 `json:"wasm_events_per_sec"`
	// WasmOverNative is Wasm / Native; JobOverRaw is Wasm / RawConsume.
	WasmOverNative float64 `json:"wasm_over_native,omitempty"`
	JobOverRaw     float64 `json:"job_over_raw_consume"`
	CappedNative   int64   `json:"capped_native,omitempty"`
	CappedWasm     int64   `json:"capped_wasm"`
	// With State pebble: WasmPebble is the Wasm job with Pebble state on
	// the same stream as Wasm (memory state), PebbleOverMemory their ratio.
	WasmPebble       float64 `json:"wasm_pebble_events_per_sec,omitempty"`
	PebbleOverMemory float64 `json:"pebble_over_memory,omitempty"`
	CappedPebble     int64   `json:"capped_pebble,omitempty"`
	// Uniform is the uniform run, with State pebble and Options.Uniform.
	Uniform *UniformResult `json:"uniform,omitempty"`
}

// UniformResult is what the uniform run measured.
type UniformResult struct {
	// Keys is the number of distinct users, each with one event.
	Keys         int     `json:"keys"`
	EventsPerSec float64 `json:"events_per_sec"`
	Seconds      float64 `json:"seconds"`
	// PeakStateKeys is the most keys the state held at a status report
	// (every second).
	PeakStateKeys int64 `json:"peak_state_keys"`
	TimersFired   int64 `json:"timers_fired"`
	// PeakRSSBytes is the job process's VmHWM; RSSScope says which process
	// that is: "child" (the job alone) or "bench" (the whole benchmark).
	PeakRSSBytes int64  `json:"peak_rss_bytes"`
	RSSScope     string `json:"rss_scope"`
}

const (
	stream         = "BENCH"
	subject        = "bench.views"
	uniformStream  = "BENCH_UNIFORM"
	uniformSubject = "bench.uniform"
)

// Run performs the benchmark. It needs a wasmstream checkout (the plugin is
// built from examples/freqcap/plugin).
func Run(ctx context.Context, o Options) (Result, error) {
	if o.State == "" {
		o.State = job.BackendMemory
	}
	if o.State != job.BackendMemory && o.State != job.BackendPebble {
		return Result{}, fmt.Errorf("bench: state %q: use memory or pebble", o.State)
	}
	if o.Events <= 0 {
		o.Events = 500_000
	}
	if o.Users <= 0 {
		o.Users = 100_000
		if o.State == job.BackendPebble {
			o.Users = 1_000_000
		}
	}
	if o.Parallelism <= 0 {
		o.Parallelism = 1
	}
	if o.Cap <= 0 {
		o.Cap = 3
	}
	if o.Rounds <= 0 {
		o.Rounds = 1
	}
	progress := o.Progress
	if progress == nil {
		progress = func(string, ...any) {}
	}
	res := Result{Events: o.Events, Users: o.Users, Parallelism: o.Parallelism, Rounds: o.Rounds, State: o.State}
	if o.State == job.BackendPebble {
		res.CacheMB = cmp.Or(o.CacheMB, job.DefaultStateCacheMB)
	}

	root, err := wasmbuild.ModuleRoot()
	if err != nil {
		return res, fmt.Errorf("bench builds the example plugin from source: %w", err)
	}
	dir, err := os.MkdirTemp("", "wasmstream-bench-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	srv, err := natsembed.Start(natsembed.Options{StoreDir: filepath.Join(dir, "jetstream")})
	if err != nil {
		return res, err
	}
	defer srv.Shutdown()
	nc, err := nats.Connect(srv.URL)
	if err != nil {
		return res, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return res, err
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: stream, Subjects: []string{subject}}); err != nil {
		return res, err
	}

	cfg, err := jobConfig(root, o.Cap, o.Parallelism, stream, subject, job.State{})
	if err != nil {
		return res, err
	}
	ropts := runner.Options{Conn: nc, UntilCaughtUp: true, Stdout: io.Discard}
	progress("building and loading the freqcap plugin")
	wasmJob, err := runner.Prepare(ctx, cfg, ropts)
	if err != nil {
		return res, err
	}
	defer wasmJob.Close(context.Background())
	var nativeJob, pebbleJob *runner.Job
	stateDir := filepath.Join(dir, "state")
	if o.State == job.BackendPebble {
		pcfg, err := jobConfig(root, o.Cap, o.Parallelism, stream, subject, job.State{Backend: job.BackendPebble, Dir: stateDir, CacheMB: o.CacheMB})
		if err != nil {
			return res, err
		}
		if pebbleJob, err = runner.Prepare(ctx, pcfg, ropts); err != nil {
			return res, err
		}
		defer pebbleJob.Close(context.Background())
	} else {
		nativeJob, err = runner.PrepareNative(cfg, freqcap.Contract(), func(int) (process.Function, error) { return freqcap.NewNative(), nil }, ropts)
		if err != nil {
			return res, err
		}
	}

	progress("publishing %d events (%d Zipf-distributed users)", o.Events, o.Users)
	t := time.Now()
	if err := freqcap.Publish(ctx, js, subject, freqcap.Generate(o.Events, freqcap.GenOptions{Seed: 7, Users: o.Users}), nil); err != nil {
		return res, err
	}
	progress("published in %.1fs", time.Since(t).Seconds())

	// runJob runs one measured job over the whole stream.
	runJob := func(j *runner.Job, what string) (engine.Summary, error) {
		sum, err := j.Run(ctx)
		if err != nil {
			return sum, fmt.Errorf("%s job: %w", what, err)
		}
		if sum.EventsIn != int64(o.Events) {
			return sum, fmt.Errorf("%s job read %d events, want %d", what, sum.EventsIn, o.Events)
		}
		return sum, nil
	}
	for round := 1; round <= o.Rounds; round++ {
		eps, err := rawConsume(ctx, js, stream, subject, o.Events)
		if err != nil {
			return res, fmt.Errorf("raw consume: %w", err)
		}
		res.RawConsume = max(res.RawConsume, eps)
		progress("round %d: raw consume      %9.0f events/s", round, eps)

		if nativeJob != nil {
			sum, err := runJob(nativeJob, "native")
			if err != nil {
				return res, err
			}
			res.Native = max(res.Native, sum.EventsPerSec)
			res.CappedNative = sum.Outputs["capped"]
			progress("round %d: freqcap native   %9.0f events/s", round, sum.EventsPerSec)
		}

		sum, err := runJob(wasmJob, "wasm")
		if err != nil {
			return res, err
		}
		res.Wasm = max(res.Wasm, sum.EventsPerSec)
		res.CappedWasm = sum.Outputs["capped"]
		progress("round %d: freqcap wasm     %9.0f events/s", round, sum.EventsPerSec)

		if pebbleJob != nil {
			// Each round starts from an empty state directory.
			sum, err := runJob(pebbleJob, "wasm pebble")
			if err != nil {
				return res, err
			}
			if err := os.RemoveAll(stateDir); err != nil {
				return res, err
			}
			res.WasmPebble = max(res.WasmPebble, sum.EventsPerSec)
			res.CappedPebble = sum.Outputs["capped"]
			progress("round %d: freqcap pebble   %9.0f events/s", round, sum.EventsPerSec)
		}
	}
	res.JobOverRaw = res.Wasm / res.RawConsume
	if nativeJob != nil {
		if res.CappedNative != res.CappedWasm {
			return res, fmt.Errorf("native and wasm jobs disagree: %d vs %d capped pairs", res.CappedNative, res.CappedWasm)
		}
		res.WasmOverNative = res.Wasm / res.Native
	}
	if pebbleJob != nil {
		if res.CappedPebble != res.CappedWasm {
			return res, fmt.Errorf("memory and pebble jobs disagree: %d vs %d capped pairs", res.CappedWasm, res.CappedPebble)
		}
		res.PebbleOverMemory = res.WasmPebble / res.Wasm
	}
	if o.State != job.BackendPebble || o.Uniform <= 0 {
		return res, nil
	}

	// The uniform run.
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: uniformStream, Subjects: []string{uniformSubject}}); err != nil {
		return res, err
	}
	progress("publishing %d events, one for each of %d users", o.Uniform, o.Uniform)
	t = time.Now()
	if err := publishUniform(ctx, js, o.Uniform, func(n int) {
		if n%1_000_000 == 0 {
			progress("  %d published", n)
		}
	}); err != nil {
		return res, err
	}
	progress("published in %.1fs", time.Since(t).Seconds())
	po := PhaseOptions{URL: srv.URL, Keys: o.Uniform, Parallelism: o.Parallelism, Cap: o.Cap, CacheMB: o.CacheMB, Progress: progress}
	var u UniformResult
	if o.Exe != "" {
		u, err = runChild(ctx, o.Exe, po)
	} else {
		u, err = RunUniform(ctx, po)
	}
	if err != nil {
		return res, fmt.Errorf("uniform run: %w", err)
	}
	res.Uniform = &u
	return res, nil
}

// PhaseOptions shape the uniform run's job.
type PhaseOptions struct {
	// URL is the NATS server holding the uniform stream.
	URL string
	// Keys is the number of events (and distinct users) in the stream.
	Keys        int
	Parallelism int
	Cap         int
	// CacheMB is the job's state.cache_mb (0: the job default).
	CacheMB  int
	Progress func(format string, args ...any)
}

// PhaseArgs returns the wasmstream arguments that run the uniform run's
// job with po in a child process (RunUniform there).
func PhaseArgs(po PhaseOptions) []string {
	return []string{"bench", "--phase", "uniform", "--nats", po.URL, "--uniform", strconv.Itoa(po.Keys),
		"--parallelism", strconv.Itoa(max(po.Parallelism, 1)), "--cap", strconv.Itoa(max(po.Cap, 1)), "--cache-mb", strconv.Itoa(po.CacheMB)}
}

// runChild runs the uniform run's job as exe PhaseArgs(po), which prints its
// UniformResult as JSON; its stderr lines go to po.Progress.
func runChild(ctx context.Context, exe string, po PhaseOptions) (UniformResult, error) {
	cmd := exec.CommandContext(ctx, exe, PhaseArgs(po)...)
	var out bytes.Buffer
	cmd.Stdout = &out
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if po.Progress != nil {
				po.Progress("  child: %s", sc.Text())
			}
		}
	}()
	err := cmd.Run()
	pw.Close()
	<-done
	if err != nil {
		return UniformResult{}, fmt.Errorf("%s %s: %w", exe, strings.Join(PhaseArgs(po), " "), err)
	}
	var u UniformResult
	if err := json.Unmarshal(out.Bytes(), &u); err != nil {
		return UniformResult{}, fmt.Errorf("%s bench --phase uniform printed %q: %w", exe, out.Bytes(), err)
	}
	u.RSSScope = "child"
	return u, nil
}

// RunUniform runs the freqcap Wasm job with Pebble state (in a temporary
// directory) over the uniform stream on po.URL until it has processed
// po.Keys events, and reports its rate and this process's peak RSS.
func RunUniform(ctx context.Context, po PhaseOptions) (UniformResult, error) {
	progress := po.Progress
	if progress == nil {
		progress = func(string, ...any) {}
	}
	u := UniformResult{Keys: po.Keys, RSSScope: "bench"}
	root, err := wasmbuild.ModuleRoot()
	if err != nil {
		return u, fmt.Errorf("bench builds the example plugin from source: %w", err)
	}
	dir, err := os.MkdirTemp("", "wasmstream-bench-state-")
	if err != nil {
		return u, err
	}
	defer os.RemoveAll(dir)
	cfg, err := jobConfig(root, max(po.Cap, 1), max(po.Parallelism, 1), uniformStream, uniformSubject, job.State{Backend: job.BackendPebble, Dir: dir, CacheMB: po.CacheMB})
	if err != nil {
		return u, err
	}
	nc, err := nats.Connect(po.URL)
	if err != nil {
		return u, err
	}
	defer nc.Close()
	j, err := runner.Prepare(ctx, cfg, runner.Options{
		Conn: nc, UntilSeq: uint64(po.Keys), Stdout: io.Discard, StatusEvery: time.Second,
		Status: func(s engine.Status) {
			var keys int64
			for _, st := range s.State {
				keys += st.Keys
			}
			u.PeakStateKeys = max(u.PeakStateKeys, keys)
			rss, _ := PeakRSS()
			progress("uniform: %d events, %.0f/s, %d keys, %d timers fired, peak RSS %d MiB", s.EventsIn, s.EventsPerSec, keys, s.TimersFired, rss>>20)
		},
	})
	if err != nil {
		return u, err
	}
	defer j.Close(context.Background())
	sum, err := j.Run(ctx)
	if err != nil {
		return u, err
	}
	if sum.EventsIn != int64(po.Keys) {
		return u, fmt.Errorf("the job read %d events, want %d", sum.EventsIn, po.Keys)
	}
	u.EventsPerSec = sum.EventsPerSec
	u.Seconds = sum.Elapsed.Seconds()
	u.TimersFired = sum.TimersFired
	if u.PeakRSSBytes, err = PeakRSS(); err != nil {
		return u, err
	}
	return u, nil
}

// PeakRSS returns this process's peak resident set size (VmHWM in
// /proc/self/status), in bytes.
func PeakRSS() (int64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, fmt.Errorf("peak RSS: %w (it is read from Linux's /proc)", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("peak RSS: VmHWM %q: %w", v, err)
			}
			return kb << 10, nil
		}
	}
	return 0, errors.New("peak RSS: no VmHWM in /proc/self/status")
}

// uniformEvent appends the i-th event (0-based) of the uniform stream of n
// users: every user appears once, in an order scattered by the bijection
// i → (i·st + 12345) mod n (st = stride(n)), with an ad id cycling through
// 1000 ads and log_time i ms after 2025-01-01.
func uniformEvent(dst []byte, i, n int, st uint64) []byte {
	u := (uint64(i)*st + 12345) % uint64(n)
	dst = append(dst, `{"user_no":`...)
	dst = strconv.AppendUint(dst, u+1, 10)
	dst = append(dst, `,"da_id":`...)
	dst = strconv.AppendInt(dst, int64(i%1000)+1, 10)
	dst = append(dst, `,"log_time":`...)
	dst = strconv.AppendInt(dst, 1_735_689_600_000+int64(i), 10)
	return append(dst, '}')
}

// stride is a multiplier coprime to n, so i → i·stride mod n is a
// bijection.
func stride(n int) uint64 {
	s := uint64(2_654_435_761) % uint64(max(n, 1))
	for gcd(s, uint64(n)) != 1 {
		s++
	}
	return s
}

func gcd(a, b uint64) uint64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// publishUniform publishes the n events of the uniform stream, generated
// a chunk at a time so they are never all in memory.
func publishUniform(ctx context.Context, js jetstream.JetStream, n int, progress func(published int)) error {
	const chunk = 100_000
	events := make([][]byte, 0, chunk)
	st := stride(n)
	for lo := 0; lo < n; lo += chunk {
		events = events[:0]
		for i := lo; i < min(lo+chunk, n); i++ {
			events = append(events, uniformEvent(make([]byte, 0, 64), i, n, st))
		}
		if err := freqcap.Publish(ctx, js, uniformSubject, events, nil); err != nil {
			return err
		}
		progress(min(lo+chunk, n))
	}
	return nil
}

// jobConfig is the example job pointed at a bench stream, with the given
// state section. Capped pairs go to a stdout sink that writes to
// io.Discard, so repeated runs do not grow an output stream; each run
// starts with empty state (a bounded run ends with every window closed).
func jobConfig(root string, limit, parallelism int, stream, subject string, state job.State) (*job.Config, error) {
	yaml := fmt.Sprintf(`name: bench
source: {stream: %s, subjects: [%q]}
key: {field: user_no}
plugin:
  path: %s
  config: {cap: %d}
parallelism: %d
sinks:
  - {output: capped, type: stdout}
`, stream, subject, strconv.Quote(filepath.Join(root, "examples", "freqcap", "plugin")), limit, parallelism)
	cfg, err := job.Parse([]byte(yaml))
	if err != nil {
		return nil, err
	}
	if state.Backend != "" {
		cfg.State = state
		cfg.ApplyDefaults()
		if err := cfg.Validate(); err != nil {
			return nil, err
		}
	}
	return cfg, nil
}

// rawConsume reads n messages with the same consumer settings as the
// engine's source and nothing else.
func rawConsume(ctx context.Context, js jetstream.JetStream, stream, subject string, n int) (float64, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		return 0, err
	}
	it, err := c.Messages(jetstream.PullMaxMessages(1024))
	if err != nil {
		return 0, err
	}
	defer it.Stop()
	var bytes int
	for i := 0; i < n; {
		m, err := it.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrNoHeartbeat) {
				continue
			}
			return 0, err
		}
		bytes += len(m.Data())
		i++
	}
	return float64(n) / time.Since(start).Seconds(), nil
}
