// Package wasmstreamtest runs a wasmstream Go plugin in-process, without a
// broker or a Wasm runtime, so its handler can be unit-tested with go test:
//
//	func TestCap(t *testing.T) {
//		h := wasmstreamtest.New(t, map[string]string{"cap": "2"})
//		h.Process([]byte("7"), []byte(`{"user_no":7,"da_id":1}`))
//		h.Process([]byte("7"), []byte(`{"user_no":7,"da_id":1}`))
//		if got := h.Output("capped"); len(got) != 1 {
//			t.Fatalf("capped = %v", got)
//		}
//	}
//
// The harness plays the host's part: it describes and opens the plugin
// registered with wasmstream.Register, extracts the declared fields from each
// JSON value (dotted paths into objects), encodes batches in the ABI's batch
// layout and calls the SDK's ws_process entry point, so the SDK's decoding
// runs as it does in Wasm. Keyed state lives in the in-memory state backend
// the host uses (statestore/memory); state TTL counts processing time on the
// harness clock and event time from each event's time. Emitted records, rejected events and
// log lines are recorded for inspection.
//
// Timers live in the same backend's timer store. The harness has an
// event-time watermark and a processing-time clock that tests move:
// AdvanceWatermark fires the event-time timers it passes, SetNow and Advance
// the processing-time timers the clock reaches, through the SDK's
// ws_on_timer entry point; Timers lists those pending. Events take their
// timestamp from Event.Time (the clock when 0).
//
// The SDK holds one plugin instance per process: the latest harness created
// is the active one, and tests using harnesses must not run in parallel.
package wasmstreamtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wasmstream/wasmstream/abi"
	wasmstream "github.com/wasmstream/wasmstream/plugins/go"
	"github.com/wasmstream/wasmstream/plugins/go/internal/bridge"
	"github.com/wasmstream/wasmstream/statestore"
	"github.com/wasmstream/wasmstream/statestore/memory"
)

// MaxParallelism is the number of key groups of the harness's state backend.
const MaxParallelism = 128

// DefaultNow is the harness clock's initial value: 2025-01-01T00:00:00Z in
// ms since the Unix epoch.
const DefaultNow int64 = 1735689600000

// Record is one emitted record.
type Record struct {
	Output string // "main" or the side output's name
	Seq    uint64 // sequence of the event that emitted it
	Key    string
	Value  string
}

// Rejection is an event the plugin rejected (to the dead-letter subject).
type Rejection struct {
	Seq    uint64
	Key    string
	Value  string
	Reason string
}

// LogLine is one line the plugin logged.
type LogLine struct {
	Level wasmstream.Level
	Msg   string
}

// Event is an input event for ProcessEvents.
type Event struct {
	Key     []byte
	Value   []byte // usually JSON: declared fields are extracted from it
	Subject string // default "events"
	Seq     uint64 // 0: one more than the previous event's
	Time    int64  // event time in ms; 0: the harness clock
}

// Option configures a harness.
type Option func(*options)

type options struct {
	name        string
	fn          wasmstream.Function
	job         string
	worker      int
	parallelism int
	paths       map[string]string
	now         int64
}

// WithFunction runs fn (under contract name name) instead of the function the
// plugin registered; the registration is restored by Close. It lets one
// test binary exercise several handlers.
func WithFunction(name string, fn wasmstream.Function) Option {
	return func(o *options) { o.name, o.fn = name, fn }
}

// WithJob sets the job name the plugin sees in Open (default "test").
func WithJob(name string) Option { return func(o *options) { o.job = name } }

// WithWorker sets the worker index and parallelism the plugin sees in Open
// (default 0 of 1).
func WithWorker(worker, parallelism int) Option {
	return func(o *options) { o.worker, o.parallelism = worker, parallelism }
}

// WithFieldPath overrides the JSON path of a declared field, as a job's
// config can.
func WithFieldPath(field, path string) Option {
	return func(o *options) {
		if o.paths == nil {
			o.paths = map[string]string{}
		}
		o.paths[field] = path
	}
}

// WithNow sets the initial processing time in ms (default DefaultNow).
func WithNow(ms int64) Option { return func(o *options) { o.now = ms } }

// Harness runs one plugin instance in-process.
type Harness struct {
	t        testing.TB
	config   map[string]string
	contract abi.Contract
	paths    []string // effective JSON path per field slot
	backend  *memory.Backend
	restore  func()

	now    int64
	seq    uint64
	timers timerState // timers.go

	w      abi.BatchWriter
	fields []abi.Field
	cur    []pending
	tmp    []byte

	records  []Record
	rejected []Rejection
	logs     []LogLine
	failMsg  string
	closed   bool
}

type pending struct {
	seq        uint64
	time       int64 // event time, ms
	kg         uint16
	key, value []byte
}

// active is the harness the SDK's host functions reach.
var active *Harness

// New describes and opens the registered plugin with config as its plugin
// config, and closes it at the end of the test. Setup errors (no registered
// Function, an invalid contract, an Open error) fail the test. t may be nil
// (for Example functions): failures then panic.
func New(t testing.TB, config map[string]string, opts ...Option) *Harness {
	if t != nil {
		t.Helper()
	}
	h, err := Open(config, opts...)
	if err != nil {
		if t == nil {
			panic(err.Error())
		}
		t.Fatal(err)
	}
	h.t = t
	if t != nil {
		t.Cleanup(func() { h.Close() })
	}
	return h
}

// Open is New for callers without a testing.TB, and for tests of setup
// failures: it returns the error (an Open error carries the plugin's
// message). Failures of the returned harness's methods panic; call Close
// when done.
func Open(config map[string]string, opts ...Option) (*Harness, error) {
	o := options{job: "test", parallelism: 1, now: DefaultNow}
	for _, opt := range opts {
		opt(&o)
	}
	h := &Harness{config: maps.Clone(config), now: o.now}
	if h.config == nil {
		h.config = map[string]string{}
	}
	if active != nil && !active.closed {
		active.Close()
	}
	active = h
	bridge.Current = (*host)(h)

	prevName, prevFn := bridge.Plugin.Registered()
	if o.fn != nil {
		bridge.Plugin.Register(o.name, o.fn)
		h.restore = func() { bridge.Plugin.Register(prevName, prevFn) }
	} else if prevFn == nil {
		return nil, h.setupFailed("no Function registered: the plugin must call wasmstream.Register in an init function, or pass wasmstreamtest.WithFunction")
	}

	desc := bridge.Plugin.Describe()
	if err := json.Unmarshal(desc, &h.contract); err != nil {
		return nil, h.setupFailed("ws_describe returned invalid JSON %q: %v", desc, err)
	}
	if err := h.contract.Validate(); err != nil {
		return nil, h.setupFailed("%v", err)
	}
	names := make([]string, len(h.contract.Fields))
	for i, f := range h.contract.Fields {
		names[i] = f.Name
		p := f.Path
		if p == "" {
			p = f.Name
		}
		if op, ok := o.paths[f.Name]; ok {
			p = op
		}
		h.paths = append(h.paths, p)
	}
	for f := range o.paths {
		if !slices.Contains(names, f) {
			return nil, h.setupFailed("WithFieldPath(%q): the plugin declares no such field (it declares %v)", f, names)
		}
	}
	b, err := memory.New(statestore.Config{States: h.contract.States, MaxParallelism: MaxParallelism, Clock: h.Now})
	if err != nil {
		return nil, h.setupFailed("%v", err)
	}
	h.backend = b

	info := abi.OpenInfo{Job: o.job, Worker: o.worker, Parallelism: o.parallelism, Fields: names, Config: h.config}
	enc := info.Append(nil)
	buf := bridge.Plugin.Buffer(len(enc))
	copy(buf, enc)
	if rc := bridge.Plugin.Open(buf[:len(enc)]); rc != 0 {
		return nil, h.setupFailed("Open failed: %s", h.failMsg)
	}
	return h, nil
}

// setupFailed deactivates a harness that could not open.
func (h *Harness) setupFailed(format string, args ...any) error {
	h.closed = true
	if h.restore != nil {
		h.restore()
	}
	if active == h {
		active = nil
		bridge.Current = nil
	}
	return fmt.Errorf("wasmstreamtest: "+format, args...)
}

func (h *Harness) fatalf(format string, args ...any) {
	msg := "wasmstreamtest: " + fmt.Sprintf(format, args...)
	if h.t != nil {
		h.t.Helper()
		h.t.Fatal(msg)
	}
	panic(msg)
}

func (h *Harness) use() {
	if h.closed {
		h.fatalf("the harness is closed")
	}
	if active != h {
		h.fatalf("another harness was created after this one: the SDK holds one plugin instance per process, use the newest harness")
	}
	bridge.Current = (*host)(h)
}

// Contract returns the plugin's contract as ws_describe declared it.
func (h *Harness) Contract() abi.Contract { return h.contract }

// Backend returns the state backend holding the plugin's keyed state.
func (h *Harness) Backend() statestore.Backend { return h.backend }

// Now returns the harness clock (the plugin's Context.Now), in ms.
func (h *Harness) Now() int64 { return h.now }

// SetNow sets the harness clock, in ms since the Unix epoch, and fires the
// processing-time timers it reaches (time ≤ ms), in order. It fails the
// test when the plugin fails; SetClock returns the failure instead.
func (h *Harness) SetNow(ms int64) {
	if h.t != nil {
		h.t.Helper()
	}
	if err := h.SetClock(ms); err != nil {
		h.fatalf("%v", err)
	}
}

// Advance moves the harness clock forward by d, as SetNow.
func (h *Harness) Advance(d time.Duration) {
	if h.t != nil {
		h.t.Helper()
	}
	h.SetNow(h.now + d.Milliseconds())
}

// Process processes one event with the next sequence number and the
// harness clock as its time. It fails the test when the plugin fails (a
// panic, or a host error such as a state type mismatch); a rejected event
// is not a failure, see Rejected.
func (h *Harness) Process(key, value []byte) {
	if h.t != nil {
		h.t.Helper()
	}
	if err := h.ProcessEvents(Event{Key: key, Value: value}); err != nil {
		h.fatalf("%v", err)
	}
}

// ProcessEvents processes evs as one batch and returns the plugin's failure,
// if any.
func (h *Harness) ProcessEvents(evs ...Event) error {
	h.use()
	h.w.Reset(abi.BatchEvents, len(h.paths))
	h.cur = h.cur[:0]
	for _, e := range evs {
		seq := e.Seq
		if seq == 0 {
			seq = h.seq + 1
		}
		h.seq = max(h.seq, seq)
		ts := e.Time
		if ts == 0 {
			ts = h.now
		}
		subject := e.Subject
		if subject == "" {
			subject = "events"
		}
		h.fields = h.fields[:0]
		for _, p := range h.paths {
			h.fields = append(h.fields, extract(e.Value, p))
		}
		h.w.Add(seq, ts, e.Key, e.Value, []byte(subject), h.fields)
		key := bytes.Clone(e.Key)
		h.cur = append(h.cur, pending{seq: seq, time: ts, kg: statestore.KeyGroup(key, MaxParallelism), key: key, value: bytes.Clone(e.Value)})
	}
	n := h.w.Size()
	buf := bridge.Plugin.Buffer(n)
	buf = h.w.AppendTo(buf[:0])
	h.failMsg = ""
	if rc := bridge.Plugin.Process(buf); rc != 0 {
		return fmt.Errorf("wasmstreamtest: the plugin failed: %s", h.failMsg)
	}
	return nil
}

// extract reads the field at a dotted path of a JSON value as the host
// does: absent when the value is not JSON or lacks the path.
func extract(value []byte, path string) abi.Field {
	raw := json.RawMessage(value)
	for seg := range strings.SplitSeq(path, ".") {
		var m map[string]json.RawMessage
		if json.Unmarshal(raw, &m) != nil {
			return abi.Field{}
		}
		r, ok := m[seg]
		if !ok {
			return abi.Field{}
		}
		raw = r
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return abi.Field{}
	}
	switch raw[0] {
	case 'n':
		return abi.Field{Kind: abi.FieldNull}
	case 't':
		return abi.Field{Kind: abi.FieldBool, Bits: 1}
	case 'f':
		return abi.Field{Kind: abi.FieldBool}
	case '"':
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return abi.Field{}
		}
		return abi.Field{Kind: abi.FieldString, Str: []byte(s)}
	case '{', '[':
		return abi.Field{Kind: abi.FieldRaw, Str: slices.Clone(raw)}
	}
	if !bytes.ContainsAny(raw, ".eE") {
		if n, err := strconv.ParseInt(string(raw), 10, 64); err == nil {
			return abi.Field{Kind: abi.FieldInt, Bits: uint64(n)}
		}
	}
	x, err := strconv.ParseFloat(string(raw), 64)
	if err != nil {
		return abi.Field{}
	}
	return abi.Field{Kind: abi.FieldFloat, Bits: math.Float64bits(x)}
}

// Outputs returns every record emitted so far, in emission order.
func (h *Harness) Outputs() []Record { return slices.Clone(h.records) }

// Output returns the records emitted to one output: "main" or a side
// output's name. It fails the test for a name the contract does not declare.
func (h *Harness) Output(name string) []Record {
	if h.contract.Output(name) < 0 {
		h.fatalf("Output(%q): the plugin declares no such output (side outputs: %v)", name, h.contract.Outputs)
	}
	var out []Record
	for _, r := range h.records {
		if r.Output == name {
			out = append(out, r)
		}
	}
	return out
}

// Rejected returns the events rejected so far, with their reasons.
func (h *Harness) Rejected() []Rejection { return slices.Clone(h.rejected) }

// Logs returns the lines logged so far.
func (h *Harness) Logs() []LogLine { return slices.Clone(h.logs) }

// Reset forgets recorded outputs, rejections and logs; state is kept.
func (h *Harness) Reset() {
	h.records, h.rejected, h.logs = nil, nil, nil
}

// Close closes the plugin (its Closer, if any) and returns its failure. It
// is idempotent and runs at the end of the test.
func (h *Harness) Close() error {
	if h.closed {
		return nil
	}
	h.closed = true
	bridge.Current = (*host)(h)
	h.failMsg = ""
	rc := bridge.Plugin.Close()
	if h.restore != nil {
		h.restore()
	}
	if active == h {
		active = nil
		bridge.Current = nil
	}
	if rc != 0 {
		return fmt.Errorf("wasmstreamtest: Close failed: %s", h.failMsg)
	}
	return nil
}

func (h *Harness) stateID(name string, kind abi.StateKind) int {
	for i, s := range h.contract.States {
		if s.Name == name {
			if s.Kind != kind {
				h.fatalf("state %q is a %s state, not %s", name, s.Kind, kind)
			}
			return i
		}
	}
	h.fatalf("the plugin declares no state %q", name)
	return -1
}

// ValueBytes returns the stored bytes of value state name for key.
func (h *Harness) ValueBytes(name, key string) ([]byte, bool) {
	st := h.stateID(name, abi.KindValue)
	v, ok, err := h.backend.Get(statestore.KeyGroup([]byte(key), MaxParallelism), st, []byte(key))
	if err != nil {
		h.fatalf("%v", err)
	}
	return bytes.Clone(v), ok
}

// ListBytes returns the stored items of list state name for key.
func (h *Harness) ListBytes(name, key string) [][]byte {
	st := h.stateID(name, abi.KindList)
	enc, err := h.backend.ListAppendTo(nil, statestore.KeyGroup([]byte(key), MaxParallelism), st, []byte(key))
	if err != nil {
		h.fatalf("%v", err)
	}
	var items [][]byte
	for {
		item, rest, ok, _ := abi.NextItem(enc)
		if !ok {
			return items
		}
		items = append(items, item)
		enc = rest
	}
}

// MapBytes returns the stored entries of map state name for key, by
// encoded user key.
func (h *Harness) MapBytes(name, key string) map[string][]byte {
	st := h.stateID(name, abi.KindMap)
	enc, err := h.backend.MapAppendTo(nil, statestore.KeyGroup([]byte(key), MaxParallelism), st, []byte(key), abi.IterEntries)
	if err != nil {
		h.fatalf("%v", err)
	}
	m := map[string][]byte{}
	for {
		k, rest, ok, _ := abi.NextItem(enc)
		if !ok {
			return m
		}
		v, rest, _, _ := abi.NextItem(rest)
		m[string(k)] = v
		enc = rest
	}
}

// Value returns the value of state s for key, decoded with its codec.
func Value[T any](h *Harness, s *wasmstream.ValueState[T], key string) (T, bool) {
	b, ok := h.ValueBytes(s.Name(), key)
	if !ok {
		var zero T
		return zero, false
	}
	return decode(h, s.Name(), s.Codec(), b), true
}

// List returns the items of list state s for key, decoded with its codec.
func List[T any](h *Harness, s *wasmstream.ListState[T], key string) []T {
	var out []T
	for _, b := range h.ListBytes(s.Name(), key) {
		out = append(out, decode(h, s.Name(), s.Codec(), b))
	}
	return out
}

// Map returns the entries of map state s for key, decoded with its codecs.
func Map[K comparable, V any](h *Harness, s *wasmstream.MapState[K, V], key string) map[K]V {
	out := map[K]V{}
	for k, v := range h.MapBytes(s.Name(), key) {
		out[decode(h, s.Name(), s.KeyCodec(), []byte(k))] = decode(h, s.Name(), s.ValueCodec(), v)
	}
	return out
}

func decode[T any](h *Harness, name string, c wasmstream.Codec[T], b []byte) T {
	v, err := c.Decode(b)
	if err != nil {
		h.fatalf("state %q: %v", name, err)
	}
	return v
}
