package wasmstream_test

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/wasmstream/wasmstream/abi"
	wasmstream "github.com/wasmstream/wasmstream/plugins/go"
	"github.com/wasmstream/wasmstream/plugins/go/internal/bridge"
	"github.com/wasmstream/wasmstream/statestore"
	"github.com/wasmstream/wasmstream/statestore/memory"
)

// capFn is the frequency-capping handler of examples/freqcap, emitting each
// time a count reaches a multiple of the cap so that the measured batches
// exercise the emit path too.
type capFn struct {
	cap        int64
	key, value []byte
}

func (f *capFn) Open(*wasmstream.OpenContext) error { return nil }

func (f *capFn) ProcessElement(ctx *wasmstream.Context, ev *wasmstream.Event) error {
	da, ok := ev.Int(fAmount)
	if !ok {
		return errNoDA
	}
	if views.AddInt64(ctx, da, 1)%f.cap != 0 {
		return nil
	}
	user := ctx.Key()
	f.key = append(f.key[:0], user...)
	f.key = append(f.key, '.')
	f.key = strconv.AppendInt(f.key, da, 10)
	f.value = append(f.value[:0], `{"user_no":`...)
	f.value = append(f.value, user...)
	f.value = append(f.value, `,"da_id":`...)
	f.value = strconv.AppendInt(f.value, da, 10)
	f.value = append(f.value, `,"count":`...)
	f.value = strconv.AppendInt(f.value, f.cap, 10)
	f.value = append(f.value, '}')
	ctx.EmitTo(alerts, f.key, f.value)
	return nil
}

var errNoDA = &json.UnsupportedValueError{Str: "da_id"}

// countingHost serves map_add_i64 from the in-memory backend and counts
// host calls; the embedded nil Host panics on any other call.
type countingHost struct {
	bridge.Host
	backend *memory.Backend
	keys    [][]byte
	calls   int
	emits   int
	failMsg string
}

func (h *countingHost) MapAddI64(st, ev int32, k []byte, delta int64) int64 {
	h.calls++
	key := h.keys[ev]
	n, err := h.backend.MapAddInt64(statestore.KeyGroup(key, 128), int(st), key, k, delta)
	if err != nil {
		panic(err)
	}
	return n
}

func (h *countingHost) Emit(ev, out int32, k, v []byte) { h.calls++; h.emits++ }
func (h *countingHost) Fail(msg []byte)                 { h.failMsg = string(msg) }

// capBatch registers capFn under a counting host, opens it and returns a
// function that processes one pre-encoded batch of events through the SDK's
// ws_process entry point.
func capBatch(tb testing.TB, events int) (run func(), h *countingHost) {
	prevName, prevFn := bridge.Plugin.Registered()
	prevHost := bridge.Current
	tb.Cleanup(func() { bridge.Plugin.Register(prevName, prevFn); bridge.Current = prevHost })
	bridge.Plugin.Register("alloc", &capFn{cap: 4})

	var c abi.Contract
	if err := json.Unmarshal(bridge.Plugin.Describe(), &c); err != nil {
		tb.Fatal(err)
	}
	backend, err := memory.New(statestore.Config{States: c.States, MaxParallelism: 128})
	if err != nil {
		tb.Fatal(err)
	}
	h = &countingHost{backend: backend}
	bridge.Current = h

	var names []string
	for _, f := range c.Fields {
		names = append(names, f.Name)
	}
	info := (&abi.OpenInfo{Job: "alloc", Parallelism: 1, Fields: names}).Append(nil)
	if rc := bridge.Plugin.Open(append(bridge.Plugin.Buffer(len(info))[:0], info...)); rc != 0 {
		tb.Fatal(h.failMsg)
	}

	var w abi.BatchWriter
	w.Reset(abi.BatchEvents, len(names))
	fields := make([]abi.Field, len(names))
	slot := slices.Index(names, fAmount.Name())
	for i := range events {
		user := []byte(strconv.Itoa(1000 + i%8))
		fields[slot] = abi.Field{Kind: abi.FieldInt, Bits: uint64(i / 8)}
		w.Add(uint64(i+1), 0, user, []byte(`{}`), []byte("ads"), fields)
		h.keys = append(h.keys, user)
	}
	batch := w.AppendTo(nil)
	in := append(bridge.Plugin.Buffer(len(batch))[:0], batch...)
	return func() {
		if rc := bridge.Plugin.Process(in); rc != 0 {
			tb.Fatal(h.failMsg)
		}
	}, h
}

// TestProcessDoesNotAllocate shows that the SDK's event path (decoding the
// batch, setting up each event, reading an extracted field, one map
// AddInt64, building and emitting a record) makes no allocation.
func TestProcessDoesNotAllocate(t *testing.T) {
	const events = 64
	run, h := capBatch(t, events)
	run() // creates the map entries

	h.calls, h.emits = 0, 0
	allocs := testing.AllocsPerRun(20, run)
	if allocs != 0 {
		t.Errorf("ws_process of %d events: %v allocations per batch, want 0", events, allocs)
	}
	const n = 21 * events // AllocsPerRun runs once more to warm up
	if h.emits == 0 {
		t.Fatalf("the measured batches did not emit")
	}
	if h.calls != n+h.emits {
		t.Errorf("%d host calls for %d events and %d emits, want one per event plus one per emit", h.calls, n, h.emits)
	}
}

// BenchmarkProcess measures the native cost per event of the capFn path.
func BenchmarkProcess(b *testing.B) {
	const events = 1000
	run, _ := capBatch(b, events)
	run()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		run()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*events), "ns/event")
}

func TestOpenChecksFields(t *testing.T) {
	prevName, prevFn := bridge.Plugin.Registered()
	prevHost := bridge.Current
	defer func() { bridge.Plugin.Register(prevName, prevFn); bridge.Current = prevHost }()
	bridge.Plugin.Register("fields", testFn{})
	h := &countingHost{}
	bridge.Current = h
	var c abi.Contract
	if err := json.Unmarshal(bridge.Plugin.Describe(), &c); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range c.Fields {
		names = append(names, f.Name)
	}

	info := (&abi.OpenInfo{Fields: []string{"amount", "name"}}).Append(nil)
	if rc := bridge.Plugin.Open(info); rc == 0 || !strings.Contains(h.failMsg, "the host extracts fields [amount name] but the plugin declares ["+strings.Join(names, " ")+"]") {
		t.Errorf("open with other fields: rc %d, %q", rc, h.failMsg)
	}
	if rc := bridge.Plugin.Open([]byte{1, 2}); rc == 0 || !strings.Contains(h.failMsg, "malformed open info") {
		t.Errorf("open with garbage: rc %d, %q", rc, h.failMsg)
	}
	if rc := bridge.Plugin.Process(nil); rc == 0 || !strings.Contains(h.failMsg, "before a successful ws_open") {
		t.Errorf("process before open: rc %d, %q", rc, h.failMsg)
	}
	info = (&abi.OpenInfo{Fields: names}).Append(nil)
	if rc := bridge.Plugin.Open(info); rc != 0 {
		t.Fatal(h.failMsg)
	}
	if rc := bridge.Plugin.Process([]byte{1}); rc == 0 || !strings.Contains(h.failMsg, "malformed batch") {
		t.Errorf("garbage batch: rc %d, %q", rc, h.failMsg)
	}
	var w abi.BatchWriter
	w.Reset(abi.BatchEvents, 2)
	if rc := bridge.Plugin.Process(w.AppendTo(nil)); rc == 0 || !strings.Contains(h.failMsg, "2 field slots per event, the plugin declares "+strconv.Itoa(len(names))) {
		t.Errorf("batch with other field count: rc %d, %q", rc, h.failMsg)
	}
	w.Reset(abi.BatchEventTimers, len(names))
	if rc := bridge.Plugin.Process(w.AppendTo(nil)); rc == 0 || !strings.Contains(h.failMsg, "not an event batch") {
		t.Errorf("timer batch: rc %d, %q", rc, h.failMsg)
	}
	bridge.Plugin.Close()
}
