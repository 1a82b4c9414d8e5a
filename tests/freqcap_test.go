package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/wasmstream/wasmstream/internal/natstest"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wasmstream/wasmstream/examples/freqcap"
	"github.com/wasmstream/wasmstream/host/engine"
	"github.com/wasmstream/wasmstream/host/job"
	"github.com/wasmstream/wasmstream/host/natsembed"
	"github.com/wasmstream/wasmstream/host/process"
	"github.com/wasmstream/wasmstream/host/runner"
	"github.com/wasmstream/wasmstream/internal/jsread"
	"github.com/wasmstream/wasmstream/internal/wasmbuild"
)

// env is an embedded NATS server with JetStream in a temporary directory
// and a client connection to it.
type env struct {
	srv *natsembed.Server
	nc  *nats.Conn
	js  jetstream.JetStream
}

func newEnv(t *testing.T) *env {
	t.Helper()
	n := natstest.Start(t)
	srv, nc, js := n.Server, n.Conn, n.JS
	return &env{srv: srv, nc: nc, js: js}
}

// testCtx bounds a test so that a stuck job fails it instead of hanging the
// run; no assertion depends on how long anything takes.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// publish creates stream name capturing filter and publishes events to
// subject, in order: event i gets stream sequence i+1.
func (e *env) publish(t *testing.T, name, filter, subject string, events [][]byte) {
	t.Helper()
	ctx := testCtx(t)
	if _, err := e.js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{filter}}); err != nil {
		t.Fatal(err)
	}
	if err := freqcap.Publish(ctx, e.js, subject, events, nil); err != nil {
		t.Fatal(err)
	}
}

// read returns every record on subject.
func (e *env) read(t *testing.T, subject string) []jsread.Record {
	t.Helper()
	recs, err := jsread.All(testCtx(t), e.js, subject)
	if err != nil {
		t.Fatalf("read back %s: %v", subject, err)
	}
	return recs
}

// freqcapJob is the example job of examples/freqcap/job.yaml, loaded from
// the file so its plugin path resolves, with the capped records going to
// cappedSubject, the released ones to cappedSubject+".released", and the
// given parallelism. Generated streams span far less than the job's window,
// so every pair is capped at most once and released when the bounded run's
// final watermark expires its views.
func freqcapJob(t *testing.T, cappedSubject string, parallelism int) *job.Config {
	t.Helper()
	cfg, err := job.Load("../examples/freqcap/job.yaml")
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for i, s := range cfg.Sinks {
		switch s.Output {
		case "capped":
			cfg.Sinks[i].Subject = cappedSubject
		case "released":
			cfg.Sinks[i].Subject = cappedSubject + ".released"
		default:
			continue
		}
		found[s.Output] = true
	}
	if !found["capped"] || !found["released"] {
		t.Fatalf("examples/freqcap/job.yaml sinks %+v, want sinks for capped and released", cfg.Sinks)
	}
	cfg.Parallelism = parallelism
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// jobCap is the cap the job config hands the plugin.
func jobCap(t *testing.T, cfg *job.Config) int {
	t.Helper()
	n, err := strconv.Atoi(cfg.Plugin.Config["cap"])
	if err != nil || n < 1 {
		t.Fatalf("job %s: plugin.config.cap %q is not a positive integer", cfg.Name, cfg.Plugin.Config["cap"])
	}
	return n
}

func freqcapWasm(t *testing.T) []byte {
	return wasmbuild.ForTest(t, "examples/freqcap/plugin")
}

// runWasm runs cfg with the freqcap Wasm plugin until it has processed what
// the stream holds.
func runWasm(t *testing.T, e *env, cfg *job.Config, wasm []byte) engine.Summary {
	t.Helper()
	ctx := testCtx(t)
	j, err := runner.Prepare(ctx, cfg, runner.Options{Conn: e.nc, UntilCaughtUp: true, Wasm: wasm, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close(context.Background())
	sum, err := j.Run(ctx)
	if err != nil {
		t.Fatalf("job %s: %v", cfg.Name, err)
	}
	return sum
}

// runNative runs cfg with the native Go freqcap operator.
func runNative(t *testing.T, e *env, cfg *job.Config) engine.Summary {
	t.Helper()
	j, err := runner.PrepareNative(cfg, freqcap.Contract(), func(int) (process.Function, error) { return freqcap.NewNative(), nil },
		runner.Options{Conn: e.nc, UntilCaughtUp: true, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	sum, err := j.Run(testCtx(t))
	if err != nil {
		t.Fatalf("job %s (native): %v", cfg.Name, err)
	}
	return sum
}

// checkCapped checks the records of a capped subject against the oracle's
// pairs: every record is keyed "<user>.<ad>" and holds valid JSON with
// exactly user_no, da_id and count == limit; every oracle pair appears
// exactly once and no other pair appears. It returns the records as key →
// value.
func checkCapped(t *testing.T, recs []jsread.Record, subject string, want map[[2]int64]bool, limit int) map[string]string {
	t.Helper()
	got := map[[2]int64]int{}
	out := make(map[string]string, len(recs))
	bad := 0
	for _, r := range recs {
		if bad >= 5 {
			t.Fatalf("more malformed records on %s; stopping", subject)
		}
		if r.Subject != subject {
			t.Errorf("record seq %d on subject %s, want %s", r.Seq, r.Subject, subject)
		}
		if !json.Valid(r.Data) {
			t.Errorf("record seq %d: value %q is not valid JSON", r.Seq, r.Data)
			bad++
			continue
		}
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(r.Data, &fields); err != nil || len(fields) != 3 {
			t.Errorf("record seq %d: value %s: want an object with user_no, da_id and count (%v)", r.Seq, r.Data, err)
			bad++
			continue
		}
		var user, ad, count int64
		var errs []error
		for name, dst := range map[string]*int64{"user_no": &user, "da_id": &ad, "count": &count} {
			if err := json.Unmarshal(fields[name], dst); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
			}
		}
		if len(errs) > 0 {
			t.Errorf("record seq %d: value %s: %v", r.Seq, r.Data, errs)
			bad++
			continue
		}
		if count != int64(limit) {
			t.Errorf("record seq %d: value %s: count %d, want the cap %d", r.Seq, r.Data, count, limit)
		}
		wantKey := fmt.Sprintf("%d.%d", user, ad)
		if r.Key != wantKey {
			t.Errorf("record seq %d: value %s has %s header %q, want %q", r.Seq, r.Data, engine.HeaderKey, r.Key, wantKey)
		}
		pair := [2]int64{user, ad}
		got[pair]++
		out[r.Key] = string(r.Data)
	}
	var dups, missing, extra []string
	for p, n := range got {
		if n > 1 {
			dups = append(dups, fmt.Sprintf("%d.%d ×%d", p[0], p[1], n))
		}
		if !want[p] {
			extra = append(extra, fmt.Sprintf("%d.%d", p[0], p[1]))
		}
	}
	for p := range want {
		if got[p] == 0 {
			missing = append(missing, fmt.Sprintf("%d.%d", p[0], p[1]))
		}
	}
	for _, l := range []struct {
		what  string
		pairs []string
	}{{"duplicated", dups}, {"missing", missing}, {"not in the oracle", extra}} {
		if len(l.pairs) > 0 {
			slices.Sort(l.pairs)
			t.Errorf("%s: %d capped pairs %s, e.g. %v", subject, len(l.pairs), l.what, l.pairs[:min(10, len(l.pairs))])
		}
	}
	if len(recs) != len(want) {
		t.Errorf("%s holds %d records, the oracle has %d pairs", subject, len(recs), len(want))
	}
	return out
}

// checkSummary checks a bounded run's counters for a stream of n
// well-formed events: every capped pair is released again by the final
// watermark, which leaves the views state empty.
func checkSummary(t *testing.T, sum engine.Summary, n, parallelism int, capped int) {
	t.Helper()
	if sum.EventsIn != int64(n) || sum.TotalProcessed() != int64(n) {
		t.Errorf("read %d and processed %d events, want %d", sum.EventsIn, sum.TotalProcessed(), n)
	}
	if len(sum.Processed) != parallelism {
		t.Fatalf("%d workers reported, want %d", len(sum.Processed), parallelism)
	}
	for w, p := range sum.Processed {
		if p == 0 {
			t.Errorf("worker %d processed nothing (per worker: %v): keys are not spread", w, sum.Processed)
		}
	}
	if sum.Outputs["capped"] != int64(capped) || sum.Outputs["released"] != int64(capped) || sum.Outputs["main"] != 0 {
		t.Errorf("outputs %v, want capped and released %d each and main 0", sum.Outputs, capped)
	}
	if sum.DeadLettered != 0 || sum.Discarded != 0 {
		t.Errorf("dead-lettered %d, discarded %d, want none", sum.DeadLettered, sum.Discarded)
	}
	if len(sum.State) != 1 || sum.State[0].Name != "views" || sum.State[0].Keys != 0 {
		t.Errorf("state %+v, want views emptied by the final watermark", sum.State)
	}
}

func TestFreqcap(t *testing.T) {
	const (
		events = 60_000
		users  = 20_000
		seed   = 11
	)
	e := newEnv(t)
	data := freqcap.Generate(events, freqcap.GenOptions{Seed: seed, Users: users})
	e.publish(t, "FREQCAP", "views.>", "views.web", data)
	wasm := freqcapWasm(t)
	limit := jobCap(t, freqcapJob(t, "capped", 1))
	want := freqcap.Oracle(data, limit)
	if len(want) < 1000 {
		t.Fatalf("the oracle finds only %d capped pairs in %d events: the stream does not exercise the cap", len(want), events)
	}

	// Each run writes to its own capped subject; all read the same stream.
	results := map[string]map[string]string{}
	for _, tc := range []struct {
		name        string
		native      bool
		parallelism int
	}{
		{"wasm/parallelism=1", false, 1},
		{"wasm/parallelism=2", false, 2},
		{"native/parallelism=2", true, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			subject := fmt.Sprintf("capped.%s.p%d", strings.Split(tc.name, "/")[0], tc.parallelism)
			cfg := freqcapJob(t, subject, tc.parallelism)
			var sum engine.Summary
			if tc.native {
				sum = runNative(t, e, cfg)
			} else {
				sum = runWasm(t, e, cfg, wasm)
			}
			checkSummary(t, sum, events, tc.parallelism, len(want))
			results[tc.name] = checkCapped(t, e.read(t, subject), subject, want, limit)
		})
	}

	// The Wasm plugin and the native operator write the same records, key
	// and value byte for byte, whatever the parallelism.
	native := results["native/parallelism=2"]
	for _, name := range []string{"wasm/parallelism=1", "wasm/parallelism=2"} {
		got := results[name]
		if got == nil || native == nil {
			t.Fatalf("no records to compare for %s and native/parallelism=2: a run above failed", name)
		}
		if !maps.Equal(got, native) {
			n := 0
			for k, v := range native {
				if got[k] != v && n < 10 {
					t.Errorf("%s: key %s: wasm %q, native %q", name, k, got[k], v)
					n++
				}
			}
			t.Errorf("%s and native/parallelism=2 differ (%d and %d records)", name, len(got), len(native))
		}
	}
}

func TestFreqcapDeadLetters(t *testing.T) {
	e := newEnv(t)
	data := freqcap.Generate(3000, freqcap.GenOptions{Seed: 5, Users: 300})
	// Bad events at known positions; event i has stream sequence i+1.
	bad := []struct {
		at     int
		event  string
		reason string
	}{
		{100, `{"user_no":17,"da_id":`, "invalid JSON"},
		{1200, `{"da_id":4,"log_time":1735689600000}`, "key field user_no is missing"},
		{1900, `{"user_no":9,"da_id":"abc","log_time":1735689600000}`, "da_id is string, want an integer"},
		{2500, `{"user_no":9,"log_time":1735689600000}`, "da_id is absent, want an integer"},
	}
	for _, b := range bad {
		data = slices.Insert(data, b.at, []byte(b.event))
	}
	e.publish(t, "FREQCAP", "views.>", "views.web", data)
	cfg := freqcapJob(t, "freqcap.capped", 2)
	limit := jobCap(t, cfg)
	want := freqcap.Oracle(data, limit)
	if len(want) == 0 {
		t.Fatal("the oracle finds no capped pairs")
	}

	sum := runWasm(t, e, cfg, freqcapWasm(t))

	// The invalid JSON and the unkeyable event never reach the plugin; the
	// two it rejects do.
	if sum.EventsIn != int64(len(data)) || sum.TotalProcessed() != int64(len(data)-2) {
		t.Errorf("read %d, processed %d events; want %d and %d", sum.EventsIn, sum.TotalProcessed(), len(data), len(data)-2)
	}
	if sum.DeadLettered != int64(len(bad)) {
		t.Errorf("dead-lettered %d events, want %d", sum.DeadLettered, len(bad))
	}
	checkCapped(t, e.read(t, "freqcap.capped"), "freqcap.capped", want, limit)

	dead := e.read(t, cfg.DeadLetter.Subject)
	bySeq := map[string]jsread.Record{}
	for _, r := range dead {
		seq := strings.Join(r.Header[engine.HeaderSourceSeq], ",")
		if _, dup := bySeq[seq]; dup {
			t.Errorf("event seq %s dead-lettered twice", seq)
		}
		bySeq[seq] = r
	}
	if len(dead) != len(bad) {
		t.Errorf("%s holds %d records, want %d", cfg.DeadLetter.Subject, len(dead), len(bad))
	}
	for _, b := range bad {
		seq := strconv.Itoa(b.at + 1)
		r, ok := bySeq[seq]
		if !ok {
			t.Errorf("event seq %s (%s) is not on the dead-letter subject", seq, b.event)
			continue
		}
		if !bytes.Equal(r.Data, []byte(b.event)) {
			t.Errorf("dead letter of seq %s holds %q, want the event %q", seq, r.Data, b.event)
		}
		if reason := nats.Header(r.Header).Get(engine.HeaderDlqReason); !strings.Contains(reason, b.reason) {
			t.Errorf("dead letter of %s: %s %q, want it to name %q", b.event, engine.HeaderDlqReason, reason, b.reason)
		}
		if subj := nats.Header(r.Header).Get(engine.HeaderSourceSubject); subj != "views.web" {
			t.Errorf("dead letter of seq %s: %s %q, want views.web", seq, engine.HeaderSourceSubject, subj)
		}
	}
}
