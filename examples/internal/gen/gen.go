// Package gen is what the example event generators share: a seeded,
// repeatable stream of events and its shuffle within an out-of-orderness
// bound.
package gen

import (
	"iter"
	"math/rand/v2"
	"strconv"

	"github.com/wasmstream/wasmstream/examples/internal/eventtime"
)

// DefaultStartMs is the generators' default first event time:
// 2025-01-01T00:00:00Z in ms since the Unix epoch.
const DefaultStartMs int64 = 1_735_689_600_000

// Event appends the i-th event of a stream to dst, empty, and returns the
// result.
type Event func(dst []byte, i int) []byte

// Events yields n events, deterministic for seed and salt (each example
// has its own salt, so one seed gives unrelated streams). Every iteration
// starts over: it passes start a source seeded from seed and salt, and
// builds the i-th event with the function start returns. Each yielded
// slice is fresh and may be kept.
func Events(n int, seed, salt uint64, start func(r *rand.Rand) Event) iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		event := start(rand.New(rand.NewPCG(seed, seed^salt)))
		for i := range n {
			if !yield(event(make([]byte, 0, 72), i)) {
				return
			}
		}
	}
}

// Generate returns the n events that events yields, the i-th with event
// time startMs+i*stepMs. With disorder > 0 they come in the order
// eventtime.Arrival gives for those times, disorder and seed: none is more
// than disorder ms behind the latest event time before it.
func Generate(events iter.Seq[[]byte], n int, startMs, stepMs, disorder int64, seed uint64) [][]byte {
	out := make([][]byte, 0, n)
	for e := range events {
		out = append(out, e)
	}
	if disorder <= 0 {
		return out
	}
	times := make([]int64, len(out))
	for i := range times {
		times[i] = startMs + int64(i)*stepMs
	}
	return eventtime.Permute(out, eventtime.Arrival(times, disorder, seed))
}

// AppendInt appends the member "name":v of a JSON object to b, opening the
// object when b is empty; the caller closes it with '}'.
func AppendInt(b []byte, name string, v int64) []byte {
	if len(b) == 0 {
		b = append(b, '{')
	} else {
		b = append(b, ',')
	}
	b = append(b, '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return strconv.AppendInt(b, v, 10)
}
