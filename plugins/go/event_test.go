package wasmstream_test

import (
	"errors"
	"math"
	"strings"
	"testing"
	"unsafe"

	"github.com/wasmstream/wasmstream/abi"
	wasmstream "github.com/wasmstream/wasmstream/plugins/go"
	"github.com/wasmstream/wasmstream/plugins/go/wasmstreamtest"
)

// Fields of the test binary, in slot order.
var (
	fAmount = wasmstream.NewField("amount")
	fUser   = wasmstream.NewFieldPath("user", "user.id")
	fName   = wasmstream.NewField("name")
	fOK     = wasmstream.NewField("ok")
	fTags   = wasmstream.NewField("tags")

	alerts = wasmstream.NewSideOutput("alerts")
	audit  = wasmstream.NewSideOutput("audit")
)

type fieldsSeen struct {
	kind              [5]abi.FieldKind
	i                 int64
	iok               bool
	f                 float64
	fok               bool
	s                 string
	sok               bool
	b                 []byte
	bok, flag, flagok bool
}

func readFields(t *testing.T, h *wasmstreamtest.Harness, value string) fieldsSeen {
	t.Helper()
	var got fieldsSeen
	step = func(ctx *wasmstream.Context, ev *wasmstream.Event) error {
		for i, f := range []wasmstream.Field{fAmount, fUser, fName, fOK, fTags} {
			got.kind[i] = ev.Kind(f)
		}
		got.i, got.iok = ev.Int(fAmount)
		got.f, got.fok = ev.Float(fAmount)
		got.s, got.sok = ev.String(fName)
		got.b, got.bok = ev.Bytes(fTags)
		got.flag, got.flagok = ev.Bool(fOK)
		got.b = append([]byte(nil), got.b...)
		got.s = strings.Clone(got.s)
		return nil
	}
	h.Process([]byte("k"), []byte(value))
	return got
}

func TestFieldAccessors(t *testing.T) {
	h := start(t, nil)
	got := readFields(t, h, `{"amount":12,"user":{"id":"u7"},"name":"a\"b","ok":true,"tags":["x",1]}`)
	want := [5]abi.FieldKind{abi.FieldInt, abi.FieldString, abi.FieldString, abi.FieldBool, abi.FieldRaw}
	if got.kind != want {
		t.Errorf("kinds = %v, want %v", got.kind, want)
	}
	if got.i != 12 || !got.iok || got.f != 12 || !got.fok {
		t.Errorf("amount = %d/%v %v/%v", got.i, got.iok, got.f, got.fok)
	}
	if got.s != `a"b` || !got.sok || string(got.b) != `["x",1]` || !got.bok || !got.flag || !got.flagok {
		t.Errorf("name %q/%v tags %s/%v ok %v/%v", got.s, got.sok, got.b, got.bok, got.flag, got.flagok)
	}

	for _, c := range []struct {
		amount string
		i      int64
		iok    bool
		f      float64
		fok    bool
	}{
		{`3.0`, 3, true, 3, true},
		{`2.5`, 0, false, 2.5, true},
		{`1e3`, 1000, true, 1000, true},
		{`-7`, -7, true, -7, true},
		{`"42"`, 42, true, 42, true},
		{`"-0.5"`, 0, false, -0.5, true},
		{`"4x"`, 0, false, 0, false},
		{`"9223372036854775808"`, 0, false, 9223372036854775808, true},
		{`9223372036854775807`, math.MaxInt64, true, 9223372036854775807, true},
		{`1e300`, 0, false, 1e300, true},
		{`true`, 0, false, 0, false},
		{`null`, 0, false, 0, false},
		{`{"a":1}`, 0, false, 0, false},
	} {
		got := readFields(t, h, `{"amount":`+c.amount+`}`)
		if got.i != c.i || got.iok != c.iok || got.f != c.f || got.fok != c.fok {
			t.Errorf("amount %s: Int %d,%v Float %v,%v; want %d,%v %v,%v", c.amount, got.i, got.iok, got.f, got.fok, c.i, c.iok, c.f, c.fok)
		}
	}

	got = readFields(t, h, `{"name":5,"ok":"true"}`)
	if got.kind[0] != abi.FieldAbsent || got.iok || got.sok || got.flagok || got.bok {
		t.Errorf("mismatched kinds read as values: %+v", got)
	}
	got = readFields(t, h, `not json`)
	if got.kind != [5]abi.FieldKind{} {
		t.Errorf("non-JSON value has fields %v", got.kind)
	}
}

func TestStringFieldIsZeroCopy(t *testing.T) {
	h := start(t, nil)
	step = func(ctx *wasmstream.Context, ev *wasmstream.Event) error {
		s, _ := ev.String(fName)
		b, _ := ev.Bytes(fName)
		if unsafe.StringData(s) != &b[0] {
			t.Errorf("String copied the field")
		}
		return nil
	}
	h.Process([]byte("k"), []byte(`{"name":"zed"}`))
}

func TestFieldPathOverride(t *testing.T) {
	h := start(t, nil, wasmstreamtest.WithFieldPath("user", "account.user"))
	var user string
	step = func(ctx *wasmstream.Context, ev *wasmstream.Event) error {
		user, _ = ev.String(fUser)
		user = strings.Clone(user)
		return nil
	}
	h.Process([]byte("k"), []byte(`{"user":{"id":"no"},"account":{"user":"yes"}}`))
	if user != "yes" {
		t.Errorf("user = %q", user)
	}
	if _, err := wasmstreamtest.Open(nil, wasmstreamtest.WithFunction("x", testFn{}), wasmstreamtest.WithFieldPath("nope", "a")); err == nil ||
		!strings.Contains(err.Error(), `WithFieldPath("nope")`) {
		t.Errorf("override of an undeclared field: %v", err)
	}
}

func TestEventAccessors(t *testing.T) {
	h := start(t, nil)
	type seen struct {
		seq          uint64
		ts           int64
		key, val, sb string
		ctxKey       string
		os           string
	}
	var got []seen
	step = func(ctx *wasmstream.Context, ev *wasmstream.Event) error {
		os, _ := ev.JSON().Get("device.os").String()
		got = append(got, seen{ev.Seq(), ev.Timestamp(), string(ev.Key()), string(ev.Value()), string(ev.Subject()), string(ctx.Key()), strings.Clone(os)})
		return nil
	}
	err := h.ProcessEvents(
		wasmstreamtest.Event{Key: []byte("k1"), Value: []byte(`{"device":{"os":"ios"}}`), Subject: "in.a", Seq: 10, Time: 1000},
		wasmstreamtest.Event{Key: []byte("k2"), Value: []byte(`{}`)},
	)
	if err != nil {
		t.Fatal(err)
	}
	want := []seen{
		{10, 1000, "k1", `{"device":{"os":"ios"}}`, "in.a", "k1", "ios"},
		{11, wasmstreamtest.DefaultNow, "k2", `{}`, "events", "k2", ""},
	}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("events = %+v\nwant %+v", got, want)
	}
}

func TestContextOutputsAndRejects(t *testing.T) {
	h := start(t, nil)
	h.SetNow(5000)
	var now int64
	step = func(ctx *wasmstream.Context, ev *wasmstream.Event) error {
		now = ctx.Now()
		switch string(ev.Value()) {
		case "emit":
			ctx.Emit([]byte("mk"), []byte("main-value"))
			ctx.EmitTo(alerts, nil, []byte("alert"))
			ctx.EmitTo(audit, []byte("ak"), nil)
		case "error":
			return errors.New("bad event")
		case "reject":
			ctx.Reject("explicit")
			return errors.New("ignored: already rejected")
		case "log":
			ctx.Log(wasmstream.LevelWarn, "careful")
			ctx.Logf(wasmstream.LevelDebug, "n=%d", 3)
			wasmstream.Log(wasmstream.LevelError, "boom")
		}
		return nil
	}
	for _, v := range []string{"emit", "error", "reject", "log"} {
		h.Process([]byte("key-"+v), []byte(v))
	}
	if now != 5000 {
		t.Errorf("Now = %d", now)
	}
	outs := h.Outputs()
	want := []wasmstreamtest.Record{
		{Output: "main", Seq: 1, Key: "mk", Value: "main-value"},
		{Output: "alerts", Seq: 1, Value: "alert"},
		{Output: "audit", Seq: 1, Key: "ak"},
	}
	if len(outs) != 3 || outs[0] != want[0] || outs[1] != want[1] || outs[2] != want[2] {
		t.Errorf("outputs = %+v", outs)
	}
	if a := h.Output("alerts"); len(a) != 1 || a[0].Value != "alert" {
		t.Errorf("alerts = %+v", a)
	}
	rej := h.Rejected()
	if len(rej) != 2 || rej[0] != (wasmstreamtest.Rejection{Seq: 2, Key: "key-error", Value: "error", Reason: "bad event"}) ||
		rej[1].Reason != "explicit" {
		t.Errorf("rejected = %+v", rej)
	}
	logs := h.Logs()
	if len(logs) != 3 || logs[0] != (wasmstreamtest.LogLine{Level: wasmstream.LevelWarn, Msg: "careful"}) ||
		logs[1].Msg != "n=3" || logs[2].Level != wasmstream.LevelError {
		t.Errorf("logs = %+v", logs)
	}
	if alerts.Name() != "alerts" || fUser.Name() != "user" || counter.Name() != "counter" {
		t.Errorf("names")
	}
	h.Reset()
	if len(h.Outputs())+len(h.Rejected())+len(h.Logs()) != 0 {
		t.Errorf("Reset kept records")
	}
}

func TestPanicFailsWithSeq(t *testing.T) {
	h := start(t, nil)
	step = func(ctx *wasmstream.Context, ev *wasmstream.Event) error {
		if ev.Seq() == 2 {
			panic("kaput")
		}
		return nil
	}
	err := h.ProcessEvents(wasmstreamtest.Event{Key: []byte("a")}, wasmstreamtest.Event{Key: []byte("b")})
	if err == nil || !strings.Contains(err.Error(), "ProcessElement panicked on event seq 2: kaput") {
		t.Errorf("panic: %v", err)
	}
}

func TestOpenContext(t *testing.T) {
	var job string
	var worker, par int
	var n, def int64
	var v string
	var ok bool
	openHook = func(ctx *wasmstream.OpenContext) error {
		job, worker, par = ctx.JobName(), ctx.Worker(), ctx.Parallelism()
		v, ok = ctx.Config("mode")
		var err error
		if n, err = ctx.ConfigInt("limit", 1); err != nil {
			return err
		}
		def, _ = ctx.ConfigInt("missing", 9)
		ctx.Log(wasmstream.LevelInfo, "opened")
		return nil
	}
	h := start(t, map[string]string{"mode": "fast", "limit": " 12 "}, wasmstreamtest.WithJob("j1"), wasmstreamtest.WithWorker(2, 4))
	if job != "j1" || worker != 2 || par != 4 || v != "fast" || !ok || n != 12 || def != 9 {
		t.Errorf("open saw job %q worker %d/%d mode %q,%v limit %d default %d", job, worker, par, v, ok, n, def)
	}
	if l := h.Logs(); len(l) != 1 || l[0].Msg != "opened" {
		t.Errorf("logs = %+v", l)
	}

	openHook = func(ctx *wasmstream.OpenContext) error {
		_, err := ctx.ConfigInt("limit", 1)
		return err
	}
	_, err := wasmstreamtest.Open(map[string]string{"limit": "lots"}, wasmstreamtest.WithFunction("x", testFn{}))
	if err == nil || !strings.Contains(err.Error(), `Open failed: wasmstream: Open: config limit="lots": want a decimal integer`) {
		t.Errorf("bad config: %v", err)
	}
}

func TestCloser(t *testing.T) {
	closed := 0
	closeHook = func() error { closed++; return errors.New("flush failed") }
	h := start(t, nil)
	if err := h.Close(); err == nil || !strings.Contains(err.Error(), "Close: flush failed") || closed != 1 {
		t.Errorf("Close = %v, closed %d times", err, closed)
	}
	if err := h.Close(); err != nil || closed != 1 {
		t.Errorf("second Close = %v, closed %d times", err, closed)
	}
}
