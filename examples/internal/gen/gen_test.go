package gen

import (
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"

	"github.com/wasmstream/wasmstream/examples/internal/eventtime"
)

func TestEventsRepeat(t *testing.T) {
	events := Events(100, 7, 1, func(r *rand.Rand) Event {
		return func(b []byte, i int) []byte {
			b = AppendInt(b, "i", int64(i))
			b = AppendInt(b, "r", r.Int64N(1000))
			return append(b, '}')
		}
	})
	a := slices.Collect(events)
	if len(a) != 100 || string(a[0][:7]) != `{"i":0,` {
		t.Fatalf("events %q", a)
	}
	if b := slices.Collect(events); !slices.EqualFunc(a, b, slices.Equal) {
		t.Error("a second iteration gives other events")
	}
}

func TestGenerateWithinTheBound(t *testing.T) {
	events := Events(3000, 1, 1, func(*rand.Rand) Event {
		return func(b []byte, i int) []byte { return strconv.AppendInt(b, 1000+int64(i)*10, 10) }
	})
	if got := Generate(events, 3000, 1000, 10, 0, 1); !slices.EqualFunc(got, slices.Collect(events), slices.Equal) {
		t.Error("without disorder the events are reordered")
	}
	w := eventtime.NewWatermark(500)
	moved := 0
	for i, e := range Generate(events, 3000, 1000, 10, 500, 1) {
		ts, _ := strconv.ParseInt(string(e), 10, 64)
		if !w.Next(ts) {
			t.Fatalf("event %d (time %d) is late", i, ts)
		}
		if ts != 1000+int64(i)*10 {
			moved++
		}
	}
	if moved < 1000 {
		t.Errorf("only %d events moved", moved)
	}
}
