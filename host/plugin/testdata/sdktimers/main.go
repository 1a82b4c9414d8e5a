// Command sdktimers is a test plugin written with the Go SDK that uses
// timers: per key it counts events and closes a session when an event-time
// timer fires, gap ms after the session's first event. Event values are
// commands: "wm" emits the watermark, "proc" registers a processing-time
// timer 1s ahead, "del" deletes the session timer, "jitter" registers an
// event-time timer with jitter and emits its time.
package main

import (
	"strconv"

	wasmstream "github.com/wasmstream/wasmstream/plugins/go"
)

var (
	count = wasmstream.NewValueState("count", wasmstream.Int64)
	end   = wasmstream.NewValueState("end", wasmstream.Int64)
)

const gap = 1000

type sessions struct{ buf []byte }

func (s *sessions) Open(*wasmstream.OpenContext) error { return nil }

func (s *sessions) ProcessElement(ctx *wasmstream.Context, ev *wasmstream.Event) error {
	switch string(ev.Value()) {
	case "wm":
		s.buf = strconv.AppendInt(append(s.buf[:0], "wm:"...), ctx.Watermark(), 10)
		ctx.Emit(ctx.Key(), s.buf)
		return nil
	case "proc":
		ctx.RegisterProcessingTimer(ctx.Now()+1000, []byte("proc"))
		return nil
	case "del":
		if t, ok := end.Value(ctx); ok {
			ctx.DeleteEventTimer(t, []byte("session"))
			end.Clear(ctx)
		}
		return nil
	case "jitter":
		t := ctx.RegisterEventTimerJitter(ev.Timestamp(), 60_000, nil)
		s.buf = strconv.AppendInt(append(s.buf[:0], "jitter:"...), t, 10)
		ctx.Emit(ctx.Key(), s.buf)
		return nil
	}
	count.AddInt64(ctx, 1)
	if _, ok := end.Value(ctx); !ok {
		end.Update(ctx, ctx.RegisterEventTimer(ev.Timestamp()+gap, []byte("session")))
	}
	return nil
}

func (s *sessions) OnTimer(ctx *wasmstream.Context, t *wasmstream.Timer) error {
	n, _ := count.Value(ctx)
	s.buf = append(s.buf[:0], t.Payload()...)
	s.buf = append(s.buf, ':')
	s.buf = append(s.buf, t.Domain().String()...)
	s.buf = append(s.buf, ':')
	s.buf = strconv.AppendInt(s.buf, t.Time(), 10)
	s.buf = append(s.buf, ':')
	s.buf = strconv.AppendUint(s.buf, t.Seq(), 10)
	s.buf = append(s.buf, ":count="...)
	s.buf = strconv.AppendInt(s.buf, n, 10)
	ctx.Emit(t.Key(), s.buf)
	if t.Domain() == wasmstream.EventTime {
		count.Clear(ctx)
		end.Clear(ctx)
	}
	return nil
}

func init() { wasmstream.Register("sdktimers", &sessions{}) }

func main() {}
