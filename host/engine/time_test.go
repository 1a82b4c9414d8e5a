package engine

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/wasmstream/wasmstream/abi"
	"github.com/wasmstream/wasmstream/host/job"
	"github.com/wasmstream/wasmstream/host/process"
	"github.com/wasmstream/wasmstream/statestore"
)

// fireRec is one fired timer as the test function saw it.
type fireRec struct {
	worker int
	domain int
	seq    uint64
	time   int64
	key    string
	count  int   // events of the key processed before the timer fired
	wm     int64 // Env.Watermark during OnTimers
	now    int64 // Env.Now during OnTimers
}

// seen is one event as the test function saw it.
type seen struct {
	worker int
	seq    uint64
	time   int64
	key    string
}

// recorder collects what every worker's timerCounter saw.
type recorder struct {
	mu     sync.Mutex
	fired  []fireRec
	events []seen
	wake   chan struct{}
}

func newRecorder() *recorder { return &recorder{wake: make(chan struct{}, 1)} }

func (r *recorder) changed() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// waitFor blocks until cond holds (checked under the lock after every
// change); the test context bounds the wait so a broken engine fails the
// test instead of hanging it.
func (r *recorder) waitFor(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for {
		r.mu.Lock()
		ok := cond()
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-r.wake:
		case <-ctx.Done():
			t.Fatalf("gave up waiting for %s", what)
		}
	}
}

func (r *recorder) snapshot() ([]seen, []fireRec) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events), slices.Clone(r.fired)
}

// timerCounter counts events per key. For each event it registers an
// event-time timer at the event's time + 10 (or, with proc set, a
// processing-time timer at now + proc); when a timer fires it emits the
// key's count. Timers of rejectKey are rejected instead.
type timerCounter struct {
	rec       *recorder
	proc      int64
	rejectKey string
	env       process.Env
	counts    map[string]int
}

func (f *timerCounter) Open(_ context.Context, env process.Env) error {
	if env.Timers == nil || env.Watermark == nil {
		return errors.New("the engine gave no timer store or watermark")
	}
	f.env = env
	f.counts = map[string]int{}
	return nil
}

func (f *timerCounter) ProcessBatch(_ context.Context, evs []process.Event, _ process.Collector) error {
	for i := range evs {
		ev := &evs[i]
		f.counts[string(ev.Key)]++
		t := statestore.Timer{Domain: abi.TimeDomainEvent, Time: ev.Time + 10, Key: ev.Key}
		if f.proc > 0 {
			t = statestore.Timer{Domain: abi.TimeDomainProcessing, Time: f.env.Now() + f.proc, Key: ev.Key}
		}
		if _, err := f.env.Timers.RegisterTimer(ev.KeyGroup, t); err != nil {
			return err
		}
		f.rec.mu.Lock()
		f.rec.events = append(f.rec.events, seen{f.env.Worker, ev.Seq, ev.Time, string(ev.Key)})
		f.rec.mu.Unlock()
	}
	f.rec.changed()
	return nil
}

func (f *timerCounter) OnTimers(_ context.Context, domain int, timers []process.Event, out process.Collector) error {
	for i := range timers {
		tm := &timers[i]
		if string(tm.Key) == f.rejectKey {
			out.Reject(tm, "no count for "+f.rejectKey)
			continue
		}
		n := f.counts[string(tm.Key)]
		out.Emit(abi.MainOutput, tm.Seq, tm.Key, []byte(strconv.Itoa(n)))
		f.rec.mu.Lock()
		f.rec.fired = append(f.rec.fired, fireRec{f.env.Worker, domain, tm.Seq, tm.Time, string(tm.Key), n, f.env.Watermark(), f.env.Now()})
		f.rec.mu.Unlock()
	}
	f.rec.changed()
	return nil
}

func (f *timerCounter) Close(context.Context) error { return nil }

// timeJob parses a job reading stream IN keyed by the JSON field k, with
// extra YAML appended.
func timeJob(t *testing.T, extra string) *job.Config {
	t.Helper()
	c, err := job.Parse([]byte(`
name: tj
source: {stream: IN, subjects: ["in.>"]}
key: {field: k}
plugin: {path: x.wasm}
` + extra))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func timeConfig(e *env, c *job.Config, rec *recorder, mod func(*timerCounter)) Config {
	return Config{
		Conn: e.nc, Job: c,
		NewFunction: func(int) (process.Function, error) {
			f := &timerCounter{rec: rec}
			if mod != nil {
				mod(f)
			}
			return f, nil
		},
		UntilCaughtUp: true,
	}
}

// tev is a test event: key and event time.
type tev struct {
	key string
	ts  int64
}

func publishEvents(t *testing.T, e *env, evs []tev) {
	t.Helper()
	for _, ev := range evs {
		if _, err := e.js.Publish(testCtx(t), "in.x", fmt.Appendf(nil, `{"k":%q,"ts":%d}`, ev.key, ev.ts)); err != nil {
			t.Fatal(err)
		}
	}
}

// timerOracle runs timerCounter's logic with the engine's watermark rules
// over evs (sequence i+1), with every event in a batch of its own and a
// bounded run's final watermark. It returns the fired timers (worker,
// watermark and now left zero) and the number of late events.
func timerOracle(evs []tev, bound int64, policy string) ([]fireRec, int) {
	type tkey struct {
		t   int64
		key string
	}
	wm, wmSeq := int64(abi.NoWatermark), uint64(0)
	maxTs := int64(math.MinInt64)
	timers := map[tkey]bool{}
	counts := map[string]int{}
	var fired []fireRec
	late := 0
	fire := func() {
		var due []tkey
		for k := range timers {
			if k.t <= wm {
				due = append(due, k)
			}
		}
		slices.SortFunc(due, func(a, b tkey) int {
			if a.t != b.t {
				return int(a.t - b.t)
			}
			return strings.Compare(a.key, b.key)
		})
		for _, k := range due {
			delete(timers, k)
			fired = append(fired, fireRec{seq: wmSeq, time: k.t, key: k.key, count: counts[k.key]})
		}
	}
	for i, ev := range evs {
		seq := uint64(i + 1)
		isLate := wm != abi.NoWatermark && ev.ts <= wm
		if isLate {
			late++
			if policy != job.LateProcess {
				continue
			}
		}
		counts[ev.key]++
		timers[tkey{ev.ts + 10, ev.key}] = true
		if !isLate && ev.ts > maxTs {
			maxTs = ev.ts
			if w := ev.ts - bound - 1; w > wm {
				wm, wmSeq = w, seq
			}
		}
		fire()
	}
	wm, wmSeq = math.MaxInt64, uint64(len(evs))
	fire()
	return fired, late
}

// sortFired orders fired timers by firing round (seq), time and key, and
// clears what the oracle does not know.
func sortFired(fs []fireRec) []fireRec {
	out := make([]fireRec, len(fs))
	for i, f := range fs {
		out[i] = fireRec{seq: f.seq, time: f.time, key: f.key, count: f.count, domain: f.domain}
	}
	slices.SortFunc(out, func(a, b fireRec) int {
		switch {
		case a.seq != b.seq:
			return int(a.seq) - int(b.seq)
		case a.time != b.time:
			return int(a.time - b.time)
		}
		return strings.Compare(a.key, b.key)
	})
	return out
}

// TestEventTimeTimersOutOfOrder feeds out-of-order events with a bound of
// 5ms, one event per batch, and checks every timer fires right after the
// event whose watermark passed it, with the count of events processed
// until then, under each late-event policy.
func TestEventTimeTimersOutOfOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var evs []tev
	for i := range 300 {
		evs = append(evs, tev{key: string(rune('a' + rng.IntN(6))), ts: 10_000 + int64(i)*3 + rng.Int64N(17) - 8})
	}
	for _, policy := range []string{job.LateProcess, job.LateDrop, job.LateSideOutput} {
		t.Run(policy, func(t *testing.T) {
			want, wantLate := timerOracle(evs, 5, policy)
			if wantLate == 0 || wantLate > 100 {
				t.Fatalf("the input has %d late events: adjust it so some, not most, are late", wantLate)
			}
			e := newEnv(t)
			createStream(t, e, "IN", "in.>")
			publishEvents(t, e, evs)
			c := timeJob(t, `
event_time: {field: ts, format: epoch_ms, max_out_of_orderness: 5ms}
late: {policy: `+policy+`, create: true}
batch: {size: 1}
parallelism: 1
`)
			rec := newRecorder()
			eng, err := New(timeConfig(e, c, rec, nil))
			if err != nil {
				t.Fatal(err)
			}
			sum, err := eng.Run(testCtx(t))
			if err != nil {
				t.Fatal(err)
			}
			_, fired := rec.snapshot()
			for _, f := range fired {
				if f.wm < f.time {
					t.Errorf("timer %s@%d fired at watermark %d, before the watermark passed it", f.key, f.time, f.wm)
				}
			}
			got := sortFired(fired)
			if !slices.Equal(got, want) {
				t.Errorf("fired %d timers, oracle %d", len(got), len(want))
				for i := range min(len(got), len(want)) {
					if got[i] != want[i] {
						t.Fatalf("first difference at %d: got %+v, want %+v", i, got[i], want[i])
					}
				}
			}
			if sum.Late != int64(wantLate) {
				t.Errorf("late %d, want %d", sum.Late, wantLate)
			}
			if sum.TimersFired != int64(len(want)) || sum.Outputs["main"] != int64(len(want)) {
				t.Errorf("summary %+v: want %d timers fired and emitted", sum, len(want))
			}
			if sum.Watermark != math.MaxInt64 || sum.Watermarks[0] != math.MaxInt64 {
				t.Errorf("watermarks after a bounded run: source %d, workers %v, want the maximum", sum.Watermark, sum.Watermarks)
			}
			processed := int64(len(evs))
			if policy != job.LateProcess {
				processed -= int64(wantLate)
			}
			if sum.TotalProcessed() != processed {
				t.Errorf("processed %d, want %d", sum.TotalProcessed(), processed)
			}
		})
	}
}

// keysOfWorker returns n keys of the form prefixN that worker w owns.
func keysOfWorker(prefix string, n, w, maxPar, par int) []string {
	var keys []string
	for i := 0; len(keys) < n; i++ {
		k := prefix + strconv.Itoa(i)
		if statestore.WorkerOf(statestore.KeyGroup([]byte(k), maxPar), maxPar, par) == w {
			keys = append(keys, k)
		}
	}
	return keys
}

// TestWatermarkReachesIdleWorker: with parallelism 2, worker 1 gets events
// only at the start and processes them; the watermark that later events of
// worker 0 raise still reaches worker 1, with no batch of its own to carry
// it, and fires its timers, in an unbounded run.
func TestWatermarkReachesIdleWorker(t *testing.T) {
	e := newEnv(t)
	createStream(t, e, "IN", "in.>")
	c := timeJob(t, `
event_time: {field: ts}
parallelism: 2
`)
	k1 := keysOfWorker("one", 3, 1, c.MaxParallelism, 2)
	k0 := keysOfWorker("zero", 3, 0, c.MaxParallelism, 2)
	var first []tev
	for i, k := range k1 {
		first = append(first, tev{k, 100 + int64(i)}) // timers at 110..112
	}
	publishEvents(t, e, first)
	rec := newRecorder()
	cfg := timeConfig(e, c, rec, nil)
	cfg.UntilCaughtUp = false
	eng, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	var sum Summary
	var runErr error
	done := make(chan struct{})
	go func() { sum, runErr = eng.Run(ctx); close(done) }()
	rec.waitFor(t, testCtx(t), "worker 1's events", func() bool { return len(rec.events) == len(k1) })
	if _, fired := rec.snapshot(); len(fired) != 0 {
		t.Fatalf("timers fired at watermark 101: %+v", fired)
	}
	var more []tev
	for i := range 50 {
		more = append(more, tev{k0[i%3], 1000 + int64(i)})
	}
	publishEvents(t, e, more)
	// Worker 0's events raise the watermark to 1048, far beyond 112.
	rec.waitFor(t, testCtx(t), "worker 1's timers", func() bool {
		n := 0
		for _, f := range rec.fired {
			if f.worker == 1 {
				n++
			}
		}
		return n == len(k1)
	})
	cancel()
	<-done
	if runErr != nil {
		t.Fatal(runErr)
	}
	_, fired := rec.snapshot()
	for _, f := range fired {
		if f.worker == 1 && (f.wm == math.MaxInt64 || f.wm < f.time || f.seq <= uint64(len(k1))) {
			t.Errorf("worker 1's timer %+v: want a watermark from worker 0's events", f)
		}
	}
	if sum.Processed[1] != int64(len(k1)) {
		t.Errorf("worker 1 processed %d events, want %d", sum.Processed[1], len(k1))
	}
	if sum.Watermarks[1] < 112 || sum.Watermarks[1] == math.MaxInt64 {
		t.Errorf("worker 1's watermark %d", sum.Watermarks[1])
	}
}

// TestLateSideOutput checks late events reach the late subject with their
// payload, original headers, event time and the watermark they missed, and
// that the boundary (an event at the watermark) is late.
func TestLateSideOutput(t *testing.T) {
	e := newEnv(t)
	createStream(t, e, "IN", "in.>")
	ctx := testCtx(t)
	evs := []tev{{"a", 100}, {"a", 200}, {"b", 150}, {"b", 199}, {"a", 198}, {"a", 200}, {"c", 300}}
	// Watermark after event 2 is 199: events at 150, 199 and 198 are late.
	for i, ev := range evs {
		m := nats.NewMsg("in." + strconv.Itoa(i))
		m.Data = fmt.Appendf(nil, `{"k":%q,"ts":%d}`, ev.key, ev.ts)
		m.Header.Set("Origin", "test")
		if _, err := e.js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	c := timeJob(t, `
event_time: {field: ts}
late: {create: true}
`)
	rec := newRecorder()
	eng, err := New(timeConfig(e, c, rec, nil))
	if err != nil {
		t.Fatal(err)
	}
	sum, err := eng.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Late != 3 || sum.TotalProcessed() != 4 {
		t.Errorf("summary %+v: want 3 late, 4 processed", sum)
	}
	late := readStream(t, e, "TJ_LATE")
	if len(late) != 3 {
		t.Fatalf("%d late events published, want 3", len(late))
	}
	for i, want := range []struct {
		seq int
		ts  string
	}{{3, "150"}, {4, "199"}, {5, "198"}} {
		m := late[i]
		ev := evs[want.seq-1]
		if string(m.Data) != fmt.Sprintf(`{"k":%q,"ts":%d}`, ev.key, ev.ts) {
			t.Errorf("late %d: payload %s", i, m.Data)
		}
		for h, v := range map[string]string{
			HeaderEventTime: want.ts, HeaderWatermark: "199", "Origin": "test",
			HeaderSourceSeq: strconv.Itoa(want.seq), HeaderSourceSubject: "in." + strconv.Itoa(want.seq-1),
		} {
			if got := m.Header.Get(h); got != v {
				t.Errorf("late %d: header %s = %q, want %q", i, h, got, v)
			}
		}
	}
	events, _ := rec.snapshot()
	for _, ev := range events {
		if ev.seq >= 3 && ev.seq <= 5 {
			t.Errorf("late event %d reached the function", ev.seq)
		}
	}
}

// TestIdleTimeoutAdvancesWatermark: after one event the stream goes quiet;
// once the manual clock passes the idle timeout the watermark follows the
// clock and the event's timer fires, in an unbounded run.
func TestIdleTimeoutAdvancesWatermark(t *testing.T) {
	e := newEnv(t)
	createStream(t, e, "IN", "in.>")
	const start = 1_000_000
	publishEvents(t, e, []tev{{"a", 500_000}})
	c := timeJob(t, `
event_time: {field: ts, max_out_of_orderness: 2s, idle_timeout: 30s}
`)
	rec := newRecorder()
	clock := NewManualClock(start)
	cfg := timeConfig(e, c, rec, nil)
	cfg.UntilCaughtUp = false
	cfg.Clock = clock
	eng, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	done := make(chan error, 1)
	go func() { _, err := eng.Run(ctx); done <- err }()
	rec.waitFor(t, testCtx(t), "the event", func() bool { return len(rec.events) == 1 })
	if _, fired := rec.snapshot(); len(fired) != 0 {
		t.Fatalf("timer fired before the source was idle: %+v", fired)
	}
	clock.Advance(30 * time.Second)
	rec.waitFor(t, testCtx(t), "the timer", func() bool { return len(rec.fired) == 1 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	_, fired := rec.snapshot()
	f := fired[0]
	// now − bound − 1, as if an event stamped with the clock had arrived.
	if wantWM := int64(start + 30_000 - 2_000 - 1); f.wm != wantWM || f.time != 500_010 || f.seq != 1 {
		t.Errorf("fired %+v: want time 500010 at watermark %d with seq 1", f, wantWM)
	}
}

// TestBoundedRunFiresRemainingTimers: at the end of a bounded run (caught
// up, or an end sequence) the watermark goes to the maximum and every
// event-time timer fires, attributed to the last event read; a timer the
// function rejects is dead-lettered with its key, domain and time.
func TestBoundedRunFiresRemainingTimers(t *testing.T) {
	evs := []tev{{"a", 100}, {"b", 101}, {"bad", 102}, {"a", 103}, {"c", 104}}
	for _, tc := range []struct {
		name     string
		untilSeq uint64
		caughtUp bool
		n        int // events processed
	}{
		{"caught-up", 0, true, 5},
		{"until-seq", 4, false, 4},
		{"until-seq-past-end", 9, true, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			createStream(t, e, "IN", "in.>")
			publishEvents(t, e, evs)
			c := timeJob(t, `
event_time: {field: ts, max_out_of_orderness: 1h}
dead_letter: {create: true}
parallelism: 2
`)
			rec := newRecorder()
			cfg := timeConfig(e, c, rec, func(f *timerCounter) { f.rejectKey = "bad" })
			cfg.UntilCaughtUp, cfg.UntilSeq = tc.caughtUp, tc.untilSeq
			eng, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			sum, err := eng.Run(testCtx(t))
			if err != nil {
				t.Fatal(err)
			}
			if sum.TotalProcessed() != int64(tc.n) || sum.LastSeq != uint64(tc.n) {
				t.Errorf("summary %+v: want %d processed", sum, tc.n)
			}
			want := map[string]int{}
			for _, ev := range evs[:tc.n] {
				want[fmt.Sprintf("%s@%d", ev.key, ev.ts+10)] = 0
			}
			_, fired := rec.snapshot()
			for _, f := range fired {
				k := fmt.Sprintf("%s@%d", f.key, f.time)
				if _, ok := want[k]; !ok {
					t.Errorf("unexpected timer %s", k)
				}
				delete(want, k)
				if f.wm != math.MaxInt64 || f.seq != uint64(tc.n) {
					t.Errorf("timer %s fired at watermark %d seq %d, want the maximum and seq %d", k, f.wm, f.seq, tc.n)
				}
			}
			delete(want, "bad@112")
			if len(want) > 0 {
				t.Errorf("timers that did not fire: %v", want)
			}
			if sum.TimersFired != int64(len(fired)+1) || sum.DeadLettered != 1 {
				t.Errorf("summary %+v: want %d timers fired, 1 dead-lettered", sum, len(fired)+1)
			}
			dead := readStream(t, e, "TJ_DLQ")
			if len(dead) != 1 {
				t.Fatalf("%d dead letters, want 1", len(dead))
			}
			h := dead[0].Header
			if h.Get(HeaderKey) != "bad" || h.Get(HeaderTimerDomain) != "event" || h.Get(HeaderTimerTime) != "112" ||
				h.Get(HeaderDlqReason) != "no count for bad" || h.Get(HeaderSourceSeq) != strconv.Itoa(tc.n) {
				t.Errorf("timer dead letter headers %v", h)
			}
		})
	}
}

// TestProcessingTimeTimersManualClock: processing-time timers fire when the
// manual clock reaches them, not before, between batches.
func TestProcessingTimeTimersManualClock(t *testing.T) {
	e := newEnv(t)
	createStream(t, e, "IN", "in.>")
	const start = 5_000
	publishEvents(t, e, []tev{{"a", 1}, {"b", 2}, {"a", 3}})
	c := timeJob(t, "parallelism: 2\n")
	rec := newRecorder()
	clock := NewManualClock(start)
	cfg := timeConfig(e, c, rec, func(f *timerCounter) { f.proc = 100 })
	cfg.UntilCaughtUp = false
	cfg.Clock = clock
	eng, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	done := make(chan error, 1)
	go func() { _, err := eng.Run(ctx); done <- err }()
	rec.waitFor(t, testCtx(t), "the events", func() bool { return len(rec.events) == 3 })
	clock.Advance(99 * time.Millisecond)
	// More events after the first advance: their timers are at start+199.
	publishEvents(t, e, []tev{{"c", 4}})
	rec.waitFor(t, testCtx(t), "the fourth event", func() bool { return len(rec.events) == 4 })
	if _, fired := rec.snapshot(); len(fired) != 0 {
		t.Fatalf("timers fired before the clock reached them: %+v", fired)
	}
	clock.Advance(time.Millisecond)
	rec.waitFor(t, testCtx(t), "two timers", func() bool { return len(rec.fired) == 2 })
	clock.Advance(99 * time.Millisecond)
	rec.waitFor(t, testCtx(t), "three timers", func() bool { return len(rec.fired) == 3 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	_, fired := rec.snapshot()
	got := map[string]fireRec{}
	for _, f := range fired {
		if f.domain != abi.TimeDomainProcessing || f.seq != 0 || f.now < f.time {
			t.Errorf("fired %+v: want processing time, seq 0, now ≥ time", f)
		}
		got[f.key] = f
	}
	if got["a"].time != start+100 || got["a"].count != 2 || got["b"].time != start+100 || got["c"].time != start+199 {
		t.Errorf("fired %+v", fired)
	}
}

// TestEventTimeSources reads event time from a JSON field (epoch ms or RFC
// 3339), a header, or the publish time, and dead-letters events whose time
// cannot be read.
func TestEventTimeSources(t *testing.T) {
	type msg struct {
		data, header, reason string
		want                 int64 // -1: the publish time
	}
	for _, tc := range []struct {
		name, yaml string
		msgs       []msg
	}{
		{"field-auto", `event_time: {field: t}`, []msg{
			{`{"k":"a","t":1700000000123}`, "", "", 1700000000123},
			{`{"k":"a","t":1700000000124.9}`, "", "", 1700000000124},
			{`{"k":"a","t":"2023-11-14T22:13:20.5Z"}`, "", "", 1700000000500},
			{`{"k":"a","t":"2023-11-15T00:13:20+02:00"}`, "", "", 1700000000000},
			{`{"k":"a","t":"yesterday"}`, "", `event time field t: "yesterday" is not an RFC 3339 time such as 2025-01-02T15:04:05.123Z`, 0},
			{`{"k":"a","t":true}`, "", "event time field t is bool, want epoch milliseconds or an RFC 3339 time", 0},
			{`{"k":"a"}`, "", "event time field t is absent, want epoch milliseconds or an RFC 3339 time", 0},
		}},
		{"field-epoch", `event_time: {field: m.t, format: epoch_ms}`, []msg{
			{`{"k":"a","m":{"t":1700000000999}}`, "", "", 1700000000999},
			{`{"k":"a","m":{"t":"2023-11-14T22:13:20Z"}}`, "", "event time field m.t is string, want epoch milliseconds", 0},
		}},
		{"legacy-timestamp", `timestamp: t`, []msg{
			{`{"k":"a","t":1700000000001}`, "", "", 1700000000001},
		}},
		{"header-auto", `event_time: {header: Event-Time}`, []msg{
			{`{"k":"a"}`, "1700000000042", "", 1700000000042},
			{`{"k":"a"}`, "2023-11-14T22:13:21Z", "", 1700000001000},
			{`{"k":"a"}`, "", "event time header Event-Time is missing", 0},
			{`{"k":"a"}`, "soon", `event time header Event-Time: "soon" is not epoch milliseconds or an RFC 3339 time`, 0},
		}},
		{"publish-time", `event_time: {source: publish_time}`, []msg{
			{`{"k":"a"}`, "", "", -1},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			createStream(t, e, "IN", "in.>")
			ctx := testCtx(t)
			var pubTimes []int64
			for _, m := range tc.msgs {
				nm := nats.NewMsg("in.x")
				nm.Data = []byte(m.data)
				if m.header != "" {
					nm.Header.Set("Event-Time", m.header)
				}
				ack, err := e.js.PublishMsg(ctx, nm)
				if err != nil {
					t.Fatal(err)
				}
				raw, err := e.js.Stream(ctx, "IN")
				if err != nil {
					t.Fatal(err)
				}
				sm, err := raw.GetMsg(ctx, ack.Sequence)
				if err != nil {
					t.Fatal(err)
				}
				pubTimes = append(pubTimes, sm.Time.UnixMilli())
			}
			c := timeJob(t, tc.yaml+"\nlate: {policy: process}\ndead_letter: {create: true}\n")
			rec := newRecorder()
			eng, err := New(timeConfig(e, c, rec, nil))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := eng.Run(ctx); err != nil {
				t.Fatal(err)
			}
			events, _ := rec.snapshot()
			got := map[uint64]int64{}
			for _, ev := range events {
				got[ev.seq] = ev.time
			}
			reasons := map[string]string{}
			for _, d := range readStream(t, e, "TJ_DLQ") {
				reasons[d.Header.Get(HeaderSourceSeq)] = d.Header.Get(HeaderDlqReason)
			}
			for i, m := range tc.msgs {
				seq := uint64(i + 1)
				if m.reason != "" {
					if r := reasons[strconv.Itoa(i+1)]; r != m.reason {
						t.Errorf("message %d (%s): dead-letter reason %q, want %q", seq, m.data, r, m.reason)
					}
					continue
				}
				want := m.want
				if want == -1 {
					want = pubTimes[i]
				}
				if ts, ok := got[seq]; !ok || ts != want {
					t.Errorf("message %d (%s %s): event time %d (seen %v), want %d", seq, m.data, m.header, ts, ok, want)
				}
			}
		})
	}
}

func TestManualClock(t *testing.T) {
	c := NewManualClock(100)
	ch1, _ := c.After(150)
	ch2, stop2 := c.After(120)
	ch0, _ := c.After(100)
	select {
	case <-ch0:
	default:
		t.Error("a wait for the current time is not released at once")
	}
	stop2()
	c.Advance(30 * time.Millisecond)
	select {
	case <-ch2:
		t.Error("a stopped wait was released")
	case <-ch1:
		t.Error("a wait for 150 released at 130")
	default:
	}
	c.Set(90) // processing time never goes back
	if c.Now() != 130 {
		t.Errorf("Now %d after Set(90), want 130", c.Now())
	}
	c.Set(150)
	select {
	case <-ch1:
	default:
		t.Error("a wait for 150 not released at 150")
	}
}
