// Package eventtime is what the example generators and oracles share: the
// engine's watermark and late-event rule in plain Go, applied to a
// published sequence of JSON events, and a deterministic out-of-order
// arrival within a bound.
package eventtime

import (
	"cmp"
	"encoding/json"
	"iter"
	"math/rand/v2"
	"slices"
)

// Watermark follows the watermark of a job's source, as the engine computes
// it for event_time.max_out_of_orderness = bound: after the first event the
// watermark is the largest event time read minus bound minus 1 ms, and an
// event whose time is at or below the watermark is late (it goes to the
// late subject, and does not move the watermark).
type Watermark struct {
	bound   int64
	max     int64
	started bool
}

// NewWatermark returns the watermark before the first event of a job with
// max_out_of_orderness bound, in ms.
func NewWatermark(bound int64) Watermark { return Watermark{bound: bound} }

// Next reads an event with time t: it reports whether the event is on time
// and, if so, advances the watermark.
func (w *Watermark) Next(t int64) bool {
	if w.started && t <= w.max-w.bound-1 {
		return false
	}
	if !w.started || t > w.max {
		w.max, w.started = t, true
	}
	return true
}

// OnTime decodes events, JSON values published in this order, each into a
// fresh T, and yields the index and value of those a job with
// max_out_of_orderness bound (in ms) finds on time, time giving a value's
// event time (nil when it has none). An event that does not decode into a
// T, or has no time, is left out and does not move the watermark; the
// engine dead-letters it.
func OnTime[T any](events [][]byte, bound int64, time func(*T) *int64) iter.Seq2[int, *T] {
	return func(yield func(int, *T) bool) {
		wm := NewWatermark(bound)
		for i, e := range events {
			v := new(T)
			if json.Unmarshal(e, v) != nil {
				continue
			}
			if t := time(v); t == nil || !wm.Next(*t) {
				continue
			}
			if !yield(i, v) {
				return
			}
		}
	}
}

// Arrival returns the order in which to publish events with the given
// times (indexes into times): each event is delayed by a pseudo-random
// amount in [0, disorder] ms, seeded by seed, and the events arrive in
// order of time plus delay. Every event then arrives no more than disorder
// ms behind the latest time before it, so a job with a
// max_out_of_orderness of at least disorder finds none late. disorder ≤ 0
// keeps the order of times.
func Arrival(times []int64, disorder int64, seed uint64) []int {
	order := make([]int, len(times))
	for i := range order {
		order[i] = i
	}
	if disorder <= 0 {
		return order
	}
	r := rand.New(rand.NewPCG(seed, seed^0x5851f42d4c957f2d))
	at := make([]int64, len(times))
	for i, t := range times {
		at[i] = t + r.Int64N(disorder+1)
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(at[a], at[b]) })
	return order
}

// Permute returns items in the given order.
func Permute[T any](items []T, order []int) []T {
	out := make([]T, len(order))
	for i, j := range order {
		out[i] = items[j]
	}
	return out
}
