package wasmstream_test

import (
	"fmt"
	"strconv"

	wasmstream "github.com/wasmstream/wasmstream/plugins/go"
	"github.com/wasmstream/wasmstream/plugins/go/wasmstreamtest"
)

var (
	lastSeen = wasmstream.NewValueState("last_seen", wasmstream.Int64)
	visits   = wasmstream.NewValueState("visits", wasmstream.Int64)
)

// Sessions reports a user's session once the user has been inactive for
// 30 minutes of event time.
type Sessions struct{ buf []byte }

const inactivity = 30 * 60 * 1000 // ms

func (s *Sessions) Open(*wasmstream.OpenContext) error { return nil }

func (s *Sessions) ProcessElement(ctx *wasmstream.Context, ev *wasmstream.Event) error {
	lastSeen.Update(ctx, ev.Timestamp())
	visits.AddInt64(ctx, 1)
	// One timer per event; the handler ignores those that an event after
	// them made stale.
	ctx.RegisterEventTimer(ev.Timestamp()+inactivity, nil)
	return nil
}

// OnTimer makes Sessions a wasmstream.TimerHandler.
func (s *Sessions) OnTimer(ctx *wasmstream.Context, t *wasmstream.Timer) error {
	last, _ := lastSeen.Value(ctx)
	if t.Time() != last+inactivity {
		return nil // the user came back after this timer was set
	}
	n, _ := visits.Value(ctx)
	s.buf = strconv.AppendInt(append(s.buf[:0], "session of "...), n, 10)
	ctx.Emit(t.Key(), append(s.buf, " events"...))
	lastSeen.Clear(ctx)
	visits.Clear(ctx)
	return nil
}

func ExampleTimerHandler() {
	h := wasmstreamtest.New(nil, nil, wasmstreamtest.WithFunction("sessions", &Sessions{}))
	defer h.Close()

	const min = 60 * 1000
	for _, e := range []struct {
		user string
		at   int64
	}{{"ann", 1 * min}, {"bob", 5 * min}, {"ann", 20 * min}, {"ann", 45 * min}} {
		h.ProcessEvents(wasmstreamtest.Event{Key: []byte(e.user), Value: []byte(`{}`), Time: e.at})
	}
	h.AdvanceWatermark(60 * min) // bob has been gone for 55 minutes
	h.AdvanceWatermark(80 * min) // ann for 35
	for _, r := range h.Output("main") {
		fmt.Println(r.Key+":", r.Value)
	}
	fmt.Println(len(h.Timers()), "timers pending")
	// Output:
	// bob: session of 1 events
	// ann: session of 3 events
	// 0 timers pending
}
