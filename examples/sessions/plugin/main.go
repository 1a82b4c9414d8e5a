// Command plugin is the wasmstream sessions example: it groups each user's
// events into sessions, a session ending once 30 minutes of event time pass
// without an event, and emits exactly one record per session when the
// watermark passes its end: no intermediate results.
//
// Events look like {"user_id":42,"ts":1735689600000,"amount":250}; the job
// keys them by user_id and takes their event time from ts. Config "gap_ms"
// sets the gap (default 1800000, 30 minutes). Records go to the main
// output, keyed by user_id:
//
//	{"user_id":42,"start":1735689600000,"end":1735690500000,"events":3,"amount":700}
//
// start and end are the times of the session's first and last events,
// amount their sum. An event joins the session when it is less than the
// gap after the session's last event, and starts a new one otherwise.
//
// Events are added in event-time order, whatever order they arrive in:
// each registers an event-time timer at its ts, carrying its amount, and is
// added when the watermark passes it (per user in time order). A user has
// at most one open session, so an event arriving out of order never has to
// merge two sessions. The session's end is an event-time timer at last
// event + gap, moved (deleted and registered again) as the session grows;
// at one millisecond it fires before the events' timers (its payload sorts
// first), so an event exactly a gap after the last one starts a new
// session. Events behind the watermark are late: the job sends them to its
// late subject and they are in no session.
//
// Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o sessions.wasm .
package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"

	wasmstream "github.com/wasmstream/wasmstream/plugins/go"
)

// session is the open session of a user.
type session struct{ start, last, events, amount int64 }

// sessionCodec stores a session as four little-endian int64s, without
// allocating.
type sessionCodec struct{}

func (sessionCodec) Append(dst []byte, s session) []byte {
	for _, v := range [4]int64{s.start, s.last, s.events, s.amount} {
		dst = binary.LittleEndian.AppendUint64(dst, uint64(v))
	}
	return dst
}

func (sessionCodec) Decode(b []byte) (session, error) {
	if len(b) != 32 {
		return session{}, errors.New("session: want 32 bytes")
	}
	u := func(i int) int64 { return int64(binary.LittleEndian.Uint64(b[8*i:])) }
	return session{u(0), u(1), u(2), u(3)}, nil
}

var (
	amount  = wasmstream.NewField("amount")
	current = wasmstream.NewValueState[session]("session", sessionCodec{})
)

// Timer payloads: the session's end is {kindEnd}; an event's timer is
// kindEvent, the event's sequence and its amount (8 bytes big-endian each;
// the sequence keeps events of one millisecond apart).
const (
	kindEnd   = 0
	kindEvent = 1
)

var endPayload = []byte{kindEnd}

// Sessions is the process function; payload and value are reused buffers.
type Sessions struct {
	gap     int64
	payload [17]byte
	value   []byte
}

// Open reads the gap from the job config.
func (s *Sessions) Open(ctx *wasmstream.OpenContext) (err error) {
	if s.gap, err = ctx.ConfigInt("gap_ms", 30*60*1000); err != nil {
		return err
	}
	if s.gap < 1 {
		return fmt.Errorf("config gap_ms=%d: want a positive number of milliseconds", s.gap)
	}
	return nil
}

// ProcessElement schedules the event: one host call.
func (s *Sessions) ProcessElement(ctx *wasmstream.Context, ev *wasmstream.Event) error {
	n, ok := ev.Int(amount)
	if !ok {
		return fmt.Errorf("amount is %s, want an integer", ev.Kind(amount))
	}
	p := s.payload[:]
	p[0] = kindEvent
	binary.BigEndian.PutUint64(p[1:9], ev.Seq())
	binary.BigEndian.PutUint64(p[9:], uint64(n))
	ctx.RegisterEventTimer(ev.Timestamp(), p)
	return nil
}

// OnTimer adds an event to the user's session (a state read and write, and
// moving the end timer when the session grows: four host calls), or ends
// the session (a read, a clear and an emit).
func (s *Sessions) OnTimer(ctx *wasmstream.Context, t *wasmstream.Timer) error {
	p, now := t.Payload(), t.Time()
	cur, open := current.Value(ctx)
	if len(p) == 1 && p[0] == kindEnd {
		if open && cur.last+s.gap == now {
			s.emit(ctx, cur)
			current.Clear(ctx)
		}
		return nil
	}
	if len(p) != len(s.payload) || p[0] != kindEvent {
		return fmt.Errorf("timer payload of %d bytes, want an event's %d", len(p), len(s.payload))
	}
	if open && now >= cur.last+s.gap {
		// The session ended before this event, and its end timer has not
		// fired yet (it was registered while this round of timers fired).
		s.emit(ctx, cur)
		ctx.DeleteEventTimer(cur.last+s.gap, endPayload)
		open = false
	}
	switch {
	case !open:
		cur = session{start: now, last: now}
		ctx.RegisterEventTimer(now+s.gap, endPayload)
	case now > cur.last:
		ctx.DeleteEventTimer(cur.last+s.gap, endPayload)
		cur.last = now
		ctx.RegisterEventTimer(now+s.gap, endPayload)
	}
	cur.events++
	cur.amount += int64(binary.BigEndian.Uint64(p[9:]))
	current.Update(ctx, cur)
	return nil
}

// emit sends one session's record.
func (s *Sessions) emit(ctx *wasmstream.Context, cur session) {
	s.value = append(s.value[:0], `{"user_id":`...)
	s.value = append(s.value, ctx.Key()...)
	s.value = append(s.value, `,"start":`...)
	s.value = strconv.AppendInt(s.value, cur.start, 10)
	s.value = append(s.value, `,"end":`...)
	s.value = strconv.AppendInt(s.value, cur.last, 10)
	s.value = append(s.value, `,"events":`...)
	s.value = strconv.AppendInt(s.value, cur.events, 10)
	s.value = append(s.value, `,"amount":`...)
	s.value = strconv.AppendInt(s.value, cur.amount, 10)
	s.value = append(s.value, '}')
	ctx.Emit(ctx.Key(), s.value)
}

func init() { wasmstream.Register("sessions", &Sessions{}) }

func main() {}
