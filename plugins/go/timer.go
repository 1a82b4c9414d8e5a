package wasmstream

import (
	"strconv"

	"github.com/wasmstream/wasmstream/abi"
)

// TimerHandler is implemented by Functions that use timers (the onTimer of
// Flink's KeyedProcessFunction). A timer is registered for the key of the
// event or timer being handled, with Context.RegisterEventTimer or
// Context.RegisterProcessingTimer; when it fires the host calls OnTimer
// with a Context scoped to that key, so state calls, Emit and further timer
// calls work as in ProcessElement.
//
// An event-time timer fires once the watermark reaches its time, after the
// events that advanced the watermark; a processing-time timer once the
// host's clock does. Timers fire in time order per key group, in batches;
// a timer deleted while its batch is being handled has fired already.
//
// An error returned by OnTimer fails the job, as a panic does: a timer is
// no input event that could go to the dead-letter subject.
type TimerHandler interface {
	// OnTimer handles one fired timer. ctx and t are reused for the next
	// timer: do not keep them, nor the byte slices they return.
	OnTimer(ctx *Context, t *Timer) error
}

// TimeDomain is the clock a timer follows.
type TimeDomain int32

// Time domains.
const (
	// EventTime timers fire when the watermark reaches their time.
	EventTime TimeDomain = abi.TimeDomainEvent
	// ProcessingTime timers fire when the host's clock reaches their time.
	ProcessingTime TimeDomain = abi.TimeDomainProcessing
)

// String returns "event" or "processing".
func (d TimeDomain) String() string {
	switch d {
	case EventTime:
		return "event"
	case ProcessingTime:
		return "processing"
	}
	return "domain(" + strconv.Itoa(int(d)) + ")"
}

// NoWatermark is what Context.Watermark returns before the first watermark:
// the smallest int64.
const NoWatermark int64 = abi.NoWatermark

// MaxTimerPayload is the largest timer payload, in bytes.
const MaxTimerPayload = abi.MaxTimerPayload

// Timer is a fired timer, a view into the batch the host handed over, valid
// only during OnTimer.
type Timer struct {
	b abi.Batch
	i int
}

// Time returns the time the timer was registered for (after jitter), in ms
// since the Unix epoch.
func (t *Timer) Time() int64 { return t.b.Timestamp(t.i) }

// Domain returns the timer's time domain.
func (t *Timer) Domain() TimeDomain {
	if t.b.Kind() == abi.BatchProcTimers {
		return ProcessingTime
	}
	return EventTime
}

// Key returns the key the timer was registered for (a view).
func (t *Timer) Key() []byte { return t.b.Key(t.i) }

// Payload returns the payload given at registration (a view; empty when
// none).
func (t *Timer) Payload() []byte { return t.b.Value(t.i) }

// Seq returns the stream sequence of the event whose watermark fired the
// timer; 0 for processing-time timers. Outputs emitted in OnTimer carry it.
func (t *Timer) Seq() uint64 { return t.b.Seq(t.i) }

// RegisterEventTimer registers a timer for the current key that fires when
// the watermark reaches ts (ms since the Unix epoch), handing payload (at
// most MaxTimerPayload bytes, copied by the host; may be nil) back to
// OnTimer. At most one timer exists per key, domain, time and payload:
// registering it again changes nothing. It returns the timer's time.
//
// The Function must implement TimerHandler.
func (c *Context) RegisterEventTimer(ts int64, payload []byte) int64 {
	return c.registerTimer(EventTime, ts, 0, payload)
}

// RegisterProcessingTimer registers a timer for the current key that fires
// when the host's clock (Now) reaches ts. See RegisterEventTimer.
func (c *Context) RegisterProcessingTimer(ts int64, payload []byte) int64 {
	return c.registerTimer(ProcessingTime, ts, 0, payload)
}

// RegisterEventTimerJitter is RegisterEventTimer with the timer moved to a
// time in [ts, ts+jitter), chosen by a hash of the key, ts and payload, so
// that many keys registering the same ts do not fire in one burst. The time
// is deterministic (a replay registers the same timers); it is returned, and
// is the time to pass to DeleteEventTimer.
func (c *Context) RegisterEventTimerJitter(ts, jitter int64, payload []byte) int64 {
	return c.registerTimer(EventTime, ts, jitter, payload)
}

// RegisterProcessingTimerJitter is RegisterProcessingTimer with jitter, as
// RegisterEventTimerJitter.
func (c *Context) RegisterProcessingTimerJitter(ts, jitter int64, payload []byte) int64 {
	return c.registerTimer(ProcessingTime, ts, jitter, payload)
}

// DeleteEventTimer deletes the current key's event-time timer with time ts
// (as returned by the Register call) and payload. Deleting a timer that does
// not exist does nothing.
func (c *Context) DeleteEventTimer(ts int64, payload []byte) {
	c.deleteTimer(EventTime, ts, payload)
}

// DeleteProcessingTimer deletes the current key's processing-time timer with
// time ts and payload. See DeleteEventTimer.
func (c *Context) DeleteProcessingTimer(ts int64, payload []byte) {
	c.deleteTimer(ProcessingTime, ts, payload)
}

// Watermark returns the current event-time watermark in ms since the Unix
// epoch, or NoWatermark before the first (one host call).
func (c *Context) Watermark() int64 { return watermarkMs() }

func (c *Context) registerTimer(d TimeDomain, ts, jitter int64, payload []byte) int64 {
	c.checkTimer(payload)
	return timerRegister(int32(d), c.ev, ts, jitter, ptr(payload), int32(len(payload)))
}

func (c *Context) deleteTimer(d TimeDomain, ts int64, payload []byte) {
	c.checkTimer(payload)
	timerDelete(int32(d), c.ev, ts, ptr(payload), int32(len(payload)))
}

func (c *Context) checkTimer(payload []byte) {
	if registry.timers == nil {
		panic("wasmstream: timer registered by a Function without an OnTimer method: implement wasmstream.TimerHandler to receive fired timers")
	}
	if len(payload) > MaxTimerPayload {
		panic("wasmstream: timer payload of " + itoa(int64(len(payload))) + " bytes, at most " + itoa(MaxTimerPayload) +
			" allowed: keep a short identifier in the payload and the rest in keyed state")
	}
}

// onTimers runs OnTimer over every timer of an encoded timer batch.
func onTimers(b []byte) (rc int32) {
	if !registry.opened {
		failString("wasmstream: ws_on_timer called before a successful ws_open")
		return 1
	}
	bt, err := abi.ParseBatch(b)
	if err != nil {
		failString("wasmstream: ws_on_timer: " + err.Error() + ": the host and the SDK disagree on the batch layout; rebuild the plugin with the SDK version matching the host")
		return 1
	}
	if k := bt.Kind(); k != abi.BatchEventTimers && k != abi.BatchProcTimers {
		failString("wasmstream: ws_on_timer: batch kind " + itoa(int64(k)) + " is not a timer batch")
		return 1
	}
	th := registry.timers
	if th == nil {
		failString("wasmstream: timers fired but the registered Function has no OnTimer method: implement wasmstream.TimerHandler")
		return 1
	}
	defer recoverFail(&rc, "OnTimer")
	ctx, t := &cur.ctx, &cur.timer
	t.b = bt
	cur.ev.b = bt // Context.Key reads the current batch
	cur.inTimer = true
	for i := 0; i < bt.Len(); i++ {
		t.i = i
		ctx.ev = int32(i)
		ctx.rejected = false
		if err := th.OnTimer(ctx, t); err != nil {
			cur.inTimer = false
			ctx.ev = -1
			failString("wasmstream: OnTimer failed for the " + t.Domain().String() + "-time timer at " + itoa(t.Time()) +
				" of key " + strconv.Quote(string(t.Key())) + ": " + err.Error())
			return 1
		}
	}
	cur.inTimer = false
	ctx.ev = -1
	t.b, cur.ev.b = abi.Batch{}, abi.Batch{}
	return 0
}
