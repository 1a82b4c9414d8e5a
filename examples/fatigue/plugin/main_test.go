package main

import (
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/wasmstream/wasmstream/examples/fatigue"
	"github.com/wasmstream/wasmstream/examples/internal/plugintest"
	"github.com/wasmstream/wasmstream/plugins/go/wasmstreamtest"
)

const (
	t0   = 1735689600000
	hour = 3600 * 1000
)

func notify(t *testing.T, h *wasmstreamtest.Harness, user string, id, at int64) {
	t.Helper()
	plugintest.Send(t, h, user, t0+at,
		`{"user_id":`+user+`,"notification_id":`+strconv.FormatInt(id, 10)+`,"ts":`+strconv.FormatInt(t0+at, 10)+`}`)
}

func ids(recs []wasmstreamtest.Record) []int64 {
	var out []int64
	for _, r := range recs {
		var v struct {
			ID int64 `json:"notification_id"`
		}
		if err := json.Unmarshal([]byte(r.Value), &v); err != nil {
			panic(r.Value)
		}
		out = append(out, v.ID)
	}
	return out
}

func TestBudgetRollsOver24Hours(t *testing.T) {
	h := wasmstreamtest.New(t, map[string]string{"limit": "2"})
	notify(t, h, "42", 1, 0)
	notify(t, h, "42", 3, 2*hour)
	notify(t, h, "42", 2, 1*hour)  // out of order: decided before 3
	notify(t, h, "42", 4, 24*hour) // 1 has left the window
	notify(t, h, "42", 5, 25*hour-1)
	notify(t, h, "7", 6, 2*hour)
	if n := len(h.Outputs()); n != 0 {
		t.Fatalf("%d records before the watermark", n)
	}
	h.AdvanceWatermark(math.MaxInt64)
	if got := ids(h.Output("main")); !slices.Equal(got, []int64{1, 2, 6, 4}) {
		t.Errorf("allowed %v, want [1 2 6 4]", got)
	}
	sup := h.Output("suppressed")
	if got := ids(sup); !slices.Equal(got, []int64{3, 5}) {
		t.Fatalf("suppressed %v, want [3 5]", got)
	}
	want := `{"user_id":42,"notification_id":3,"ts":` + strconv.FormatInt(t0+2*hour, 10) +
		`,"reason":"limit of 2 notifications in 24h reached","next_allowed":` + strconv.FormatInt(t0+24*hour, 10) + `}`
	if sup[0].Key != "42" || sup[0].Value != want {
		t.Errorf("suppressed record %s %s, want 42 %s", sup[0].Key, sup[0].Value, want)
	}
	// The list keeps the allowed times still in the window, at most the limit.
	if got := wasmstreamtest.List(h, sent, "42"); !slices.Equal(got, []int64{t0 + 1*hour, t0 + 24*hour}) {
		t.Errorf("sent of 42 = %v", got)
	}
}

func TestDuplicateIsOneNotification(t *testing.T) {
	h := wasmstreamtest.New(t, map[string]string{"limit": "1"})
	notify(t, h, "42", 1, 0)
	notify(t, h, "42", 1, 0)
	h.AdvanceWatermark(t0)
	if got := h.Outputs(); len(got) != 1 || got[0].Output != "main" {
		t.Errorf("records %v, want one allowed", got)
	}
}

func TestBadEvents(t *testing.T) {
	h := wasmstreamtest.New(t, nil)
	h.Process([]byte("7"), []byte(`{"user_id":7,"notification_id":"x"}`))
	if rej := h.Rejected(); len(rej) != 1 || !strings.Contains(rej[0].Reason, "notification_id is string") {
		t.Errorf("rejected %+v", rej)
	}
	plugintest.RefusesConfig(t, map[string]string{"limit": "0"}, map[string]string{"limit": "many"})
}

// TestMatchesOracle feeds shuffled notifications as the engine does and
// compares with the oracle.
func TestMatchesOracle(t *testing.T) {
	const bound = 60_000
	events := fatigue.Generate(8000, fatigue.GenOptions{Seed: 5, Users: 200, StepMs: 30_000, Disorder: bound})
	want := fatigue.Expect(events, fatigue.Params{Limit: 3, MaxOutOfOrderness: bound})
	h := wasmstreamtest.New(t, map[string]string{"limit": "3"})
	plugintest.Feed(t, h, events, bound, "user_id", "ts")
	var exp []string
	sup := 0
	for _, r := range want {
		exp = append(exp, r.Output+" "+r.Key+" "+r.Value)
		if r.Output == "suppressed" {
			sup++
		}
	}
	if sup < 500 || len(want)-sup < 500 {
		t.Fatalf("the oracle allows %d and suppresses %d: the data does not exercise the budget", len(want)-sup, sup)
	}
	plugintest.SameRecords(t, plugintest.Lines(h.Outputs()), exp, "records")
}
