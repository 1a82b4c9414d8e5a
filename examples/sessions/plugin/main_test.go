package main

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/wasmstream/wasmstream/examples/internal/plugintest"
	"github.com/wasmstream/wasmstream/examples/sessions"
	"github.com/wasmstream/wasmstream/plugins/go/wasmstreamtest"
)

const (
	t0  = 1735689600000
	min = 60 * 1000
)

func click(t *testing.T, h *wasmstreamtest.Harness, user string, at, amount int64) {
	t.Helper()
	plugintest.Send(t, h, user, t0+at,
		`{"user_id":`+user+`,"ts":`+strconv.FormatInt(t0+at, 10)+`,"amount":`+strconv.FormatInt(amount, 10)+`}`)
}

func values(h *wasmstreamtest.Harness) []string {
	var out []string
	for _, r := range h.Output("main") {
		out = append(out, r.Key+" "+r.Value)
	}
	return out
}

func rec(user string, start, end, events, amount int64) string {
	return user + ` {"user_id":` + user + `,"start":` + strconv.FormatInt(t0+start, 10) + `,"end":` + strconv.FormatInt(t0+end, 10) +
		`,"events":` + strconv.FormatInt(events, 10) + `,"amount":` + strconv.FormatInt(amount, 10) + `}`
}

func TestOneRecordPerSession(t *testing.T) {
	h := wasmstreamtest.New(t, nil)
	click(t, h, "42", 0, 1)
	click(t, h, "42", 20*min, 2)
	click(t, h, "42", 10*min, 4) // out of order, within the session
	click(t, h, "7", 5*min, 8)
	h.AdvanceWatermark(t0 + 34*min)
	if got := values(h); len(got) != 0 {
		t.Fatalf("records before the end of any session: %v", got)
	}
	if n := len(h.Timers()); n != 2 {
		t.Errorf("%d timers pending, want one end per session: %v", n, h.Timers())
	}
	h.AdvanceWatermark(t0 + 50*min) // 42's session ends at 20+30
	if got, want := values(h), []string{rec("7", 5*min, 5*min, 1, 8), rec("42", 0, 20*min, 3, 7)}; !slices.Equal(got, want) {
		t.Errorf("records\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if _, ok := wasmstreamtest.Value(h, current, "42"); ok {
		t.Error("the ended session is still in state")
	}
	click(t, h, "42", 80*min, 16) // an hour after its last session: a new one
	h.AdvanceWatermark(math.MaxInt64)
	if got := values(h); len(got) != 3 || got[2] != rec("42", 80*min, 80*min, 1, 16) {
		t.Errorf("records %v", got)
	}
}

func TestGapIsExclusive(t *testing.T) {
	h := wasmstreamtest.New(t, map[string]string{"gap_ms": "1000"})
	click(t, h, "1", 0, 1)
	click(t, h, "1", 999, 1)  // less than the gap after 0: same session
	click(t, h, "1", 1999, 1) // exactly the gap after 999: a new session
	h.AdvanceWatermark(math.MaxInt64)
	if got, want := values(h), []string{rec("1", 0, 999, 2, 2), rec("1", 1999, 1999, 1, 1)}; !slices.Equal(got, want) {
		t.Errorf("records %v, want %v", got, want)
	}
}

// TestEndInTheSameRound: when the watermark jumps past several sessions of
// one user at once, each still ends once.
func TestEndInTheSameRound(t *testing.T) {
	h := wasmstreamtest.New(t, map[string]string{"gap_ms": "1000"})
	for _, at := range []int64{0, 500, 3000, 3100, 9000} {
		click(t, h, "1", at, at)
	}
	h.AdvanceWatermark(math.MaxInt64)
	want := []string{rec("1", 0, 500, 2, 500), rec("1", 3000, 3100, 2, 6100), rec("1", 9000, 9000, 1, 9000)}
	if got := values(h); !slices.Equal(got, want) {
		t.Errorf("records\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if n := len(h.Timers()); n != 0 {
		t.Errorf("%d timers left", n)
	}
}

func TestBadEvents(t *testing.T) {
	h := wasmstreamtest.New(t, nil)
	h.Process([]byte("7"), []byte(`{"user_id":7,"amount":1.5}`))
	if rej := h.Rejected(); len(rej) != 1 || !strings.Contains(rej[0].Reason, "amount is float") {
		t.Errorf("rejected %+v", rej)
	}
	plugintest.RefusesConfig(t, map[string]string{"gap_ms": "0"}, map[string]string{"gap_ms": "30m"})
}

// TestMatchesOracle feeds shuffled events as the engine does and compares
// with the oracle.
func TestMatchesOracle(t *testing.T) {
	const bound = 5 * min
	events := sessions.Generate(8000, sessions.GenOptions{Seed: 2, Users: 300, Disorder: bound})
	want := sessions.Expect(events, sessions.Params{MaxOutOfOrderness: bound})
	h := wasmstreamtest.New(t, nil)
	plugintest.Feed(t, h, events, bound, "user_id", "ts")
	var exp []string
	multi := 0
	for _, s := range want {
		exp = append(exp, "main "+s.Key+" "+s.Value)
		if !strings.Contains(s.Value, `"events":1,`) {
			multi++
		}
	}
	if len(want) < 500 || multi < 200 {
		t.Fatalf("the oracle has %d sessions, %d of several events: the data does not exercise sessions", len(want), multi)
	}
	plugintest.SameRecords(t, plugintest.Lines(h.Output("main")), exp, "sessions")
}
