package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/wasmstream/wasmstream/internal/natstest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wasmstream/wasmstream/abi"
	"github.com/wasmstream/wasmstream/examples/freqcap"
	"github.com/wasmstream/wasmstream/host/job"
	"github.com/wasmstream/wasmstream/host/natsembed"
	"github.com/wasmstream/wasmstream/host/process"
)

// env is a real embedded server with a client connection.
type env struct {
	srv *natsembed.Server
	nc  *nats.Conn
	js  jetstream.JetStream
}

func newEnv(t testing.TB) *env {
	t.Helper()
	n := natstest.Start(t, jetstream.WithPublishAsyncMaxPending(8192))
	srv, nc, js := n.Server, n.Conn, n.JS
	return &env{srv: srv, nc: nc, js: js}
}

func testCtx(t testing.TB) context.Context {
	// A generous bound so a broken engine fails the test instead of hanging
	// it; no assertion depends on timing.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func freqcapJob(t testing.TB, parallelism int) *job.Config {
	t.Helper()
	c, err := job.Parse(freqcap.JobYAML)
	if err != nil {
		t.Fatal(err)
	}
	c.Parallelism = parallelism
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return c
}

func freqcapConfig(t testing.TB, e *env, c *job.Config) Config {
	t.Helper()
	ct := freqcap.Contract()
	fields, err := ResolveFields(c, ct.Fields)
	if err != nil {
		t.Fatal(err)
	}
	return Config{
		Conn:          e.nc,
		Job:           c,
		Fields:        fields,
		Outputs:       ct.Outputs,
		States:        ct.States,
		NewFunction:   func(int) (process.Function, error) { return freqcap.NewNative(), nil },
		UntilCaughtUp: true,
		Logf:          t.Logf,
	}
}

func createStream(t testing.TB, e *env, name string, subjects ...string) {
	t.Helper()
	if _, err := e.js.CreateStream(testCtx(t), jetstream.StreamConfig{Name: name, Subjects: subjects}); err != nil {
		t.Fatal(err)
	}
}

// readStream returns every message of a stream, in order.
func readStream(t testing.TB, e *env, name string) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx := testCtx(t)
	st, err := e.js.Stream(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	if info.State.Msgs == 0 {
		return nil
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("stream %s seq %d: %v", name, seq, err)
		}
		out = append(out, m)
	}
	return out
}

func TestFreqcapEndToEnd(t *testing.T) {
	const n, limit = 50_000, 3
	events := freqcap.Generate(n, freqcap.GenOptions{Seed: 7, Users: 20_000, Ads: 200})
	want := freqcap.Oracle(events, limit)
	if len(want) < 100 {
		t.Fatalf("the generated stream caps only %d pairs: too few to test with", len(want))
	}
	for _, par := range []int{1, 2} {
		t.Run(fmt.Sprintf("parallelism=%d", par), func(t *testing.T) {
			e := newEnv(t)
			createStream(t, e, "FREQCAP", "views.>")
			if err := freqcap.Publish(testCtx(t), e.js, "views.all", events, nil); err != nil {
				t.Fatal(err)
			}
			c := freqcapJob(t, par)
			cfg := freqcapConfig(t, e, c)
			var statusMu sync.Mutex
			statuses := 0
			cfg.Status = func(Status) { statusMu.Lock(); statuses++; statusMu.Unlock() }
			cfg.StatusEvery = 10 * time.Millisecond
			eng, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			sum, err := eng.Run(testCtx(t))
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%v", sum)
			if sum.EventsIn != n || sum.TotalProcessed() != n || sum.DeadLettered != 0 {
				t.Errorf("summary %+v: want %d events in and processed, none dead-lettered", sum, n)
			}
			if len(sum.Processed) != par {
				t.Errorf("processed per worker %v, want %d workers", sum.Processed, par)
			}
			if par > 1 {
				for w, p := range sum.Processed {
					if p == 0 {
						t.Errorf("worker %d processed nothing", w)
					}
				}
			}
			if sum.Outputs["capped"] != int64(len(want)) || sum.Outputs["main"] != 0 {
				t.Errorf("outputs %v, want capped %d", sum.Outputs, len(want))
			}
			if sum.LastSeq != n {
				t.Errorf("last seq %d, want %d", sum.LastSeq, n)
			}
			// The bounded run ends by firing every window's expiry timer,
			// which empties the state.
			if len(sum.State) != 1 || sum.State[0].Name != "views" || sum.State[0].Keys != 0 || sum.TimersFired == 0 {
				t.Errorf("state stats %+v, timers fired %d: want every view expired by the final watermark", sum.State, sum.TimersFired)
			}

			got := map[[2]int64]bool{}
			for _, m := range readStream(t, e, "FREQCAP_CAPPED") {
				var v struct{ UserNo, DaID, Count int64 }
				if err := json.Unmarshal(m.Data, &struct {
					UserNo *int64 `json:"user_no"`
					DaID   *int64 `json:"da_id"`
					Count  *int64 `json:"count"`
				}{&v.UserNo, &v.DaID, &v.Count}); err != nil {
					t.Fatalf("capped record %q: %v", m.Data, err)
				}
				k := [2]int64{v.UserNo, v.DaID}
				if got[k] {
					t.Errorf("duplicate capped record %s", m.Data)
				}
				got[k] = true
				if v.Count != limit {
					t.Errorf("capped record %s: count %d, want %d", m.Data, v.Count, limit)
				}
				if wantKey := fmt.Sprintf("%d.%d", v.UserNo, v.DaID); m.Header.Get(HeaderKey) != wantKey {
					t.Errorf("capped record %s: key header %q, want %q", m.Data, m.Header.Get(HeaderKey), wantKey)
				}
			}
			if len(got) != len(want) {
				t.Errorf("%d capped pairs, oracle has %d", len(got), len(want))
			}
			for k := range want {
				if !got[k] {
					t.Errorf("pair %v missing from the output", k)
					break
				}
			}
			for k := range got {
				if !want[k] {
					t.Errorf("pair %v capped but the oracle disagrees", k)
					break
				}
			}
		})
	}
}

func TestDeadLetters(t *testing.T) {
	e := newEnv(t)
	createStream(t, e, "FREQCAP", "views.>")
	ctx := testCtx(t)
	inputs := []struct {
		payload, reason string // reason "" = processed normally
	}{
		{`{"user_no":1,"da_id":5,"log_time":1}`, ""},
		{`{"user_no":1,"da_id":`, "invalid JSON at byte 21: unexpected end of input: expected a value"},
		{`{"da_id":5,"log_time":1}`, "key field user_no is missing"},
		{`{"user_no":null,"da_id":5,"log_time":1}`, "key field user_no is null"},
		{`{"user_no":2,"da_id":"x","log_time":1}`, "da_id is string, want an integer"},
		{`{"user_no":2,"log_time":1}`, "da_id is absent, want an integer"},
		{`{"user_no":2,"da_id":5}`, "event time field log_time is absent, want epoch milliseconds"},
		{`{"user_no":2,"da_id":5,"log_time":"2025-01-01T00:00:00Z"}`, "event time field log_time is string, want epoch milliseconds"},
		{`{"user_no":"3","da_id":"7","log_time":2}`, ""},
	}
	for i, in := range inputs {
		m := nats.NewMsg("views." + strconv.Itoa(i))
		m.Data = []byte(in.payload)
		m.Header.Set("Origin", "test")
		if _, err := e.js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	c := freqcapJob(t, 2)
	eng, err := New(freqcapConfig(t, e, c))
	if err != nil {
		t.Fatal(err)
	}
	sum, err := eng.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantDead := 0
	for _, in := range inputs {
		if in.reason != "" {
			wantDead++
		}
	}
	if sum.EventsIn != int64(len(inputs)) || sum.DeadLettered != int64(wantDead) {
		t.Errorf("summary %+v: want %d in, %d dead-lettered", sum, len(inputs), wantDead)
	}
	dead := readStream(t, e, "FREQCAP_DLQ")
	if len(dead) != wantDead {
		t.Fatalf("%d dead letters, want %d", len(dead), wantDead)
	}
	bySeq := map[string]*jetstream.RawStreamMsg{}
	for _, m := range dead {
		bySeq[m.Header.Get(HeaderSourceSeq)] = m
	}
	for i, in := range inputs {
		seq := strconv.Itoa(i + 1)
		m := bySeq[seq]
		if in.reason == "" {
			if m != nil {
				t.Errorf("event %d dead-lettered: %s", i, m.Header.Get(HeaderDlqReason))
			}
			continue
		}
		if m == nil {
			t.Errorf("event %d (%s) not dead-lettered", i, in.payload)
			continue
		}
		if got := m.Header.Get(HeaderDlqReason); got != in.reason {
			t.Errorf("event %d reason %q, want %q", i, got, in.reason)
		}
		if got := m.Header.Get(HeaderSourceSubject); got != "views."+strconv.Itoa(i) {
			t.Errorf("event %d source subject %q", i, got)
		}
		if string(m.Data) != in.payload {
			t.Errorf("event %d payload %q, want the original %q", i, m.Data, in.payload)
		}
	}
	// Headers of events the source rejects travel along.
	if m := bySeq["2"]; m != nil && m.Header.Get("Origin") != "test" {
		t.Errorf("original header lost: %v", m.Header)
	}
}

// failing is a function that fails on the event with sequence failAt.
type failing struct {
	failAt uint64
	closed *sync.WaitGroup
}

func (f *failing) Open(context.Context, process.Env) error { return nil }
func (f *failing) ProcessBatch(_ context.Context, evs []process.Event, out process.Collector) error {
	for i := range evs {
		if evs[i].Seq == f.failAt {
			return errors.New("boom at the bad event")
		}
	}
	return nil
}
func (f *failing) Close(context.Context) error { f.closed.Done(); return nil }

func TestFunctionErrorStopsJob(t *testing.T) {
	e := newEnv(t)
	createStream(t, e, "FREQCAP", "views.>")
	if err := freqcap.Publish(testCtx(t), e.js, "views.x", freqcap.Generate(5000, freqcap.GenOptions{Seed: 1}), nil); err != nil {
		t.Fatal(err)
	}
	c := freqcapJob(t, 2)
	cfg := freqcapConfig(t, e, c)
	var closed sync.WaitGroup
	closed.Add(2)
	cfg.NewFunction = func(int) (process.Function, error) { return &failing{failAt: 1234, closed: &closed}, nil }
	cfg.UntilCaughtUp = false // the error alone must stop the job
	eng, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = eng.Run(testCtx(t))
	if err == nil {
		t.Fatal("Run returned no error")
	}
	if !strings.Contains(err.Error(), "boom at the bad event") || !strings.Contains(err.Error(), "worker ") {
		t.Errorf("error %q does not name the worker and cause", err)
	}
	closed.Wait() // every function was closed
}

func TestOpenErrorNamesWorker(t *testing.T) {
	e := newEnv(t)
	createStream(t, e, "FREQCAP", "views.>")
	c := freqcapJob(t, 1)
	cfg := freqcapConfig(t, e, c)
	cfg.PluginConfig = map[string]string{"cap": "zero"}
	eng, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = eng.Run(testCtx(t))
	if err == nil || !strings.Contains(err.Error(), "worker 0: open function: config cap=") {
		t.Errorf("Run: %v", err)
	}
}

func TestUntilCaughtUpEmpty(t *testing.T) {
	e := newEnv(t)
	createStream(t, e, "FREQCAP", "views.>", "other.>")
	c := freqcapJob(t, 1)
	eng, err := New(freqcapConfig(t, e, c))
	if err != nil {
		t.Fatal(err)
	}
	sum, err := eng.Run(testCtx(t))
	if err != nil || sum.EventsIn != 0 {
		t.Fatalf("empty stream: %+v %v", sum, err)
	}

	// Messages exist, but none match the filter.
	if _, err := e.js.Publish(testCtx(t), "other.1", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	eng, err = New(freqcapConfig(t, e, c))
	if err != nil {
		t.Fatal(err)
	}
	sum, err = eng.Run(testCtx(t))
	if err != nil || sum.EventsIn != 0 {
		t.Fatalf("no matching messages: %+v %v", sum, err)
	}

	// A filter whose last match is not the stream's last message.
	if _, err := e.js.Publish(testCtx(t), "views.1", []byte(`{"user_no":1,"da_id":1,"log_time":1}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.js.Publish(testCtx(t), "other.2", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	eng, err = New(freqcapConfig(t, e, c))
	if err != nil {
		t.Fatal(err)
	}
	sum, err = eng.Run(testCtx(t))
	if err != nil || sum.EventsIn != 1 || sum.TotalProcessed() != 1 {
		t.Fatalf("filtered: %+v %v", sum, err)
	}
}

func TestStreamMissing(t *testing.T) {
	e := newEnv(t)
	c := freqcapJob(t, 1)
	c.Source.Create = false
	eng, err := New(freqcapConfig(t, e, c))
	if err != nil {
		t.Fatal(err)
	}
	_, err = eng.Run(testCtx(t))
	if err == nil || !strings.Contains(err.Error(), "source.stream: stream FREQCAP not found") {
		t.Errorf("Run: %v", err)
	}
}

// echo emits every event on the main output and a side output.
type echo struct{}

func (echo) Open(context.Context, process.Env) error { return nil }
func (echo) ProcessBatch(_ context.Context, evs []process.Event, out process.Collector) error {
	for i := range evs {
		out.Emit(abi.MainOutput, evs[i].Seq, evs[i].Key, evs[i].Value)
		out.Emit(1, evs[i].Seq, evs[i].Key, evs[i].Fields[0].Str)
	}
	return nil
}
func (echo) Close(context.Context) error { return nil }

func TestStdoutSinkAndDiscard(t *testing.T) {
	e := newEnv(t)
	createStream(t, e, "IN", "in.>")
	ctx := testCtx(t)
	for i, p := range []string{`{"k":"a","s":"x\ty"}`, `{"k":"b","s":"z"}`} {
		if _, err := e.js.Publish(ctx, "in."+strconv.Itoa(i), []byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	c, err := job.Parse([]byte(`
name: echo
source: {stream: IN, subjects: ["in.>"]}
key: {subject_token: 2}
plugin: {path: x.wasm}
sinks: [{output: main, type: stdout}]
`))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	var logs []string
	eng, err := New(Config{
		Conn: e.nc, Job: c, Fields: []abi.FieldDesc{{Name: "s"}}, Outputs: []string{"side"},
		NewFunction:   func(int) (process.Function, error) { return echo{}, nil },
		UntilCaughtUp: true, Stdout: &out,
		Logf: func(f string, a ...any) { logs = append(logs, fmt.Sprintf(f, a...)) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(logs, "\n"), `output "side" has no sink`) {
		t.Errorf("no warning about the unsunk output: %q", logs)
	}
	sum, err := eng.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := "main 0 {\"k\":\"a\",\"s\":\"x\\ty\"}\nmain 1 {\"k\":\"b\",\"s\":\"z\"}\n"
	if out.String() != want {
		t.Errorf("stdout %q, want %q", out.String(), want)
	}
	if sum.Outputs["side"] != 2 || sum.Discarded != 2 || sum.Outputs["main"] != 2 {
		t.Errorf("summary %+v", sum)
	}
}

func TestNewErrors(t *testing.T) {
	c := freqcapJob(t, 1)
	base := Config{URL: "nats://127.0.0.1:1", Job: c, Outputs: []string{"capped"}, NewFunction: func(int) (process.Function, error) { return nil, nil }}
	for name, tc := range map[string]struct {
		mod  func(*Config)
		want string
	}{
		"no job":         {func(c *Config) { c.Job = nil }, "Config.Job is nil"},
		"no server":      {func(c *Config) { c.URL = "" }, "set Config.Conn or Config.URL"},
		"no factory":     {func(c *Config) { c.NewFunction = nil }, "NewFunction is nil"},
		"unknown sink":   {func(c *Config) { c.Outputs = []string{"other"} }, `sinks[0].output: the plugin has no output "capped"`},
		"bad field path": {func(c *Config) { c.Fields = []abi.FieldDesc{{Name: "a", Path: "a..b"}} }, "empty segment"},
	} {
		cfg := base
		tc.mod(&cfg)
		if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
}

func TestParseAck(t *testing.T) {
	for _, tc := range []struct {
		reply string
		want  ackInfo
		ok    bool
	}{
		{"$JS.ACK.S.C.1.42.7.1700000000000000000.3", ackInfo{42, 1700000000000000000, 3}, true},
		{"$JS.ACK._.HASH.S.C.1.42.7.1700000000000000000.0.TOKEN", ackInfo{42, 1700000000000000000, 0}, true},
		{"$JS.ACK.dom.HASH.S.C.1.42.7.17.9", ackInfo{42, 17, 9}, true},
		{"$JS.ACK.S.C.1.42", ackInfo{}, false},
		{"_INBOX.x", ackInfo{}, false},
		{"$JS.ACK.S.C.1.x.7.1.3", ackInfo{}, false},
	} {
		got, ok := parseAck(tc.reply)
		if ok != tc.ok || ok && got != tc.want {
			t.Errorf("parseAck(%q) = %+v %v, want %+v %v", tc.reply, got, ok, tc.want, tc.ok)
		}
	}
}

func TestArena(t *testing.T) {
	var a arena
	var kept [][]byte
	for i := range 5000 {
		b := a.copy(bytes.Repeat([]byte{byte(i)}, i%300+1))
		kept = append(kept, b)
	}
	big := a.copy(make([]byte, 3*arenaChunk))
	for i, b := range kept {
		if len(b) != i%300+1 || b[0] != byte(i) || b[len(b)-1] != byte(i) {
			t.Fatalf("slice %d changed", i)
		}
	}
	if len(big) != 3*arenaChunk {
		t.Fatal("big alloc")
	}
	a.reset()
	if n := testing.AllocsPerRun(10, func() {
		for range 2000 {
			a.copy(kept[299])
		}
		a.copy(big)
		a.reset()
	}); n != 0 {
		t.Errorf("arena allocates %v times after warm-up", n)
	}
}
