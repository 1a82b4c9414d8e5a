// Command plugin is the wasmstream notification-fatigue example: a user gets
// at most `limit` notifications in any 24 hours of event time. Allowed
// notifications go to the main output; the others to the side output
// "suppressed", with the reason and when the next one would be allowed.
//
// Events look like {"user_id":42,"notification_id":9001,"ts":1735689600000};
// the job keys them by user_id and takes their event time from ts. Config
// "limit" sets the budget (default 3).
//
// Decisions are made in event-time order, whatever order the notifications
// arrive in: each registers an event-time timer at its ts, carrying its id,
// and is decided when the watermark passes it (per user in time order, by
// id within a millisecond). A notification allowed at s counts against
// those at [s, s+24h). The same id at the same ts is one notification: the
// host keeps one timer per key, time and payload.
//
// The window is the list state "sent": the times of the notifications
// allowed in the last 24 hours, oldest first, at most `limit` of them
// (plus any that left the window since the last write). One read gives the
// count and the oldest time, so a decision costs a list read and, when
// allowed, an append. Counting with an expiry timer per notification would
// cost more: the expiry must be registered when the notification arrives
// (timers registered while timers fire may come after later ones of the
// same round), so before it is decided, and its handler would need state to
// tell whether it had been allowed. An event-time TTL of 24 hours removes
// the list of a user who has received nothing for a day.
//
// Records, keyed by user_id:
//
//	main        {"user_id":42,"notification_id":9001,"ts":1735689600000}
//	suppressed  {"user_id":42,"notification_id":9002,"ts":1735689660000,
//	             "reason":"limit of 3 notifications in 24h reached","next_allowed":1735776000000}
//
// Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o fatigue.wasm .
package main

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"time"

	wasmstream "github.com/wasmstream/wasmstream/plugins/go"
)

// window is the rolling budget period, in ms.
const window = 24 * 3600 * 1000

var (
	notificationID = wasmstream.NewField("notification_id")
	// sent holds the times of the user's allowed notifications still in
	// the window. Each item expires 24h after it was written, never
	// before it leaves the window.
	sent       = wasmstream.NewListState("sent", wasmstream.Int64, wasmstream.WithTTL(window*time.Millisecond, wasmstream.TTLEventTime()))
	suppressed = wasmstream.NewSideOutput("suppressed")
)

// Fatigue is the process function; payload, times and value are reused
// buffers.
type Fatigue struct {
	limit   int64
	reason  string
	payload [8]byte
	times   []int64
	value   []byte
}

// Open reads the budget from the job config.
func (f *Fatigue) Open(ctx *wasmstream.OpenContext) (err error) {
	if f.limit, err = ctx.ConfigInt("limit", 3); err != nil {
		return err
	}
	if f.limit < 1 {
		return fmt.Errorf("config limit=%d: want a positive number of notifications", f.limit)
	}
	f.reason = "limit of " + strconv.FormatInt(f.limit, 10) + " notifications in 24h reached"
	return nil
}

// ProcessElement schedules the decision: one host call.
func (f *Fatigue) ProcessElement(ctx *wasmstream.Context, ev *wasmstream.Event) error {
	id, ok := ev.Int(notificationID)
	if !ok {
		return fmt.Errorf("notification_id is %s, want an integer", ev.Kind(notificationID))
	}
	binary.BigEndian.PutUint64(f.payload[:], uint64(id))
	ctx.RegisterEventTimer(ev.Timestamp(), f.payload[:])
	return nil
}

// OnTimer decides one notification: a list read, an emit and, when
// allowed, a list write.
func (f *Fatigue) OnTimer(ctx *wasmstream.Context, t *wasmstream.Timer) error {
	if len(t.Payload()) != 8 {
		return fmt.Errorf("timer payload of %d bytes, want 8", len(t.Payload()))
	}
	id := int64(binary.BigEndian.Uint64(t.Payload()))
	now := t.Time()
	all := sent.Get(ctx, f.times[:0])
	f.times = all
	live := all
	for len(live) > 0 && live[0] <= now-window { // oldest first
		live = live[1:]
	}
	f.value = append(f.value[:0], `{"user_id":`...)
	f.value = append(f.value, ctx.Key()...)
	f.value = append(f.value, `,"notification_id":`...)
	f.value = strconv.AppendInt(f.value, id, 10)
	f.value = append(f.value, `,"ts":`...)
	f.value = strconv.AppendInt(f.value, now, 10)
	if int64(len(live)) >= f.limit {
		f.value = append(f.value, `,"reason":"`...)
		f.value = append(f.value, f.reason...)
		f.value = append(f.value, `","next_allowed":`...)
		f.value = strconv.AppendInt(f.value, live[len(live)-int(f.limit)]+window, 10)
		f.value = append(f.value, '}')
		ctx.EmitTo(suppressed, ctx.Key(), f.value)
		return nil
	}
	f.value = append(f.value, '}')
	ctx.Emit(ctx.Key(), f.value)
	if len(live) == len(all) {
		sent.Add(ctx, now)
	} else {
		sent.Update(ctx, append(live, now)) // drop what left the window
	}
	return nil
}

func init() { wasmstream.Register("fatigue", &Fatigue{}) }

func main() {}
