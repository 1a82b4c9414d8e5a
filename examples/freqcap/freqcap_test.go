package freqcap

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"github.com/wasmstream/wasmstream/internal/natstest"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/wasmstream/wasmstream/abi"
	"github.com/wasmstream/wasmstream/examples/internal/jobtest"
	"github.com/wasmstream/wasmstream/host/process"
	"github.com/wasmstream/wasmstream/statestore"
	"github.com/wasmstream/wasmstream/statestore/memory"
)

func TestGenerateDeterministic(t *testing.T) {
	a := Generate(2000, GenOptions{Seed: 42})
	b := Generate(2000, GenOptions{Seed: 42})
	c := Generate(2000, GenOptions{Seed: 43})
	same := true
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			t.Fatalf("event %d differs for the same seed", i)
		}
		same = same && bytes.Equal(a[i], c[i])
	}
	if same {
		t.Error("different seeds give the same events")
	}
	users := map[int64]int{}
	for i, e := range a {
		var v struct {
			UserNo  int64 `json:"user_no"`
			DaID    int64 `json:"da_id"`
			LogTime int64 `json:"log_time"`
		}
		if err := json.Unmarshal(e, &v); err != nil {
			t.Fatalf("event %q: %v", e, err)
		}
		if v.UserNo < 1 || v.UserNo > 100_000 || v.DaID < 1 || v.DaID > 1000 || v.LogTime != 1_735_689_600_000+int64(i) {
			t.Fatalf("event %s out of range", e)
		}
		users[v.UserNo]++
	}
	// Zipf: the most frequent user is far above the uniform share.
	top := 0
	for _, n := range users {
		top = max(top, n)
	}
	if top < 20 {
		t.Errorf("most frequent user appears %d times in 2000 events: not skewed", top)
	}
}

func TestOracle(t *testing.T) {
	ev := func(u, d, at int) []byte {
		return fmt.Appendf(nil, `{"user_no":%d,"da_id":%d,"log_time":%d}`, u, d, 1000+at)
	}
	events := [][]byte{ev(1, 1, 0), ev(1, 1, 5), ev(1, 2, 6), ev(1, 1, 12), ev(1, 1, 2), ev(2, 1, 20),
		[]byte(`{"user_no":2,"log_time":21}`), []byte(`bad`), ev(2, 1, 22),
		ev(2, 1, 1)} // 1 ≤ 22-20-1: late
	got := Expect(events, Params{Cap: 2, Window: 10, MaxOutOfOrderness: 20})
	want := []Record{
		{"capped", "1.1", `{"user_no":1,"da_id":1,"count":2}`},               // views at 0 and 2
		{"released", "1.1", `{"user_no":1,"da_id":1,"count":1,"time":1012}`}, // 2 expires at 12; 5 at 15
		{"capped", "1.1", `{"user_no":1,"da_id":1,"count":2}`},               // 12 comes at 12 with 5
		{"released", "1.1", `{"user_no":1,"da_id":1,"count":1,"time":1015}`}, // 5 expires
		{"capped", "2.1", `{"user_no":2,"da_id":1,"count":2}`},               // 20 and 22
		{"released", "2.1", `{"user_no":2,"da_id":1,"count":1,"time":1030}`},
	}
	if !slices.Equal(got, want) {
		t.Errorf("Expect =\n%v\nwant\n%v", got, want)
	}
	pairs := Oracle(Generate(3000, GenOptions{Seed: 1, Users: 50}), 3)
	if len(pairs) < 50 {
		t.Errorf("Oracle finds %d capped pairs in 3000 views of 50 users", len(pairs))
	}
}

func TestGenerateDisorder(t *testing.T) {
	const bound = 500
	a := Generate(5000, GenOptions{Seed: 4, Disorder: bound})
	if slices.EqualFunc(a, Generate(5000, GenOptions{Seed: 4}), bytes.Equal) {
		t.Fatal("Disorder did not shuffle")
	}
	var maxTs int64
	moved := 0
	for i, e := range a {
		var v struct {
			LogTime int64 `json:"log_time"`
		}
		if err := json.Unmarshal(e, &v); err != nil {
			t.Fatal(err)
		}
		if i > 0 && v.LogTime < maxTs-bound {
			t.Fatalf("event %d at %d is more than %d ms behind %d", i, v.LogTime, bound, maxTs)
		}
		if v.LogTime < maxTs {
			moved++
		}
		maxTs = max(maxTs, v.LogTime)
	}
	if moved < 1000 {
		t.Errorf("only %d of 5000 events are out of order", moved)
	}
	// In order with the defaults, the oracle's window never closes within
	// the stream: every capped pair is capped once and released at the end.
	in := Generate(5000, GenOptions{Seed: 4, Users: 200})
	shuffled := Generate(5000, GenOptions{Seed: 4, Users: 200, Disorder: DefaultMaxOutOfOrderness})
	sorted := func(rs []Record) []Record {
		slices.SortFunc(rs, func(a, b Record) int { return strings.Compare(a.Output+a.Key+a.Value, b.Output+b.Key+b.Value) })
		return rs
	}
	if x, y := sorted(Expect(in, Params{})), sorted(Expect(shuffled, Params{})); !slices.Equal(x, y) || len(x) == 0 {
		t.Errorf("in order %d records, shuffled within the bound %d: they differ", len(x), len(y))
	}
}

func TestContract(t *testing.T) {
	c := Contract()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	want := `{"abi":1,"name":"freqcap","states":[{"name":"views","kind":"map"}],"outputs":["capped","released"],"fields":[{"name":"da_id"}]}`
	if got := string(c.AppendJSON(nil)); got != want {
		t.Errorf("contract JSON %s, want %s", got, want)
	}
	if c.Output("capped") != CappedPort || c.Output("released") != ReleasedPort {
		t.Error("output ports")
	}
}

func TestJobYAML(t *testing.T) {
	c := jobtest.EventTime(t, JobYAML, "log_time", DefaultMaxOutOfOrderness)
	if c.Name != "freqcap" || c.Source.Stream != "FREQCAP" || c.Key.Field != "user_no" || c.Plugin.Path != "plugin" ||
		c.Plugin.Config["cap"] != "3" || c.Plugin.Config["window_ms"] != strconv.FormatInt(DefaultWindow, 10) {
		t.Errorf("job %+v", c)
	}
	warn, err := c.CheckOutputs(Contract().Outputs)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range warn {
		if strings.Contains(w, "capped") || strings.Contains(w, "released") {
			t.Errorf("an output has no sink: %s", w)
		}
	}
}

// recorder is a process.Collector that keeps what it receives.
type recorder struct {
	emitted  []process.Output
	rejected []string
}

func (r *recorder) Emit(port int, seq uint64, key, value []byte) {
	r.emitted = append(r.emitted, process.Output{Port: port, Seq: seq, Key: bytes.Clone(key), Value: bytes.Clone(value)})
}
func (r *recorder) Reject(ev *process.Event, reason string) { r.rejected = append(r.rejected, reason) }

func openNative(t testing.TB, cfg map[string]string) (*Native, *memory.Backend) {
	t.Helper()
	c := Contract()
	st, err := memory.New(statestore.Config{States: c.States, MaxParallelism: 128})
	if err != nil {
		t.Fatal(err)
	}
	n := NewNative()
	if err := n.Open(context.Background(), process.Env{Config: cfg, Fields: []string{"da_id"}, State: st, Timers: st}); err != nil {
		t.Fatal(err)
	}
	return n, st
}

func event(seq uint64, user string, at int64, da abi.Field) process.Event {
	return process.Event{Seq: seq, Time: at, Key: []byte(user), KeyGroup: statestore.KeyGroup([]byte(user), 128), Fields: []abi.Field{da}}
}

func intField(v int64) abi.Field { return abi.Field{Kind: abi.FieldInt, Bits: uint64(v)} }

// fire pops the timers of st due at upTo, in the order the engine fires
// them for one worker owning every key group, and hands them to n.
func fire(t testing.TB, n *Native, st *memory.Backend, upTo int64, r *recorder) {
	t.Helper()
	var due []process.Event
	for kg := range uint16(128) {
		_, err := st.PopTimers(kg, abi.TimeDomainEvent, upTo, 0, func(tm statestore.Timer) {
			due = append(due, process.Event{Seq: 99, Time: tm.Time, KeyGroup: kg, Key: bytes.Clone(tm.Key), Value: bytes.Clone(tm.Payload)})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	slices.SortStableFunc(due, func(a, b process.Event) int { return cmp.Compare(a.Time, b.Time) })
	if err := n.OnTimers(context.Background(), abi.TimeDomainEvent, due, r); err != nil {
		t.Fatal(err)
	}
}

func TestNative(t *testing.T) {
	n, st := openNative(t, map[string]string{"cap": "3", "window_ms": "100"})
	var evs []process.Event
	for i := range 5 {
		evs = append(evs, event(uint64(i+1), "123", int64(10*i), intField(45)))
	}
	evs = append(evs,
		event(6, "123", 0, intField(46)),
		event(7, "124", 0, intField(45)),
		event(8, "7", 0, abi.Field{Kind: abi.FieldString, Str: []byte("x")}),
		event(9, "7", 0, abi.Field{}),
		event(10, "7", 0, abi.Field{Kind: abi.FieldString, Str: []byte("12")}),
	)
	var r recorder
	if err := n.ProcessBatch(context.Background(), evs, &r); err != nil {
		t.Fatal(err)
	}
	if len(r.emitted) != 0 || st.TimerCount() != 16 {
		t.Fatalf("after the batch: emitted %d, %d timers; want none and 16", len(r.emitted), st.TimerCount())
	}
	if len(r.rejected) != 2 || r.rejected[0] != "da_id is string, want an integer" || r.rejected[1] != "da_id is absent, want an integer" {
		t.Errorf("rejected %q", r.rejected)
	}
	fire(t, n, st, 50, &r)
	if len(r.emitted) != 1 {
		t.Fatalf("emitted %+v, want one record", r.emitted)
	}
	o := r.emitted[0]
	if o.Port != CappedPort || o.Seq != 99 || string(o.Key) != "123.45" || string(o.Value) != `{"user_no":123,"da_id":45,"count":3}` {
		t.Errorf("capped record %+v (%s %s)", o, o.Key, o.Value)
	}
	var uk [8]byte
	uk[0] = 45
	v, ok, err := st.MapGet(statestore.KeyGroup([]byte("123"), 128), ViewsState, []byte("123"), uk[:])
	if err != nil || !ok || v[0] != 5 {
		t.Errorf("views[123][45] = %v %v %v, want 5", v, ok, err)
	}
	fire(t, n, st, 125, &r) // views at 0, 10, 20 expire
	if len(r.emitted) != 2 || r.emitted[1].Port != ReleasedPort || string(r.emitted[1].Value) != `{"user_no":123,"da_id":45,"count":2,"time":120}` {
		t.Fatalf("emitted %+v, want a release at 120", r.emitted)
	}
	fire(t, n, st, math.MaxInt64, &r)
	if st.TimerCount() != 0 {
		t.Errorf("%d timers left", st.TimerCount())
	}
	if empty, err := st.MapIsEmpty(statestore.KeyGroup([]byte("123"), 128), ViewsState, []byte("123")); err != nil || !empty {
		t.Errorf("views of 123 after every window closed: empty %v (%v)", empty, err)
	}
}

func TestNativeConfig(t *testing.T) {
	st, _ := memory.New(statestore.Config{States: Contract().States, MaxParallelism: 128})
	for _, bad := range []map[string]string{{"cap": "0"}, {"cap": "three"}, {"cap": "-1"}, {"window_ms": "0"}, {"window_ms": "1d"}} {
		err := NewNative().Open(context.Background(), process.Env{Config: bad, Fields: []string{"da_id"}, State: st, Timers: st})
		for k := range bad {
			if err == nil || !strings.Contains(err.Error(), k+"=") {
				t.Errorf("%v: %v", bad, err)
			}
		}
	}
	n := NewNative()
	if err := n.Open(context.Background(), process.Env{Fields: []string{"da_id"}, State: st, Timers: st}); err != nil || n.cap != DefaultCap || n.window != DefaultWindow {
		t.Errorf("defaults: %v %d %d", err, n.cap, n.window)
	}
	if err := NewNative().Open(context.Background(), process.Env{State: st, Timers: st}); err == nil {
		t.Error("Open without the da_id field succeeded")
	}
	if err := NewNative().Open(context.Background(), process.Env{Fields: []string{"da_id"}, State: st}); err == nil {
		t.Error("Open without timers succeeded")
	}
}

func TestPublish(t *testing.T) {
	n := natstest.Start(t)
	js := n.JS
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "FREQCAP", Subjects: []string{"views.>"}})
	if err != nil {
		t.Fatal(err)
	}
	events := Generate(25_000, GenOptions{Seed: 1})
	var last int
	if err := Publish(ctx, js, "views.all", events, func(n int) { last = n }); err != nil {
		t.Fatal(err)
	}
	if last != len(events) {
		t.Errorf("last progress %d, want %d", last, len(events))
	}
	info, err := st.Info(ctx)
	if err != nil || info.State.Msgs != uint64(len(events)) {
		t.Fatalf("stream holds %v messages (%v), want %d", info.State.Msgs, err, len(events))
	}
	m, err := st.GetMsg(ctx, 25_000)
	if err != nil || !bytes.Equal(m.Data, events[24_999]) {
		t.Errorf("last message %q %v", m.Data, err)
	}
	if err := Publish(ctx, js, "nowhere.x", events[:10], nil); err == nil {
		t.Error("publishing to a subject no stream captures succeeded")
	}
}

func BenchmarkNative(b *testing.B) {
	n, st := openNative(b, nil)
	var evs []process.Event
	for i := range 256 {
		u := fmt.Sprint(i % 97)
		evs = append(evs, event(uint64(i), u, int64(i), intField(int64(i%13))))
	}
	var r recorder
	b.ReportAllocs()
	at := int64(0)
	for b.Loop() {
		r.emitted = r.emitted[:0]
		for i := range evs {
			evs[i].Time = at + int64(i)
		}
		at += int64(len(evs))
		if err := n.ProcessBatch(context.Background(), evs, &r); err != nil {
			b.Fatal(err)
		}
		fire(b, n, st, at, &r)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(evs)), "ns/event")
}
