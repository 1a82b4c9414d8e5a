package main

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/wasmstream/wasmstream/examples/freqcap"
	"github.com/wasmstream/wasmstream/examples/internal/plugintest"
	"github.com/wasmstream/wasmstream/plugins/go/wasmstreamtest"
)

const t0 = 1735689600000

// view processes one view of ad da by user at event time t0+at.
func view(t *testing.T, h *wasmstreamtest.Harness, user, da string, at int64) {
	t.Helper()
	plugintest.Send(t, h, user, t0+at, `{"user_no":`+user+`,"da_id":`+da+`,"log_time":`+strconv.FormatInt(t0+at, 10)+`}`)
}

// records returns the capped and released records as "output key value".
func records(h *wasmstreamtest.Harness) []string { return plugintest.Lines(h.Outputs()) }

func TestCapAfterWatermark(t *testing.T) {
	h := wasmstreamtest.New(t, map[string]string{"cap": "3"})
	for i := range 5 {
		view(t, h, "123", "45", int64(i))
	}
	view(t, h, "123", "46", 5)
	view(t, h, "124", "45", 6)
	if got := h.Outputs(); len(got) != 0 {
		t.Fatalf("records before the watermark: %v", got)
	}
	h.AdvanceWatermark(t0 + 1) // the first two views
	if got := h.Outputs(); len(got) != 0 {
		t.Fatalf("records after two views: %v", got)
	}
	h.AdvanceWatermark(t0 + 10)
	got := h.Output("capped")
	if len(got) != 1 || got[0].Key != "123.45" || got[0].Value != `{"user_no":123,"da_id":45,"count":3}` {
		t.Fatalf("capped = %+v, want one record for 123.45", got)
	}
	if counts := wasmstreamtest.Map(h, views, "123"); counts[45] != 5 || counts[46] != 1 || len(counts) != 2 {
		t.Errorf("views of user 123 = %v, want map[45:5 46:1]", counts)
	}
	if n := len(h.Timers()); n != 7 {
		t.Errorf("%d timers pending, want the 7 expiries", n)
	}
}

func TestWindowSlides(t *testing.T) {
	h := wasmstreamtest.New(t, map[string]string{"cap": "2", "window_ms": "10"})
	view(t, h, "7", "1", 0)
	view(t, h, "7", "1", 4)  // count 2: capped
	view(t, h, "7", "1", 12) // 0 expired at 10 (released), 4 still counts: capped again
	view(t, h, "7", "1", 30) // alone
	h.AdvanceWatermark(math.MaxInt64)
	want := []string{
		`capped 7.1 {"user_no":7,"da_id":1,"count":2}`,
		`released 7.1 {"user_no":7,"da_id":1,"count":1,"time":` + strconv.FormatInt(t0+10, 10) + `}`,
		`capped 7.1 {"user_no":7,"da_id":1,"count":2}`,
		`released 7.1 {"user_no":7,"da_id":1,"count":1,"time":` + strconv.FormatInt(t0+14, 10) + `}`,
	}
	if got := records(h); !slices.Equal(got, want) {
		t.Errorf("records\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if counts := wasmstreamtest.Map(h, views, "7"); len(counts) != 0 {
		t.Errorf("views after every window closed = %v, want none", counts)
	}
	if n := len(h.Timers()); n != 0 {
		t.Errorf("%d timers pending", n)
	}
}

func TestExpiryBeforeViewInOneMillisecond(t *testing.T) {
	h := wasmstreamtest.New(t, map[string]string{"cap": "2", "window_ms": "10"})
	view(t, h, "7", "1", 10) // arrives first, counts from 10
	view(t, h, "7", "1", 0)  // counts during [0, 10)
	view(t, h, "7", "1", 5)
	h.AdvanceWatermark(t0 + 10)
	// At 5 the count is 2; at 10 the view of 0 leaves before the view of 10
	// comes: the count is 1 in between.
	want := []string{
		`capped 7.1 {"user_no":7,"da_id":1,"count":2}`,
		`released 7.1 {"user_no":7,"da_id":1,"count":1,"time":` + strconv.FormatInt(t0+10, 10) + `}`,
		`capped 7.1 {"user_no":7,"da_id":1,"count":2}`,
	}
	if got := records(h); !slices.Equal(got, want) {
		t.Errorf("records\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestSameMillisecondViewsCount(t *testing.T) {
	h := wasmstreamtest.New(t, map[string]string{"cap": "2"})
	view(t, h, "7", "1", 3)
	view(t, h, "7", "1", 3)
	h.AdvanceWatermark(t0 + 3)
	if got := h.Output("capped"); len(got) != 1 {
		t.Errorf("two views in one millisecond: capped %v, want one record", got)
	}
}

func TestDefaultCap(t *testing.T) {
	h := wasmstreamtest.New(t, nil)
	for i := range 3 {
		view(t, h, "7", "1", int64(i))
	}
	h.AdvanceWatermark(t0 + 5*24*3600*1000 - 1) // the window is 5 days
	if got := records(h); len(got) != 1 || got[0] != `capped 7.1 {"user_no":7,"da_id":1,"count":3}` {
		t.Fatalf("records = %v", got)
	}
	h.AdvanceWatermark(t0 + 5*24*3600*1000)
	if got := h.Output("released"); len(got) != 1 {
		t.Fatalf("released = %v after 5 days", got)
	}
}

func TestBadDaIDIsRejected(t *testing.T) {
	h := wasmstreamtest.New(t, nil)
	h.Process([]byte("7"), []byte(`{"user_no":7,"da_id":"x"}`))
	h.Process([]byte("7"), []byte(`{"user_no":7}`))
	h.Process([]byte("7"), []byte(`{"user_no":7,"da_id":"12"}`)) // decimal strings are accepted
	rej := h.Rejected()
	if len(rej) != 2 {
		t.Fatalf("rejected = %+v, want 2", rej)
	}
	if !strings.Contains(rej[0].Reason, "da_id is string") || !strings.Contains(rej[1].Reason, "da_id is absent") {
		t.Errorf("reasons = %q, %q", rej[0].Reason, rej[1].Reason)
	}
	h.AdvanceWatermark(h.Now())
	if c := wasmstreamtest.Map(h, views, "7"); c[12] != 1 || len(c) != 1 {
		t.Errorf("views = %v, want map[12:1]", c)
	}
}

func TestBadConfigFailsOpen(t *testing.T) {
	plugintest.RefusesConfig(t, map[string]string{"cap": "0"}, map[string]string{"cap": "three"},
		map[string]string{"window_ms": "0"}, map[string]string{"window_ms": "5d"})
}

// TestMatchesOracle runs generated views, shuffled within the bound, through
// the plugin as the engine does (in arrival order, batches carrying the
// watermark, every timer fired at the end) and compares with the oracle.
func TestMatchesOracle(t *testing.T) {
	const bound = 20_000
	p := freqcap.Params{Cap: 3, Window: 3_600_000, MaxOutOfOrderness: bound}
	events := freqcap.Generate(6000, freqcap.GenOptions{Seed: 3, Users: 100, Ads: 20, StepMs: 1000, Disorder: bound})
	h := wasmstreamtest.New(t, map[string]string{"cap": "3", "window_ms": "3600000"})
	plugintest.Feed(t, h, events, bound, "user_no", "log_time")
	want := freqcap.Expect(events, p)
	var exp []string
	released := 0
	for _, r := range want {
		exp = append(exp, r.Output+" "+r.Key+" "+r.Value)
		if r.Output == "released" {
			released++
		}
	}
	if len(want) < 200 || released < 100 {
		t.Fatalf("the oracle has %d records, %d released: the data does not exercise the window", len(want), released)
	}
	plugintest.SameRecords(t, records(h), exp, "records")
}
