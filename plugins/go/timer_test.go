package wasmstream_test

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wasmstream/wasmstream/abi"
	wasmstream "github.com/wasmstream/wasmstream/plugins/go"
	"github.com/wasmstream/wasmstream/plugins/go/internal/bridge"
	"github.com/wasmstream/wasmstream/plugins/go/wasmstreamtest"
)

// timerFn is testFn with an OnTimer hook.
type timerFn struct{ testFn }

var onTimer func(ctx *wasmstream.Context, t *wasmstream.Timer) error

func (timerFn) OnTimer(ctx *wasmstream.Context, t *wasmstream.Timer) error {
	if onTimer == nil {
		return nil
	}
	return onTimer(ctx, t)
}

// startTimers opens a harness running timerFn.
func startTimers(t *testing.T, opts ...wasmstreamtest.Option) *wasmstreamtest.Harness {
	t.Helper()
	t.Cleanup(func() { step, onTimer = nil, nil })
	return wasmstreamtest.New(t, nil, append(opts, wasmstreamtest.WithFunction("timers", timerFn{}))...)
}

// at processes one event with key and event time ts, running f.
func at(t *testing.T, h *wasmstreamtest.Harness, key string, ts int64, f func(ctx *wasmstream.Context, ev *wasmstream.Event)) {
	t.Helper()
	step = func(ctx *wasmstream.Context, ev *wasmstream.Event) error { f(ctx, ev); return nil }
	if err := h.ProcessEvents(wasmstreamtest.Event{Key: []byte(key), Value: []byte(`{}`), Time: ts}); err != nil {
		t.Fatal(err)
	}
}

// fired records what OnTimer saw.
func recordTimers(got *[]string, also func(ctx *wasmstream.Context, t *wasmstream.Timer)) {
	onTimer = func(ctx *wasmstream.Context, t *wasmstream.Timer) error {
		*got = append(*got, t.Domain().String()+":"+strconv.FormatInt(t.Time(), 10)+":"+string(t.Key())+":"+string(t.Payload())+
			":seq"+strconv.FormatUint(t.Seq(), 10)+":key="+string(ctx.Key()))
		if also != nil {
			also(ctx, t)
		}
		return nil
	}
}

func TestEventTimers(t *testing.T) {
	h := startTimers(t)
	var got []string
	recordTimers(&got, func(ctx *wasmstream.Context, tm *wasmstream.Timer) {
		// State and Emit work for the timer's key.
		n := counter.AddInt64(ctx, 100)
		ctx.Emit(nil, []byte(string(tm.Key())+"="+strconv.FormatInt(n, 10)+" wm="+strconv.FormatInt(ctx.Watermark(), 10)))
	})
	if wm := h.Watermark(); wm != wasmstream.NoWatermark {
		t.Fatalf("initial watermark %d", wm)
	}
	at(t, h, "b", 1000, func(ctx *wasmstream.Context, ev *wasmstream.Event) {
		if ts := ctx.RegisterEventTimer(ev.Timestamp()+500, nil); ts != 1500 {
			t.Errorf("RegisterEventTimer returned %d, want 1500", ts)
		}
		ctx.RegisterEventTimer(1500, nil) // again: no second timer
		ctx.RegisterEventTimer(1200, []byte("early"))
		counter.AddInt64(ctx, 1)
		if wm := ctx.Watermark(); wm != wasmstream.NoWatermark {
			t.Errorf("watermark in ProcessElement %d", wm)
		}
	})
	at(t, h, "a", 1100, func(ctx *wasmstream.Context, ev *wasmstream.Event) {
		ctx.RegisterEventTimer(1500, []byte("p"))
		ctx.RegisterEventTimer(9000, nil)
		ctx.RegisterProcessingTimer(wasmstreamtest.DefaultNow+10, nil)
	})
	want := []wasmstreamtest.Timer{
		{Domain: wasmstream.EventTime, Time: 1200, Key: "b", Payload: "early"},
		{Domain: wasmstream.EventTime, Time: 1500, Key: "a", Payload: "p"},
		{Domain: wasmstream.EventTime, Time: 1500, Key: "b"},
		{Domain: wasmstream.EventTime, Time: 9000, Key: "a"},
		{Domain: wasmstream.ProcessingTime, Time: wasmstreamtest.DefaultNow + 10, Key: "a"},
	}
	if p := h.Timers(); !slices.Equal(p, want) {
		t.Fatalf("pending timers\n got %+v\nwant %+v", p, want)
	}

	h.AdvanceWatermark(1499)
	if w := []string{"event:1200:b:early:seq2:key=b"}; !slices.Equal(got, w) {
		t.Fatalf("fired %q, want %q", got, w)
	}
	h.AdvanceWatermark(1000) // never back
	h.AdvanceWatermark(2000)
	if w := []string{"event:1200:b:early:seq2:key=b", "event:1500:a:p:seq2:key=a", "event:1500:b::seq2:key=b"}; !slices.Equal(got, w) {
		t.Fatalf("fired %q, want %q", got, w)
	}
	var outs []string
	for _, r := range h.Output("main") {
		outs = append(outs, r.Value)
		if r.Seq != 2 {
			t.Errorf("output %q has seq %d, want 2 (the last event's)", r.Value, r.Seq)
		}
	}
	if w := []string{"b=101 wm=1499", "a=100 wm=2000", "b=201 wm=2000"}; !slices.Equal(outs, w) {
		t.Fatalf("outputs %q, want %q", outs, w)
	}
	if n, _ := wasmstreamtest.Value(h, counter, "b"); n != 201 {
		t.Fatalf("counter of b = %d", n)
	}
	if p := h.Timers(); len(p) != 2 {
		t.Fatalf("pending %+v", p)
	}
}

func TestTimerDeleteAndJitter(t *testing.T) {
	h := startTimers(t)
	var got []string
	recordTimers(&got, nil)
	var jittered int64
	at(t, h, "k", 1000, func(ctx *wasmstream.Context, ev *wasmstream.Event) {
		jittered = ctx.RegisterEventTimerJitter(5000, 1000, []byte("j"))
		ctx.RegisterEventTimer(3000, []byte("x"))
		ctx.RegisterEventTimer(3000, []byte("y"))
		ctx.RegisterProcessingTimerJitter(wasmstreamtest.DefaultNow, 60_000, nil)
	})
	if want := abi.JitterTime([]byte("k"), 5000, 1000, []byte("j")); jittered != want || jittered == 5000 {
		t.Fatalf("jittered time %d, want %d", jittered, want)
	}
	at(t, h, "k", 1000, func(ctx *wasmstream.Context, ev *wasmstream.Event) {
		ctx.DeleteEventTimer(3000, []byte("x"))
		ctx.DeleteEventTimer(3000, []byte("nothing")) // no such timer: nothing happens
		ctx.DeleteEventTimer(jittered, []byte("j"))
		ctx.DeleteProcessingTimer(abi.JitterTime([]byte("k"), wasmstreamtest.DefaultNow, 60_000, nil), nil)
	})
	if p := h.Timers(); len(p) != 1 || p[0].Payload != "y" {
		t.Fatalf("pending after deletes %+v", p)
	}
	h.AdvanceWatermark(10_000)
	h.Advance(time.Hour)
	if w := []string{"event:3000:k:y:seq2:key=k"}; !slices.Equal(got, w) {
		t.Fatalf("fired %q, want %q", got, w)
	}
}

func TestProcessingTimers(t *testing.T) {
	h := startTimers(t)
	var got []string
	recordTimers(&got, func(ctx *wasmstream.Context, tm *wasmstream.Timer) {
		if ctx.Now() != h.Now() {
			t.Errorf("Now in OnTimer %d, harness %d", ctx.Now(), h.Now())
		}
		if string(tm.Payload()) == "again" { // a periodic timer
			ctx.RegisterProcessingTimer(tm.Time()+1000, []byte("again"))
		}
	})
	now := h.Now()
	at(t, h, "k", 0, func(ctx *wasmstream.Context, ev *wasmstream.Event) {
		if ev.Timestamp() != now {
			t.Errorf("an event without Time has timestamp %d, want the clock %d", ev.Timestamp(), now)
		}
		ctx.RegisterProcessingTimer(ctx.Now()+1000, []byte("again"))
		ctx.RegisterProcessingTimer(ctx.Now()+1500, nil)
		ctx.RegisterEventTimer(ctx.Now(), nil) // event time: not fired by the clock
	})
	h.Advance(999 * time.Millisecond)
	if len(got) != 0 {
		t.Fatalf("fired early: %q", got)
	}
	h.Advance(2001 * time.Millisecond) // to now+3000: again at +1000, +2000, +3000
	n := func(d int64) string { return strconv.FormatInt(now+d, 10) }
	want := []string{
		"processing:" + n(1000) + ":k:again:seq0:key=k",
		"processing:" + n(1500) + ":k::seq0:key=k",
		"processing:" + n(2000) + ":k:again:seq0:key=k",
		"processing:" + n(3000) + ":k:again:seq0:key=k",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("fired\n got %q\nwant %q", got, want)
	}
	if p := h.Timers(); len(p) != 2 || p[0].Domain != wasmstream.EventTime || p[1].Time != now+4000 {
		t.Fatalf("pending %+v", p)
	}
	if err := h.SetClock(now + 4000); err != nil || len(got) != 5 {
		t.Fatalf("SetClock: %v, %d fired", err, len(got))
	}
}

func TestTimerFailures(t *testing.T) {
	h := startTimers(t)
	at(t, h, "k", 100, func(ctx *wasmstream.Context, ev *wasmstream.Event) {
		ctx.RegisterEventTimer(1, []byte("err"))
		ctx.RegisterEventTimer(2, []byte("panic"))
		ctx.RegisterEventTimer(3, []byte("reject"))
	})
	onTimer = func(ctx *wasmstream.Context, tm *wasmstream.Timer) error {
		switch string(tm.Payload()) {
		case "err":
			return errors.New("state is inconsistent")
		case "panic":
			panic("kaput")
		case "reject":
			ctx.Reject("no")
		}
		return nil
	}
	for _, c := range []struct {
		wm   int64
		want string
	}{
		{1, `wasmstream: OnTimer failed for the event-time timer at 1 of key "k": state is inconsistent`},
		{2, `wasmstream: OnTimer panicked on the event-time timer at 2 of key "k": kaput`},
		{3, "Reject called in OnTimer: a fired timer is not an event"},
	} {
		if err := h.SetWatermark(c.wm); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("watermark %d: %v, want %q", c.wm, err, c.want)
		}
	}
	// The failed timers fired (they are gone).
	if p := h.Timers(); len(p) != 0 {
		t.Errorf("pending %+v", p)
	}

	err := fails(t, h, "k", func(ctx *wasmstream.Context) {
		ctx.RegisterEventTimer(1, make([]byte, wasmstream.MaxTimerPayload+1))
	})
	if err == nil || !strings.Contains(err.Error(), "timer payload of 1025 bytes, at most 1024 allowed") {
		t.Errorf("big payload: %v", err)
	}
	if err := fails(t, h, "k", func(ctx *wasmstream.Context) { ctx.RegisterEventTimer(1, make([]byte, wasmstream.MaxTimerPayload)) }); err != nil {
		t.Errorf("payload of MaxTimerPayload bytes: %v", err)
	}
}

func TestTimerWithoutHandler(t *testing.T) {
	h := start(t, nil) // testFn has no OnTimer
	err := fails(t, h, "k", func(ctx *wasmstream.Context) { ctx.RegisterEventTimer(1, nil) })
	if err == nil || !strings.Contains(err.Error(), "timer registered by a Function without an OnTimer method: implement wasmstream.TimerHandler") {
		t.Fatalf("register without a handler: %v", err)
	}
	err = fails(t, h, "k", func(ctx *wasmstream.Context) { ctx.DeleteProcessingTimer(1, nil) })
	if err == nil || !strings.Contains(err.Error(), "without an OnTimer method") {
		t.Fatalf("delete without a handler: %v", err)
	}
	// A timer batch reaching a function without a handler fails clearly.
	var w abi.BatchWriter
	w.Reset(abi.BatchEventTimers, 0)
	w.Add(1, 5, []byte("k"), nil, nil, nil)
	h2 := &countingHost{}
	prev := bridge.Current
	bridge.Current = h2
	defer func() { bridge.Current = prev }()
	if rc := bridge.Plugin.OnTimer(w.AppendTo(nil)); rc == 0 || !strings.Contains(h2.failMsg, "timers fired but the registered Function has no OnTimer method") {
		t.Fatalf("timer batch without a handler: rc %d, %q", rc, h2.failMsg)
	}
}

func TestTimerBatchChecks(t *testing.T) {
	startTimers(t)
	h := &countingHost{}
	prev := bridge.Current
	bridge.Current = h
	defer func() { bridge.Current = prev }()
	if rc := bridge.Plugin.OnTimer([]byte{1, 2}); rc == 0 || !strings.Contains(h.failMsg, "ws_on_timer: wasmstream: malformed batch") {
		t.Errorf("garbage: rc %d, %q", rc, h.failMsg)
	}
	var w abi.BatchWriter
	w.Reset(abi.BatchEvents, 0)
	if rc := bridge.Plugin.OnTimer(w.AppendTo(nil)); rc == 0 || !strings.Contains(h.failMsg, "batch kind 0 is not a timer batch") {
		t.Errorf("event batch: rc %d, %q", rc, h.failMsg)
	}
}

func TestTimerDomainString(t *testing.T) {
	if wasmstream.EventTime.String() != "event" || wasmstream.ProcessingTime.String() != "processing" || wasmstream.TimeDomain(7).String() != "domain(7)" {
		t.Error("TimeDomain.String")
	}
}

// timerHost serves the host calls of the timer path without allocating.
type timerHost struct {
	bridge.Host
	calls   int
	failMsg string
}

func (h *timerHost) Emit(ev, out int32, k, v []byte) { h.calls++ }
func (h *timerHost) TimerRegister(domain, ev int32, ts, jitter int64, payload []byte) int64 {
	h.calls++
	return ts
}
func (h *timerHost) WatermarkMs() int64 { h.calls++; return 0 }
func (h *timerHost) Fail(msg []byte)    { h.failMsg = string(msg) }

// TestOnTimerDoesNotAllocate shows that the SDK's timer path (decoding the
// timer batch, reading the timer, registering the next timer, emitting)
// makes no allocation.
func TestOnTimerDoesNotAllocate(t *testing.T) {
	startTimers(t)
	h := &timerHost{}
	prev := bridge.Current
	bridge.Current = h
	defer func() { bridge.Current = prev }()
	onTimer = func(ctx *wasmstream.Context, tm *wasmstream.Timer) error {
		if tm.Domain() == wasmstream.EventTime && ctx.Watermark() >= 0 {
			ctx.RegisterEventTimer(tm.Time()+1000, tm.Payload())
		}
		ctx.Emit(tm.Key(), tm.Payload())
		_ = tm.Seq()
		return nil
	}
	const timers = 64
	var w abi.BatchWriter
	w.Reset(abi.BatchEventTimers, 0)
	for i := range timers {
		w.Add(9, int64(i), []byte("user-"+strconv.Itoa(i)), []byte("session"), nil, nil)
	}
	batch := w.AppendTo(nil)
	in := append(bridge.Plugin.Buffer(len(batch))[:0], batch...)
	run := func() {
		if rc := bridge.Plugin.OnTimer(in); rc != 0 {
			t.Fatal(h.failMsg)
		}
	}
	run()
	h.calls = 0
	if allocs := testing.AllocsPerRun(20, run); allocs != 0 {
		t.Errorf("ws_on_timer of %d timers: %v allocations per batch, want 0", timers, allocs)
	}
	if want := 21 * timers * 3; h.calls != want {
		t.Errorf("%d host calls, want %d", h.calls, want)
	}
}
