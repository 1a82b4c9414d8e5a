// Package plugintest is what the example plugins' tests share on top of
// wasmstreamtest: feeding a generated stream through a plugin as the engine
// does, and comparing the records with an oracle's.
package plugintest

import (
	"encoding/json"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/wasmstream/wasmstream/plugins/go/wasmstreamtest"
)

// Send processes one event with key, JSON value and event time at.
func Send(t testing.TB, h *wasmstreamtest.Harness, key string, at int64, value string) {
	t.Helper()
	if err := h.ProcessEvents(wasmstreamtest.Event{Key: []byte(key), Value: []byte(value), Time: at}); err != nil {
		t.Fatal(err)
	}
}

// Feed processes events, JSON objects keyed by the number in field key and
// with event time in field time, as the engine would for a job with a
// max_out_of_orderness of bound ms: in arrival order and batches of 64,
// late events (at or below the watermark) left out, the watermark moving
// after each batch to the largest time read minus bound minus 1 ms. At the
// end it moves the watermark to its maximum, as a bounded run ends, so
// every event-time timer fires.
func Feed(t testing.TB, h *wasmstreamtest.Harness, events [][]byte, bound int64, key, time string) {
	t.Helper()
	maxTs, wm := int64(math.MinInt64), int64(math.MinInt64)
	var batch []wasmstreamtest.Event
	flush := func() {
		if err := h.ProcessEvents(batch...); err != nil {
			t.Fatal(err)
		}
		batch = batch[:0]
		if maxTs-bound-1 > wm {
			wm = maxTs - bound - 1
			h.AdvanceWatermark(wm)
		}
	}
	for _, e := range events {
		k, ts, err := keyAndTime(e, key, time)
		if err != nil {
			t.Fatalf("event %s: %v", e, err)
		}
		if ts <= wm {
			continue
		}
		maxTs = max(maxTs, ts)
		batch = append(batch, wasmstreamtest.Event{Key: []byte(k), Value: e, Time: ts})
		if len(batch) == 64 {
			flush()
		}
	}
	flush()
	h.AdvanceWatermark(math.MaxInt64)
}

func keyAndTime(e []byte, key, time string) (k json.Number, ts int64, err error) {
	var v map[string]json.RawMessage
	if err := json.Unmarshal(e, &v); err != nil {
		return "", 0, err
	}
	if raw, ok := v[key]; ok {
		if err := json.Unmarshal(raw, &k); err != nil {
			return "", 0, err
		}
	}
	if raw, ok := v[time]; ok {
		if err := json.Unmarshal(raw, &ts); err != nil {
			return "", 0, err
		}
	}
	return k, ts, nil
}

// Lines returns records as "output key value" lines.
func Lines(recs []wasmstreamtest.Record) []string {
	out := make([]string, 0, len(recs))
	for _, r := range recs {
		out = append(out, r.Output+" "+r.Key+" "+r.Value)
	}
	return out
}

// SameRecords fails the test unless got, the lines of the records a plugin
// emitted, and want, the oracle's, hold the same lines in any order: per
// key the records come in event-time order, across keys in any. what names
// the records in the message.
func SameRecords(t testing.TB, got, want []string, what string) {
	t.Helper()
	if !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want))) {
		t.Errorf("the plugin emitted %d %s, the oracle %d; they differ", len(got), what, len(want))
	}
}

// RefusesConfig fails the test unless the plugin fails to open with each
// of configs, with an error that names every key of it ("key=").
func RefusesConfig(t testing.TB, configs ...map[string]string) {
	t.Helper()
	for _, cfg := range configs {
		h, err := wasmstreamtest.Open(cfg)
		if err == nil {
			h.Close()
			t.Errorf("%v: Open succeeded, want an error", cfg)
			continue
		}
		for k := range cfg {
			if !strings.Contains(err.Error(), k+"=") {
				t.Errorf("%v: error %q does not name the config key", cfg, err)
			}
		}
	}
}
