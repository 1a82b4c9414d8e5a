package freqcap

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wasmstream/wasmstream/abi"
	"github.com/wasmstream/wasmstream/host/job"
	"github.com/wasmstream/wasmstream/host/natsembed"
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
	ev := func(u, d int) []byte { return fmt.Appendf(nil, `{"user_no":%d,"da_id":%d,"log_time":1}`, u, d) }
	events := [][]byte{ev(1, 1), ev(1, 1), ev(1, 2), ev(1, 1), ev(1, 1), ev(2, 1), []byte(`{"user_no":2}`), []byte(`bad`), ev(2, 1)}
	got := Oracle(events, 2)
	want := map[[2]int64]bool{{1, 1}: true, {2, 1}: true}
	if len(got) != len(want) || !got[[2]int64{1, 1}] || !got[[2]int64{2, 1}] {
		t.Errorf("Oracle = %v, want %v", got, want)
	}
}

func TestContract(t *testing.T) {
	c := Contract()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	want := `{"abi":1,"name":"freqcap","states":[{"name":"views","kind":"map"}],"outputs":["capped"],"fields":[{"name":"da_id"}]}`
	if got := string(c.AppendJSON(nil)); got != want {
		t.Errorf("contract JSON %s, want %s", got, want)
	}
	if c.Output("capped") != CappedPort {
		t.Error("capped port")
	}
}

func TestJobYAML(t *testing.T) {
	c, err := job.Parse(JobYAML)
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "freqcap" || c.Source.Stream != "FREQCAP" || c.Key.Field != "user_no" || c.Plugin.Path != "plugin" || c.Plugin.Config["cap"] != "3" {
		t.Errorf("job %+v", c)
	}
	warn, err := c.CheckOutputs(Contract().Outputs)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range warn {
		if strings.Contains(w, "capped") {
			t.Errorf("capped has no sink: %s", w)
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

func openNative(t *testing.T, cfg map[string]string) (*Native, statestore.Backend) {
	t.Helper()
	c := Contract()
	st, err := memory.New(statestore.Config{States: c.States, MaxParallelism: 128})
	if err != nil {
		t.Fatal(err)
	}
	n := NewNative()
	if err := n.Open(context.Background(), process.Env{Config: cfg, Fields: []string{"da_id"}, State: st}); err != nil {
		t.Fatal(err)
	}
	return n, st
}

func event(seq uint64, user string, da abi.Field) process.Event {
	return process.Event{Seq: seq, Key: []byte(user), KeyGroup: statestore.KeyGroup([]byte(user), 128), Fields: []abi.Field{da}}
}

func intField(v int64) abi.Field { return abi.Field{Kind: abi.FieldInt, Bits: uint64(v)} }

func TestNative(t *testing.T) {
	n, st := openNative(t, map[string]string{"cap": "3"})
	var evs []process.Event
	for i := range 5 {
		evs = append(evs, event(uint64(i+1), "123", intField(45)))
	}
	evs = append(evs,
		event(6, "123", intField(46)),
		event(7, "124", intField(45)),
		event(8, "7", abi.Field{Kind: abi.FieldString, Str: []byte("x")}),
		event(9, "7", abi.Field{}),
		event(10, "7", abi.Field{Kind: abi.FieldString, Str: []byte("12")}),
	)
	var r recorder
	if err := n.ProcessBatch(context.Background(), evs, &r); err != nil {
		t.Fatal(err)
	}
	if len(r.emitted) != 1 {
		t.Fatalf("emitted %+v, want one record", r.emitted)
	}
	o := r.emitted[0]
	if o.Port != CappedPort || o.Seq != 3 || string(o.Key) != "123.45" || string(o.Value) != `{"user_no":123,"da_id":45,"count":3}` {
		t.Errorf("capped record %+v (%s %s)", o, o.Key, o.Value)
	}
	if len(r.rejected) != 2 || r.rejected[0] != "da_id is string, want an integer" || r.rejected[1] != "da_id is absent, want an integer" {
		t.Errorf("rejected %q", r.rejected)
	}
	var uk [8]byte
	uk[0] = 45
	v, ok, err := st.MapGet(statestore.KeyGroup([]byte("123"), 128), ViewsState, []byte("123"), uk[:])
	if err != nil || !ok || v[0] != 5 {
		t.Errorf("views[123][45] = %v %v %v, want 5", v, ok, err)
	}
	uk[0] = 12
	if _, ok, _ := st.MapGet(statestore.KeyGroup([]byte("7"), 128), ViewsState, []byte("7"), uk[:]); !ok {
		t.Error("a decimal string da_id was not counted")
	}
}

func TestNativeConfig(t *testing.T) {
	st, _ := memory.New(statestore.Config{States: Contract().States, MaxParallelism: 128})
	for _, bad := range []string{"0", "three", "-1"} {
		err := NewNative().Open(context.Background(), process.Env{Config: map[string]string{"cap": bad}, Fields: []string{"da_id"}, State: st})
		if err == nil || !strings.Contains(err.Error(), "cap=") {
			t.Errorf("cap=%s: %v", bad, err)
		}
	}
	n := NewNative()
	if err := n.Open(context.Background(), process.Env{Fields: []string{"da_id"}, State: st}); err != nil || n.cap != DefaultCap {
		t.Errorf("default cap: %v %d", err, n.cap)
	}
	if err := NewNative().Open(context.Background(), process.Env{State: st}); err == nil {
		t.Error("Open without the da_id field succeeded")
	}
}

func TestPublish(t *testing.T) {
	srv, err := natsembed.Start(natsembed.Options{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	nc, err := nats.Connect(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
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
	c := Contract()
	st, _ := memory.New(statestore.Config{States: c.States, MaxParallelism: 128})
	n := NewNative()
	if err := n.Open(context.Background(), process.Env{Fields: []string{"da_id"}, State: st}); err != nil {
		b.Fatal(err)
	}
	var evs []process.Event
	for i := range 256 {
		u := fmt.Sprint(i % 97)
		evs = append(evs, event(uint64(i), u, intField(int64(i%13))))
	}
	var r recorder
	b.ReportAllocs()
	for b.Loop() {
		r.emitted = r.emitted[:0]
		if err := n.ProcessBatch(context.Background(), evs, &r); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(evs)), "ns/event")
}
