// Command plugin is the wasmstream frequency-capping example: it counts how
// often each user has seen each advertisement over a sliding window of event
// time (5 days by default) and emits a record to the "capped" side output
// when a user's views of an ad reach the cap, so the ad server stops showing
// that ad to that user, and one to "released" when they fall back below it.
//
// Events look like {"user_no":123,"da_id":45,"log_time":1735689600000}; the
// job keys them by user_no (the event key is the user number's JSON text)
// and takes their event time from log_time. Config "cap" sets the cap
// (default 3), "window_ms" the window (default 432000000, 5 days).
//
// A view at time t counts during [t, t+window). The count changes in event
// time order, whatever order the views arrive in: each view registers two
// event-time timers, one at t that adds it and one at t+window that removes
// it, and the host fires them once the watermark passes, per user in time
// order. At one millisecond, removals come before additions (their timer
// payloads sort first), so a view is compared with the count at its own
// time. Records:
//
//	capped   key "<user>.<ad>"  {"user_no":123,"da_id":45,"count":3}
//	         when the count rises to the cap;
//	released key "<user>.<ad>"  {"user_no":123,"da_id":45,"count":2,"time":1736121600000}
//	         when it falls below it, at time (ms) as the oldest view expires.
//
// Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o freqcap.wasm .
package main

import (
	"encoding/binary"
	"fmt"
	"strconv"

	wasmstream "github.com/wasmstream/wasmstream/plugins/go"
)

var (
	// daID is the advertisement id, extracted by the host.
	daID = wasmstream.NewField("da_id")
	// views counts the views in the window per user (the event key) and ad.
	views = wasmstream.NewMapState("views", wasmstream.Int64, wasmstream.Int64)
	// capped and released receive the cap's transitions.
	capped   = wasmstream.NewSideOutput("capped")
	released = wasmstream.NewSideOutput("released")
)

// Timer payload: kind, ad id (8 bytes big-endian), event sequence (8 bytes
// big-endian). The sequence keeps two views of one ad in one millisecond
// apart (the host keeps one timer per key, time and payload); the kind
// orders removals before additions at the same time.
const (
	kindExpire  = 0
	kindView    = 1
	payloadSize = 17
)

// FreqCap is the process function. payload, key and value are reused
// buffers: no allocation per event.
type FreqCap struct {
	cap, window int64
	payload     [payloadSize]byte
	key, value  []byte
}

// Open reads the cap and the window from the job config.
func (f *FreqCap) Open(ctx *wasmstream.OpenContext) (err error) {
	if f.cap, err = ctx.ConfigInt("cap", 3); err != nil {
		return err
	}
	if f.cap < 1 {
		return fmt.Errorf("config cap=%d: want a positive number of views", f.cap)
	}
	if f.window, err = ctx.ConfigInt("window_ms", 5*24*3600*1000); err != nil {
		return err
	}
	if f.window < 1 {
		return fmt.Errorf("config window_ms=%d: want a positive number of milliseconds", f.window)
	}
	return nil
}

// ProcessElement schedules one view: two host calls.
func (f *FreqCap) ProcessElement(ctx *wasmstream.Context, ev *wasmstream.Event) error {
	da, ok := ev.Int(daID)
	if !ok {
		return fmt.Errorf("da_id is %s, want an integer", ev.Kind(daID))
	}
	p := f.payload[:]
	binary.BigEndian.PutUint64(p[1:9], uint64(da))
	binary.BigEndian.PutUint64(p[9:], ev.Seq())
	p[0] = kindView
	ctx.RegisterEventTimer(ev.Timestamp(), p)
	p[0] = kindExpire
	ctx.RegisterEventTimer(ev.Timestamp()+f.window, p)
	return nil
}

// OnTimer adds or removes one view: one host call, plus one when it emits
// and one when the count drops to zero.
func (f *FreqCap) OnTimer(ctx *wasmstream.Context, t *wasmstream.Timer) error {
	p := t.Payload()
	if len(p) != payloadSize {
		return fmt.Errorf("timer payload of %d bytes, want %d", len(p), payloadSize)
	}
	da := int64(binary.BigEndian.Uint64(p[1:9]))
	if p[0] == kindView {
		if views.AddInt64(ctx, da, 1) == f.cap {
			f.record(ctx.Key(), da, f.cap)
			f.value = append(f.value, '}')
			ctx.EmitTo(capped, f.key, f.value)
		}
		return nil
	}
	n := views.AddInt64(ctx, da, -1)
	if n == f.cap-1 {
		f.record(ctx.Key(), da, n)
		f.value = append(f.value, `,"time":`...)
		f.value = strconv.AppendInt(f.value, t.Time(), 10)
		f.value = append(f.value, '}')
		ctx.EmitTo(released, f.key, f.value)
	}
	if n == 0 {
		views.Remove(ctx, da) // the window is empty: keep no state for it
	}
	return nil
}

// record builds the key "<user>.<ad>" in f.key and the start of the value,
// {"user_no":…,"da_id":…,"count":… without the closing brace, in f.value.
func (f *FreqCap) record(user []byte, da, count int64) {
	f.key = append(f.key[:0], user...)
	f.key = append(f.key, '.')
	f.key = strconv.AppendInt(f.key, da, 10)
	f.value = append(f.value[:0], `{"user_no":`...)
	f.value = append(f.value, user...)
	f.value = append(f.value, `,"da_id":`...)
	f.value = strconv.AppendInt(f.value, da, 10)
	f.value = append(f.value, `,"count":`...)
	f.value = strconv.AppendInt(f.value, count, 10)
}

func init() { wasmstream.Register("freqcap", &FreqCap{}) }

func main() {}
