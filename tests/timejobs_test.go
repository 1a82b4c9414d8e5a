package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"testing"

	"github.com/wasmstream/wasmstream/examples/fatigue"
	"github.com/wasmstream/wasmstream/examples/freqcap"
	"github.com/wasmstream/wasmstream/examples/sessions"
	"github.com/wasmstream/wasmstream/host/engine"
	"github.com/wasmstream/wasmstream/host/job"
	"github.com/wasmstream/wasmstream/host/process"
	"github.com/wasmstream/wasmstream/host/runner"
	"github.com/wasmstream/wasmstream/internal/wasmbuild"
)

// The event-time examples (examples/freqcap, fatigue, sessions) end to end:
// each generated stream is published shuffled (out of event-time order by
// up to the job's max_out_of_orderness, unless a test wants late events),
// the example's job.yaml runs with its Wasm plugin in a bounded run (which
// ends with every event-time timer fired), and what the sinks stored must
// equal the plain-Go oracle's records: the same multiset of (subject, key,
// value), so no record is missing or duplicated.

// exampleJob loads examples/<name>/job.yaml (so that its plugin path
// resolves) with the given parallelism.
func exampleJob(t *testing.T, name string, parallelism int) *job.Config {
	t.Helper()
	cfg, err := job.Load("../examples/" + name + "/job.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Parallelism = parallelism
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// sinkSubject returns the JetStream subject the job sends output to.
func sinkSubject(t *testing.T, cfg *job.Config, output string) string {
	t.Helper()
	for _, s := range cfg.Sinks {
		if s.Output == output && s.Type == "jetstream" {
			return s.Subject
		}
	}
	t.Fatalf("job %s has no JetStream sink for output %s", cfg.Name, output)
	return ""
}

// maxOutOfOrderness returns the job's event_time.max_out_of_orderness in ms.
func maxOutOfOrderness(t *testing.T, cfg *job.Config) int64 {
	t.Helper()
	ms := cfg.EventTime.MaxOutOfOrderness.D().Milliseconds()
	if ms <= 0 {
		t.Fatalf("job %s: event_time.max_out_of_orderness is %s, want a bound > 0 to shuffle within", cfg.Name, cfg.EventTime.MaxOutOfOrderness)
	}
	return ms
}

// runBounded runs the job with the Wasm plugin (or, when native is not
// nil, with that freqcap function) until it has processed what the stream
// holds.
func runBounded(t *testing.T, e *env, cfg *job.Config, wasm []byte, native func() process.Function) engine.Summary {
	t.Helper()
	ctx := testCtx(t)
	opts := runner.Options{Conn: e.nc, UntilCaughtUp: true, Wasm: wasm, Logf: t.Logf}
	var j *runner.Job
	var err error
	if native != nil {
		j, err = runner.PrepareNative(cfg, freqcap.Contract(), func(int) (process.Function, error) { return native(), nil }, opts)
	} else {
		j, err = runner.Prepare(ctx, cfg, opts)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close(context.Background())
	sum, err := j.Run(ctx)
	if err != nil {
		t.Fatalf("job %s: %v", cfg.Name, err)
	}
	t.Logf("%s", sum)
	return sum
}

// stored returns the records the job stored on the subjects of outputs, as
// "output key value" lines.
func stored(t *testing.T, e *env, cfg *job.Config, outputs ...string) []string {
	t.Helper()
	var out []string
	for _, o := range outputs {
		subject := sinkSubject(t, cfg, o)
		for _, r := range e.read(t, subject) {
			if r.Subject != subject {
				t.Errorf("record seq %d on %s, want %s", r.Seq, r.Subject, subject)
			}
			if !json.Valid(r.Data) {
				t.Errorf("%s: record seq %d is not JSON: %q", subject, r.Seq, r.Data)
			}
			out = append(out, o+" "+r.Key+" "+string(r.Data))
		}
	}
	return out
}

// sameRecords compares two multisets of record lines, reporting a few
// differences each way.
func sameRecords(t *testing.T, what string, got, want []string) {
	t.Helper()
	count := map[string]int{}
	for _, r := range want {
		count[r]++
	}
	for _, r := range got {
		count[r]--
	}
	var missing, extra []string
	for _, r := range slices.Sorted(maps.Keys(count)) {
		switch n := count[r]; {
		case n > 0:
			missing = append(missing, fmt.Sprintf("%s (×%d)", r, n))
		case n < 0:
			extra = append(extra, fmt.Sprintf("%s (×%d)", r, -n))
		}
	}
	if len(missing) > 0 || len(extra) > 0 {
		t.Errorf("%s: %d records stored, the oracle has %d; %d missing, e.g. %q; %d not in the oracle (or too often), e.g. %q",
			what, len(got), len(want), len(missing), missing[:min(5, len(missing))], len(extra), extra[:min(5, len(extra))])
	}
}

// checkOnTime checks the counters of a run whose events were all on time
// and well formed.
func checkOnTime(t *testing.T, sum engine.Summary, n int) {
	t.Helper()
	if sum.EventsIn != int64(n) || sum.TotalProcessed() != int64(n) {
		t.Errorf("read %d and processed %d events, want %d", sum.EventsIn, sum.TotalProcessed(), n)
	}
	if sum.Late != 0 || sum.DeadLettered != 0 || sum.Discarded != 0 {
		t.Errorf("late %d, dead-lettered %d, discarded %d: want none", sum.Late, sum.DeadLettered, sum.Discarded)
	}
	if sum.TimersFired == 0 {
		t.Error("no timer fired")
	}
}

func TestFreqcapSlidingWindow(t *testing.T) {
	const (
		n      = 20_000
		window = 24 * 3600 * 1000 // a day, so that windows slide within the stream
	)
	e := newEnv(t)
	cfg := exampleJob(t, "freqcap", 2)
	cfg.Plugin.Config["window_ms"] = strconv.Itoa(window)
	bound := maxOutOfOrderness(t, cfg)
	// 30 s apart: the stream spans about 7 days.
	data := freqcap.Generate(n, freqcap.GenOptions{Seed: 21, Users: 300, Ads: 30, StepMs: 30_000, Disorder: bound})
	e.publish(t, cfg.Source.Stream, "views.>", "views.web", data)
	limit := jobCap(t, cfg)

	var want []string
	released := 0
	for _, r := range freqcap.Expect(data, freqcap.Params{Cap: limit, Window: window, MaxOutOfOrderness: bound}) {
		want = append(want, r.Output+" "+r.Key+" "+r.Value)
		if r.Output == "released" {
			released++
		}
	}
	if released < 500 {
		t.Fatalf("the oracle has %d records, %d releases: the stream does not exercise the window", len(want), released)
	}

	wasm := wasmbuild.ForTest(t, "examples/freqcap/plugin")
	for _, tc := range []struct {
		name   string
		native bool
	}{{"wasm", false}, {"native", true}} {
		t.Run(tc.name, func(t *testing.T) {
			c := exampleJob(t, "freqcap", 2)
			c.Plugin.Config["window_ms"] = strconv.Itoa(window)
			for i := range c.Sinks {
				c.Sinks[i].Subject += "." + tc.name
			}
			var native func() process.Function
			if tc.native {
				native = func() process.Function { return freqcap.NewNative() }
			}
			sum := runBounded(t, e, c, wasm, native)
			checkOnTime(t, sum, n)
			if sum.Outputs["capped"] != sum.Outputs["released"] {
				t.Errorf("capped %d, released %d: a bounded run ends with every window closed", sum.Outputs["capped"], sum.Outputs["released"])
			}
			for _, st := range sum.State {
				if st.Keys != 0 {
					t.Errorf("state %s holds %d keys after every window closed", st.Name, st.Keys)
				}
			}
			sameRecords(t, "freqcap "+tc.name, stored(t, e, c, "capped", "released"), want)
		})
	}
}

func TestFatigue(t *testing.T) {
	const n = 20_000
	e := newEnv(t)
	cfg := exampleJob(t, "fatigue", 2)
	bound := maxOutOfOrderness(t, cfg)
	limit, err := strconv.Atoi(cfg.Plugin.Config["limit"])
	if err != nil {
		t.Fatal(err)
	}
	data := fatigue.Generate(n, fatigue.GenOptions{Seed: 8, Users: 400, StepMs: 20_000, Disorder: bound})
	e.publish(t, cfg.Source.Stream, "notify.>", "notify.push", data)

	var want []string
	suppressed := 0
	for _, r := range fatigue.Expect(data, fatigue.Params{Limit: limit, MaxOutOfOrderness: bound}) {
		want = append(want, r.Output+" "+r.Key+" "+r.Value)
		if r.Output == "suppressed" {
			suppressed++
		}
	}
	if suppressed < 1000 || len(want)-suppressed < 1000 {
		t.Fatalf("the oracle allows %d and suppresses %d: the stream does not exercise the budget", len(want)-suppressed, suppressed)
	}
	sum := runBounded(t, e, cfg, wasmbuild.ForTest(t, "examples/fatigue/plugin"), nil)
	checkOnTime(t, sum, n)
	if sum.Outputs["main"]+sum.Outputs["suppressed"] != n {
		t.Errorf("outputs %v: want one decision per notification, %d", sum.Outputs, n)
	}
	sameRecords(t, "fatigue", stored(t, e, cfg, "main", "suppressed"), want)
}

func TestSessions(t *testing.T) {
	const n = 20_000
	e := newEnv(t)
	cfg := exampleJob(t, "sessions", 2)
	bound := maxOutOfOrderness(t, cfg)
	data := sessions.Generate(n, sessions.GenOptions{Seed: 4, Users: 1000, Disorder: bound})
	e.publish(t, cfg.Source.Stream, "clicks.>", "clicks.web", data)

	var want []string
	events := 0
	for _, s := range sessions.Expect(data, sessions.Params{MaxOutOfOrderness: bound}) {
		want = append(want, "main "+s.Key+" "+s.Value)
		var v struct{ Events int }
		if err := json.Unmarshal([]byte(s.Value), &v); err != nil {
			t.Fatal(err)
		}
		events += v.Events
	}
	if events != n || len(want) < 1000 || len(want) > n/2 {
		t.Fatalf("the oracle has %d sessions of %d events: the stream does not exercise sessions", len(want), events)
	}
	sum := runBounded(t, e, cfg, wasmbuild.ForTest(t, "examples/sessions/plugin"), nil)
	checkOnTime(t, sum, n)
	sameRecords(t, "sessions", stored(t, e, cfg, "main"), want)
}

// TestSessionsLateEvents shuffles beyond the bound: the events the
// watermark has passed go to the late subject, and the sessions are those
// of the other events.
func TestSessionsLateEvents(t *testing.T) {
	const n = 10_000
	e := newEnv(t)
	cfg := exampleJob(t, "sessions", 2)
	bound := maxOutOfOrderness(t, cfg)
	data := sessions.Generate(n, sessions.GenOptions{Seed: 6, Users: 500, Disorder: 2 * bound})
	e.publish(t, cfg.Source.Stream, "clicks.>", "clicks.web", data)

	// The late events, by the engine's rule: at or below the largest
	// earlier time minus the bound minus 1 ms.
	var late []string
	maxTs := int64(0)
	for i, d := range data {
		var v struct{ TS int64 }
		if err := json.Unmarshal(d, &v); err != nil {
			t.Fatal(err)
		}
		if i > 0 && v.TS <= maxTs-bound-1 {
			late = append(late, string(d))
			continue
		}
		maxTs = max(maxTs, v.TS)
	}
	if len(late) < 100 || len(late) > n/2 {
		t.Fatalf("%d of %d events are late: shuffle differently", len(late), n)
	}
	var want []string
	for _, s := range sessions.Expect(data, sessions.Params{MaxOutOfOrderness: bound}) {
		want = append(want, "main "+s.Key+" "+s.Value)
	}

	sum := runBounded(t, e, cfg, wasmbuild.ForTest(t, "examples/sessions/plugin"), nil)
	if sum.EventsIn != n || sum.Late != int64(len(late)) || sum.TotalProcessed() != int64(n-len(late)) {
		t.Errorf("read %d, late %d, processed %d; want %d, %d, %d", sum.EventsIn, sum.Late, sum.TotalProcessed(), n, len(late), n-len(late))
	}
	sameRecords(t, "sessions", stored(t, e, cfg, "main"), want)
	var gotLate []string
	for _, r := range e.read(t, cfg.LateSubject()) {
		gotLate = append(gotLate, string(r.Data))
		if r.Header[engine.HeaderEventTime] == nil || r.Header[engine.HeaderWatermark] == nil {
			t.Errorf("late record seq %d lacks %s or %s: %v", r.Seq, engine.HeaderEventTime, engine.HeaderWatermark, r.Header)
		}
	}
	sameRecords(t, "late events", gotLate, late)
}
