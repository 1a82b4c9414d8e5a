package plugin

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wasmstream/wasmstream/abi"
	"github.com/wasmstream/wasmstream/host/process"
)

func equal(t *testing.T, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("outputs\n got %q\nwant %q", got, want)
	}
}

func TestContract(t *testing.T) {
	c := shared(t, "ops").Contract()
	if c.Name != "ops" || len(c.States) != 4 || c.States[2].Kind != abi.KindMap || c.Outputs[0] != "side" || c.Fields[0].Path != "user.id" {
		t.Fatalf("contract %+v", c)
	}
}

func TestValueState(t *testing.T) {
	h := open(t, shared(t, "ops"), nil)
	c := h.mustRun(
		event("a", "vget;vset hello-world;vget;vset x;vget"),
		event("b", "vget;vset B"),
		event("a", "vget;vclear;vget"),
		event("b", "vget"),
	)
	equal(t, c.values(), []string{"vget:absent", "vget:hello-world", "vget:x", "vget:absent", "vget:x", "vget:absent", "vget:B"})

	ev := event("b", "")
	v, ok, err := h.state.Get(ev.KeyGroup, 0, []byte("b"))
	if err != nil || !ok || string(v) != "B" {
		t.Fatalf("backend holds %q %v %v", v, ok, err)
	}

	c = h.mustRun(event("n", "vaddi 5;vaddi -7"), event("f", "vaddf 1.5;vaddf 0.25"))
	equal(t, c.values(), []string{"vaddi:5", "vaddi:-2", "vaddf:1.5", "vaddf:1.75"})
}

func TestListState(t *testing.T) {
	h := open(t, shared(t, "ops"), nil)
	c := h.mustRun(event("a", "lget;ladd x;ladd yy;lget;laddall p,q;lget;lupdate z;lget;lclear;lget"))
	equal(t, c.values(), []string{"lget:", "lget:x,yy", "lget:x,yy,p,q", "lget:z", "lget:"})
}

func TestMapState(t *testing.T) {
	h := open(t, shared(t, "ops"), nil)
	c := h.mustRun(
		event("a", "misempty;mget k;mput k hello;mget k;mcontains k;mcontains z;misempty"),
		event("a", "maddi c 5;maddi c 2;maddf f 0.5;maddf f 0.25;miter keys;mremove k;mremove c;mremove f;misempty"),
		event("b", "mput a 1;mput b 22;miter entries;miter values;mclear;misempty;miter keys"),
	)
	equal(t, c.values(), []string{
		"misempty:1", "mget:absent", "mget:hello", "mcontains:1", "mcontains:0", "misempty:0",
		"maddi:5", "maddi:7", "maddf:0.5", "maddf:0.75", "miter:c,f,k", "misempty:1",
		"miter:a,1,b,22", "miter:1,22", "misempty:1", "miter:",
	})
}

func TestLargeValuesGrowBuffer(t *testing.T) {
	h := open(t, shared(t, "ops"), nil)
	big := strings.Repeat("v", 300_000)
	c := h.mustRun(event("a", "vset "+big+";vget"), event("a", "big;vget"))
	if v := c.values(); len(v) != 2 || v[0] != "vget:"+big || v[1] != "vget:"+strings.Repeat("x", 100000) {
		t.Fatalf("got %d outputs", len(v))
	}
	// Back to small batches in the grown buffer.
	equal(t, h.mustRun(event("a", "vset s;vget")).values(), []string{"vget:s"})
}

func TestEmitRejectAndMeta(t *testing.T) {
	h := open(t, shared(t, "ops"), map[string]string{"greeting": "hi"})
	evs := []process.Event{
		event("a", "emit 1 sk sv;emit 0 - nokey;emit 1 - side-nokey"),
		event("b", "reject bad-input;meta;info"),
		event("c", "field"),
		event("d", "field"),
	}
	evs[2].Fields = []abi.Field{{Kind: abi.FieldString, Str: []byte("u1")}}
	evs[3].Fields = []abi.Field{{Kind: abi.FieldInt, Bits: 42}}
	c := h.mustRun(evs...)
	want := []process.Output{
		{Port: 1, Seq: evs[0].Seq, Key: []byte("sk"), Value: []byte("sv")},
		{Port: 0, Seq: evs[0].Seq, Key: nil, Value: []byte("nokey")},
		{Port: 1, Seq: evs[0].Seq, Key: nil, Value: []byte("side-nokey")},
	}
	for i, w := range want {
		o := c.outs[i]
		if o.Port != w.Port || o.Seq != w.Seq || (o.Key == nil) != (w.Key == nil) || string(o.Key) != string(w.Key) || string(o.Value) != string(w.Value) {
			t.Errorf("output %d: got %+v want %+v", i, o, w)
		}
	}
	equal(t, c.values(), []string{
		"nokey",
		"meta:" + itoa(evs[1].Seq) + ":" + itoa(uint64(evs[1].Time)) + ":in.b",
		"info:job1:2:4:user:hi",
		"field:string:u1",
		"field:int:42",
	})
	equal(t, c.rejects, []string{itoa(evs[1].Seq) + ":bad-input"})
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

func TestClockAndLogs(t *testing.T) {
	h := open(t, shared(t, "ops"), nil)
	h.now.Store(1_234_567)
	c := h.mustRun(event("a", "now;time;log 3 warned;log 9 clamped;print to-stdout;eprint to-stderr"))
	equal(t, c.values(), []string{"now:1234567", "time:1234567"})
	for _, l := range []logLine{{abi.LogWarn, "warned"}, {abi.LogError, "clamped"}, {abi.LogInfo, "to-stdout"}, {abi.LogWarn, "to-stderr"}} {
		if !h.logged(l.level, l.msg) {
			t.Errorf("missing log line %+v in %+v", l, h.logs)
		}
	}
}

func TestFail(t *testing.T) {
	h := open(t, shared(t, "ops"), nil)
	evs := events("a", "vset x", "fail went-wrong", "vset y")
	_, err := h.run(evs...)
	var ce *CallError
	if !errors.As(err, &ce) || ce.Message != "went-wrong" || ce.Status != 1 || ce.Err != nil {
		t.Fatalf("got %#v", err)
	}
	if want := `wasmstream: plugin "ops": ws_process failed: went-wrong at event seq ` + itoa(evs[0].Seq); !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error %q, want prefix %q", err, want)
	}
	// A clean failure leaves the instance usable, and fail alone does not
	// fail a call.
	equal(t, h.mustRun(event("a", "failok ignored;vget")).values(), []string{"vget:x"})
	_, err = h.run(event("a", "status"))
	if err == nil || !strings.Contains(err.Error(), "ws_process failed with status 7 and no message") {
		t.Fatalf("status: %v", err)
	}
	// Open and Close failures.
	if _, err := tryOpen(t, shared(t, "ops"), map[string]string{"fail_open": "no config"}); err == nil || !strings.Contains(err.Error(), "ws_open failed: no config") {
		t.Fatalf("open: %v", err)
	}
	h2 := open(t, shared(t, "ops"), map[string]string{"fail_close": "flush failed"})
	if err := h2.f.Close(context.Background()); err == nil || !strings.Contains(err.Error(), "ws_close failed: flush failed") {
		t.Fatalf("close: %v", err)
	}
}

// TestGuestErrors runs each misbehaving command on a fresh instance and
// checks the error, that the instance stays dead, and that a fresh instance
// and another plugin keep working.
func TestGuestErrors(t *testing.T) {
	cases := []struct{ cmd, want string }{
		{"badptr", "value_set: value pointer 0x7fff0000 length 12 outside guest memory ("},
		{"neglen x", "value_set: value length -1 is negative"},
		{"badev", "value_clear: event index 9999 out of range (the batch has 3 events)"},
		{"badstate", "value_clear: unknown state id 99 (the contract declares 4 states)"},
		{"wrongkind", `value_clear: state 1 "l" is a list state, not a value state`},
		{"badport x", "emit: unknown output port 7 (the contract declares main and 1 side outputs)"},
		{"badmode", "map_iter: iteration mode 9, want 0 (keys), 1 (values) or 2 (entries)"},
		{"badlist", "list_add_all: encoded list at"},
		{"badkeyptr", "map_add_i64: key pointer 0x7fff0000 length 12 outside guest memory ("},
		{"badout", "value_get: output buffer pointer 0xfffffff0 length 64 outside guest memory"},
		{"panic now", "trapped"},
		{"oob", "out of bounds memory access"},
		{"exit", "exited with code 3"},
		{"mput k abc;maddi k 1", "map_add_i64: state backend: wasmstream: stored value is not an 8-byte number"},
	}
	p := shared(t, "ops")
	for _, tc := range cases {
		t.Run(strings.Fields(tc.cmd)[0], func(t *testing.T) {
			h := open(t, p, nil)
			evs := events("k", "vset ok", tc.cmd, "vset unreached")
			_, err := h.run(evs...)
			var ce *CallError
			if !errors.As(err, &ce) || ce.Err == nil {
				t.Fatalf("want an aborted call, got %v", err)
			}
			msg := err.Error()
			t.Logf("%s", msg)
			for _, w := range []string{`plugin "ops": ws_process `, tc.want, "batch seqs " + itoa(evs[0].Seq) + ".." + itoa(evs[2].Seq)} {
				if !strings.Contains(msg, w) {
					t.Errorf("error\n%s\ndoes not contain %q", msg, w)
				}
			}
			if tc.cmd == "badev" && ce.HasSeq {
				t.Errorf("an event index out of range has no seq: %+v", ce)
			}
			if strings.HasPrefix(tc.cmd, "bad") && tc.cmd != "badev" && (!ce.HasSeq || ce.Seq != evs[1].Seq) {
				t.Errorf("seq of the failing event: %+v", ce)
			}
			if tc.cmd == "panic now" && !strings.Contains(msg, "panic: boom: now") {
				t.Errorf("the guest's panic message is missing: %s", msg)
			}
			if _, err2 := h.run(events("k", "vget")...); err2 != err {
				t.Errorf("dead instance returned %v", err2)
			}
			if err := h.f.Close(context.Background()); err != nil {
				t.Errorf("Close of a dead instance: %v", err)
			}
			equal(t, open(t, p, nil).mustRun(event("k", "vset fine;vget")).values(), []string{"vget:fine"})
			fc := open(t, shared(t, "freqcap"), nil)
			if c := fc.mustRun(events("u", "c", "c", "c")...); len(c.outs) != 1 {
				t.Errorf("freqcap emitted %d", len(c.outs))
			}
		})
	}
}

func TestCallTimeout(t *testing.T) {
	p := load(t, "ops", Options{CallTimeout: 200 * time.Millisecond})
	defer p.Close(context.Background())
	h := open(t, p, nil)
	start := time.Now()
	_, err := h.run(events("k", "loop")...)
	if err == nil || !strings.Contains(err.Error(), `plugin "ops": ws_process timed out`) {
		t.Fatalf("got %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v", d)
	}
	equal(t, open(t, p, nil).mustRun(event("k", "vset a;vget")).values(), []string{"vget:a"})

	// With a bound, canceling the call's context stops it too.
	h = open(t, p, nil)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
	err = h.f.ProcessBatch(ctx, events("k", "loop"), &collector{})
	if err == nil || !strings.Contains(err.Error(), "ws_process was canceled") {
		t.Fatalf("got %v", err)
	}
}

func TestConcurrentInstances(t *testing.T) {
	p := shared(t, "freqcap")
	done := make(chan error)
	worker := func() error {
		h, err := tryOpen(t, p, nil)
		if err != nil {
			return err
		}
		n := 0
		for i := 0; i < 50; i++ {
			c, err := h.run(events("u", "a", "b", "a", "a")...)
			if err != nil {
				return err
			}
			n += len(c.outs)
		}
		if n != 2 { // a reaches the cap in the first batch, b in the third
			return fmt.Errorf("%d emits, want 2", n)
		}
		return h.f.Close(context.Background())
	}
	for w := 0; w < 4; w++ {
		go func() { done <- worker() }()
	}
	for w := 0; w < 4; w++ {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

func TestUseBeforeOpen(t *testing.T) {
	f := shared(t, "ops").NewFunction()
	if err := f.ProcessBatch(context.Background(), events("k", "x"), &collector{}); !errors.Is(err, errNotOpen) {
		t.Fatalf("got %v", err)
	}
	if err := f.Open(context.Background(), process.Env{}); err == nil || !strings.Contains(err.Error(), "no state backend") {
		t.Fatalf("Open without a backend: %v", err)
	}
}

func TestMemoryLimit(t *testing.T) {
	p := load(t, "ops", Options{MemoryLimitMB: 24})
	defer p.Close(context.Background())
	h := open(t, p, nil)
	h.mustRun(event("k", "alloc 4"))
	_, err := h.run(event("k", "alloc 64"))
	if err == nil || !strings.Contains(err.Error(), "out of memory") {
		t.Fatalf("got %v", err)
	}
	t.Logf("%v", err)
	equal(t, open(t, p, nil).mustRun(event("k", "vset a;vget")).values(), []string{"vget:a"})
}
