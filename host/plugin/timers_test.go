package plugin

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/wasmstream/wasmstream/abi"
	"github.com/wasmstream/wasmstream/host/process"
	"github.com/wasmstream/wasmstream/internal/wasmbuild"
	"github.com/wasmstream/wasmstream/statestore"
	"github.com/wasmstream/wasmstream/statestore/memory"
)

// due pops the timers of domain due at upTo from every key group, as the
// engine does, stamped with seq.
func (h *harness) due(domain int, upTo int64, seq uint64) []process.Event {
	h.t.Helper()
	var evs []process.Event
	for kg := range testMaxParallelism {
		_, err := h.timers.PopTimers(uint16(kg), domain, upTo, 0, func(t statestore.Timer) {
			evs = append(evs, process.Event{Seq: seq, Time: t.Time, KeyGroup: uint16(kg),
				Key: bytes.Clone(t.Key), Value: bytes.Clone(t.Payload)})
		})
		if err != nil {
			h.t.Fatal(err)
		}
	}
	// One key group at a time is the engine's order; tests want one order
	// across key groups.
	slices.SortStableFunc(evs, func(a, b process.Event) int {
		return cmp.Or(cmp.Compare(a.Time, b.Time), bytes.Compare(a.Key, b.Key))
	})
	return evs
}

func (h *harness) onTimers(domain int, timers []process.Event) (*collector, error) {
	c := &collector{}
	err := h.f.(process.TimerFunction).OnTimers(context.Background(), domain, timers, c)
	return c, err
}

// fire delivers the due timers of domain and fails the test on an error.
func (h *harness) fire(domain int, upTo int64, seq uint64) *collector {
	h.t.Helper()
	c, err := h.onTimers(domain, h.due(domain, upTo, seq))
	if err != nil {
		h.t.Fatalf("OnTimers: %v", err)
	}
	return c
}

func TestTimerRegister(t *testing.T) {
	h := open(t, shared(t, "ops"), nil)
	if h.f.(process.TimerFunction) == nil {
		t.Fatal("instance is not a TimerFunction")
	}
	jittered := abi.JitterTime([]byte("u1"), 200, 1000, []byte("j"))
	c := h.mustRun(event("u1", "wm;treg 0 100 0 a;treg 0 100 0 a;treg 0 50 0;treg 1 1700000001000 0 p;treg 0 200 1000 j;treg 0 200 1000 j;treg 0 100 0 b"))
	want := []string{"wm:" + strconv.FormatInt(abi.NoWatermark, 10), "treg:100", "treg:100", "treg:50", "treg:1700000001000",
		"treg:" + strconv.FormatInt(jittered, 10), "treg:" + strconv.FormatInt(jittered, 10), "treg:100"}
	if got := c.values(); !slices.Equal(got, want) {
		t.Fatalf("outputs\n got %q\nwant %q", got, want)
	}
	if jittered == 200 {
		t.Fatalf("jitter left the time unchanged")
	}
	// Registering the same timer again changed nothing.
	if n := h.timers.TimerCount(); n != 5 {
		t.Fatalf("%d timers, want 5", n)
	}
	kg := statestore.KeyGroup([]byte("u1"), testMaxParallelism)
	ts, err := h.timers.AppendTimers(nil, kg, abi.TimeDomainEvent)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, tr := range ts {
		got = append(got, strconv.FormatInt(tr.Time, 10)+"/"+string(tr.Key)+"/"+string(tr.Payload))
	}
	if want := []string{"50/u1/", "100/u1/a", "100/u1/b", strconv.FormatInt(jittered, 10) + "/u1/j"}; !slices.Equal(got, want) {
		t.Fatalf("stored event-time timers %q, want %q", got, want)
	}

	// Delete by effective time; deleting what is not there is no error.
	h.mustRun(event("u1", "tdel 0 100 b;tdel 0 "+strconv.FormatInt(jittered, 10)+" j;tdel 0 999 nothing;tdel 1 1700000001000 p"))
	if n := h.timers.TimerCount(); n != 2 {
		t.Fatalf("%d timers after deletes, want 2", n)
	}

	h.wm.Store(1234)
	if got := h.mustRun(event("u1", "wm")).values(); !slices.Equal(got, []string{"wm:1234"}) {
		t.Fatalf("watermark: %q", got)
	}
}

func TestTimerFire(t *testing.T) {
	h := open(t, shared(t, "ops"), nil)
	h.mustRun(
		event("u1", "vset one;treg 0 100 0 vget/vset,fired-u1/wm"),
		event("u2", "vset two;treg 0 100 0 vget;treg 0 300 0 vget"),
		event("u1", "treg 0 90 0 treg,0,110,0,vget/emit,1,side-key,from-timer"),
		event("u3", "treg 1 5000 0 vget"),
	)
	h.wm.Store(150)
	c := h.fire(abi.TimeDomainEvent, 150, 77)
	want := []string{
		"fired:1:90:77:treg,0,110,0,vget/emit,1,side-key,from-timer", "treg:110",
		"fired:1:100:77:vget/vset,fired-u1/wm", "vget:one", "wm:150",
		"fired:1:100:77:vget", "vget:two",
	}
	if got := c.values(); !slices.Equal(got, want) {
		t.Fatalf("timer outputs\n got %q\nwant %q", got, want)
	}
	// Outputs of a timer carry its key (ops emits with the record's key)
	// and the sequence the timer batch gave.
	for _, o := range c.outs {
		if o.Seq != 77 {
			t.Errorf("output %q has seq %d, want 77", o.Value, o.Seq)
		}
		if o.Port == 1 && (string(o.Key) != "side-key" || string(o.Value) != "from-timer") {
			t.Errorf("side output %q=%q", o.Key, o.Value)
		}
	}
	if !slices.ContainsFunc(c.outs, func(o process.Output) bool { return o.Port == 1 }) {
		t.Error("no side output from the timer")
	}
	// State written in a timer belongs to the timer's key.
	if got := h.mustRun(event("u1", "vget"), event("u2", "vget")).values(); !slices.Equal(got, []string{"vget:fired-u1", "vget:two"}) {
		t.Fatalf("state after timers: %q", got)
	}
	// The timer registered from a timer fires at the next watermark.
	c = h.fire(abi.TimeDomainEvent, 1000, 78)
	if got := c.values(); !slices.Equal(got, []string{"fired:1:110:78:vget", "vget:fired-u1", "fired:1:300:78:vget", "vget:two"}) {
		t.Fatalf("second round: %q", got)
	}
	// Processing-time timers come in their own batch kind.
	c = h.fire(abi.TimeDomainProcessing, 5000, 0)
	if got := c.values(); !slices.Equal(got, []string{"fired:2:5000:0:vget", "vget:absent"}) {
		t.Fatalf("processing time: %q", got)
	}
	if n := h.timers.TimerCount(); n != 0 {
		t.Fatalf("%d timers left", n)
	}
	// Nothing due is no call.
	if c, err := h.onTimers(abi.TimeDomainEvent, nil); err != nil || len(c.outs) != 0 {
		t.Fatalf("empty timer batch: %v %v", c.outs, err)
	}
	// Events still work after timer batches.
	if got := h.mustRun(event("u9", "vset x;vget")).values(); !slices.Equal(got, []string{"vget:x"}) {
		t.Fatalf("after timers: %q", got)
	}
}

func TestTimerCallErrors(t *testing.T) {
	p := shared(t, "ops")
	cases := []struct{ cmd, want string }{
		{"tbaddomain", "timer_register: time domain 2, want 0 (event time) or 1 (processing time)"},
		{"tbigpayload", "timer_register: timer payload of 1025 bytes, at most 1024 allowed"},
		{"tbadev", "timer_delete: event index 77 out of range (the batch has 1 events)"},
		{"tbadptr", "timer_register: payload pointer 0x7fff0000 length 12 outside guest memory"},
	}
	for _, tc := range cases {
		t.Run(tc.cmd, func(t *testing.T) {
			_, err := open(t, p, nil).run(event("k", tc.cmd))
			var ce *CallError
			if !errors.As(err, &ce) || ce.Err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}

	t.Run("reject in timer", func(t *testing.T) {
		h := open(t, p, nil)
		h.mustRun(event("k", "treg 0 5 0 reject,no"))
		_, err := h.onTimers(abi.TimeDomainEvent, h.due(abi.TimeDomainEvent, 5, 3))
		if err == nil || !strings.Contains(err.Error(), "ws_on_timer trapped") || !strings.Contains(err.Error(), "reject: record 0 is a fired timer, not an event") {
			t.Fatalf("reject in ws_on_timer: %v", err)
		}
	})
	t.Run("failing timer", func(t *testing.T) {
		h := open(t, p, nil)
		h.mustRun(event("k", "treg 1 5 0 fail,timer-broke"))
		_, err := h.onTimers(abi.TimeDomainProcessing, h.due(abi.TimeDomainProcessing, 5, 0))
		if err == nil || !strings.Contains(err.Error(), `plugin "ops": ws_on_timer failed: timer-broke`) {
			t.Fatalf("failing ws_on_timer: %v", err)
		}
	})
	t.Run("bad domain", func(t *testing.T) {
		h := open(t, p, nil)
		if _, err := h.onTimers(5, []process.Event{event("k", "")}); err == nil || !strings.Contains(err.Error(), "OnTimers with time domain 5") {
			t.Fatalf("OnTimers domain 5: %v", err)
		}
	})
	t.Run("no timer store", func(t *testing.T) {
		st, err := memory.New(statestore.Config{States: p.Contract().States, MaxParallelism: testMaxParallelism})
		if err != nil {
			t.Fatal(err)
		}
		f := p.NewFunction()
		if err := f.Open(context.Background(), process.Env{Fields: []string{"user"}, State: st}); err != nil {
			t.Fatal(err)
		}
		defer f.Close(context.Background())
		c := &collector{}
		if err := f.ProcessBatch(context.Background(), []process.Event{event("k", "wm")}, c); err != nil || !slices.Equal(c.values(), []string{"wm:" + strconv.FormatInt(abi.NoWatermark, 10)}) {
			t.Fatalf("watermark_ms without Env.Watermark: %v %q", err, c.values())
		}
		err = f.ProcessBatch(context.Background(), []process.Event{event("k", "treg 0 1 0")}, c)
		if err == nil || !strings.Contains(err.Error(), "timer_register: the worker has no timer store: the engine must pass process.Env.Timers") {
			t.Fatalf("timer_register without a timer store: %v", err)
		}
	})
}

// timerModule is a raw module that imports timer_register.
func timerModule() *wModule {
	return rawModule(minimalContract, nil).importing(wImport{abi.ImportModule, abi.FnTimerRegister,
		[]byte{tI32, tI32, tI64, tI64, tI32, tI32}, []byte{tI64}})
}

func TestTimerValidation(t *testing.T) {
	_, err := loadRaw(t, timerModule(), Options{})
	if err == nil || !errors.Is(err, ErrInvalidPlugin) ||
		!strings.Contains(err.Error(), "imports timer_register but does not export ws_on_timer (i32, i32) -> i32: a plugin that registers timers must export ws_on_timer") {
		t.Fatalf("timer_register without ws_on_timer: %v", err)
	}
	p, err := loadRaw(t, timerModule().with(wFunc{abi.ExportOnTimer, []byte{tI32, tI32}, []byte{tI32}, i32Const(0)}), Options{})
	if err != nil {
		t.Fatalf("timer_register with ws_on_timer: %v", err)
	}
	h := open(t, p, nil)
	if c, err := h.onTimers(abi.TimeDomainEvent, []process.Event{event("k", "")}); err != nil || len(c.outs) != 0 {
		t.Fatalf("OnTimers: %v", err)
	}
	// A plugin without ws_on_timer cannot take timers (say, restored from a
	// checkpoint of another plugin).
	p2, err := loadRaw(t, rawModule(minimalContract, nil), Options{})
	if err != nil {
		t.Fatal(err)
	}
	h2 := open(t, p2, nil)
	if _, err := h2.onTimers(abi.TimeDomainEvent, nil); err != nil {
		t.Fatalf("no timers: %v", err)
	}
	if _, err := h2.onTimers(abi.TimeDomainEvent, []process.Event{event("k", "")}); err == nil || !strings.Contains(err.Error(), "1 timers fired but the plugin does not export ws_on_timer") {
		t.Fatalf("OnTimers without ws_on_timer: %v", err)
	}
	// The ops guest, which uses timers, exports ws_on_timer.
	var imports []string
	for _, f := range shared(t, "ops").Imports() {
		if f.Module == abi.ImportModule && strings.HasPrefix(f.Name, "timer_") || f.Name == abi.FnWatermarkMs {
			imports = append(imports, f.String())
		}
	}
	slices.Sort(imports)
	want := []string{`"wasmstream"."timer_delete" (i32, i32, i64, i32, i32) -> ()`,
		`"wasmstream"."timer_register" (i32, i32, i64, i64, i32, i32) -> i64`,
		`"wasmstream"."watermark_ms" () -> i64`}
	if !slices.Equal(imports, want) {
		t.Fatalf("ops timer imports %q, want %q", imports, want)
	}
}

// TestSDKTimers runs a Go SDK plugin that uses timers through the host.
func TestSDKTimers(t *testing.T) {
	p := shared(t, "sdktimers")
	var imports []string
	for _, f := range p.Imports() {
		if f.Module == abi.ImportModule && (strings.HasPrefix(f.Name, "timer_") || f.Name == abi.FnWatermarkMs) {
			imports = append(imports, f.Name)
		}
	}
	slices.Sort(imports)
	if want := []string{abi.FnTimerDelete, abi.FnTimerRegister, abi.FnWatermarkMs}; !slices.Equal(imports, want) {
		t.Fatalf("timer imports %v, want %v", imports, want)
	}
	h := open(t, p, nil)
	e1, e2, e3 := event("a", "x"), event("a", "yy"), event("b", "x")
	h.mustRun(e1, e2, e3, event("c", "proc"))
	h.mustRun(event("b", "del"))
	if got := h.mustRun(event("a", "wm")).values(); !slices.Equal(got, []string{"wm:" + strconv.FormatInt(abi.NoWatermark, 10)}) {
		t.Fatalf("watermark: %q", got)
	}
	jit := h.mustRun(event("j", "jitter"))
	want := abi.JitterTime([]byte("j"), event("j", "jitter").Time, 60_000, nil)
	if got := jit.values(); !slices.Equal(got, []string{"jitter:" + strconv.FormatInt(want, 10)}) {
		t.Fatalf("jitter: %q, want %d", got, want)
	}
	h.wm.Store(e1.Time + 1000)
	c := h.fire(abi.TimeDomainEvent, e1.Time+1000, 42)
	if got, w := c.values(), []string{"session:event:" + strconv.FormatInt(e1.Time+1000, 10) + ":42:count=2"}; !slices.Equal(got, w) {
		t.Fatalf("event timers: %q, want %q", got, w)
	}
	c = h.fire(abi.TimeDomainProcessing, h.now.Load()+1000, 0)
	if got, w := c.values(), []string{"proc:processing:" + strconv.FormatInt(h.now.Load()+1000, 10) + ":0:count=0"}; !slices.Equal(got, w) {
		t.Fatalf("processing timers: %q, want %q", got, w)
	}
	// The session state of "a" was cleared by its timer; "b"'s timer was
	// deleted, so its count stays.
	if got := h.timers.TimerCount(); got != 1 { // the jittered one
		t.Fatalf("%d timers left, want 1", got)
	}
}

// TestSDKWithoutTimersImportsNone checks that a Go SDK plugin that does not
// use timers does not import the timer host functions (the Go linker keeps
// only the imports a plugin calls).
func TestSDKWithoutTimersImportsNone(t *testing.T) {
	wasm := wasmbuild.ForTest(t, "host/plugin/testdata/sdkplain")
	p, err := Load(context.Background(), "", wasm, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background())
	for _, f := range p.Imports() {
		if f.Module == abi.ImportModule && (strings.HasPrefix(f.Name, "timer_") || f.Name == abi.FnWatermarkMs) {
			t.Errorf("plugin without timers imports %s", f)
		}
	}
	if !slices.ContainsFunc(p.Exports(), func(f Func) bool { return f.Name == abi.ExportOnTimer }) {
		t.Error("the SDK does not export ws_on_timer")
	}
}

func TestUsesTimers(t *testing.T) {
	if !shared(t, "ops").UsesTimers() || !shared(t, "sdktimers").UsesTimers() {
		t.Error("timer guests: UsesTimers false")
	}
	p, err := loadRaw(t, rawModule(minimalContract, nil), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if p.UsesTimers() {
		t.Error("raw module: UsesTimers true")
	}
}
