package wasmstreamtest

import (
	"bytes"
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/wasmstream/wasmstream/abi"
	wasmstream "github.com/wasmstream/wasmstream/plugins/go"
	"github.com/wasmstream/wasmstream/plugins/go/internal/bridge"
	"github.com/wasmstream/wasmstream/statestore"
)

// Timers: the harness keeps the plugin's timers in its state backend's
// timer store, as the host does, and fires them through the SDK's
// ws_on_timer entry point: event-time timers when AdvanceWatermark (or
// SetWatermark) moves the watermark past them, processing-time timers when
// SetNow or Advance moves the clock past them. Due timers go to the plugin
// in one batch per round, ordered by (time, key, payload) across keys;
// timers the plugin registers while handling them fire in a further round
// if they are due too.

// Timer is a registered timer that has not fired yet.
type Timer struct {
	Domain  wasmstream.TimeDomain
	Time    int64 // ms since the Unix epoch, after jitter
	Key     string
	Payload string
}

// timerState is the harness's watermark and timer-firing state.
type timerState struct {
	wm    int64
	hasWM bool
	in    bool // ws_on_timer is running
	due   []statestore.Timer
}

// maxTimerRounds bounds the rounds one clock move fires, in case timers
// keep registering timers that are due at once.
const maxTimerRounds = 10000

// Watermark returns the event-time watermark the plugin sees
// (wasmstream.NoWatermark until the first AdvanceWatermark).
func (h *Harness) Watermark() int64 {
	if !h.timers.hasWM {
		return abi.NoWatermark
	}
	return h.timers.wm
}

// AdvanceWatermark moves the event-time watermark to ms and fires the
// event-time timers it passes (time ≤ ms), in order. A watermark never goes
// back: a lower ms is ignored. It fails the test when the plugin fails.
func (h *Harness) AdvanceWatermark(ms int64) {
	if h.t != nil {
		h.t.Helper()
	}
	if err := h.SetWatermark(ms); err != nil {
		h.fatalf("%v", err)
	}
}

// SetWatermark is AdvanceWatermark returning the plugin's failure instead of
// failing the test.
func (h *Harness) SetWatermark(ms int64) error {
	if h.timers.hasWM && ms <= h.timers.wm {
		return nil
	}
	h.timers.wm, h.timers.hasWM = ms, true
	if h.backend != nil {
		// Event-time TTL is cleaned up by the watermark, as in the engine.
		for kg := range MaxParallelism {
			h.backend.SetWatermark(uint16(kg), ms)
		}
	}
	return h.fire(wasmstream.EventTime, ms, h.seq)
}

// SetClock moves the harness clock to ms, as SetNow, and returns the
// plugin's failure instead of failing the test.
func (h *Harness) SetClock(ms int64) error {
	h.now = ms
	return h.fire(wasmstream.ProcessingTime, ms, 0)
}

// Timers returns the registered timers that have not fired, by domain,
// time, key and payload.
func (h *Harness) Timers() []Timer {
	var out []Timer
	for _, d := range []wasmstream.TimeDomain{wasmstream.EventTime, wasmstream.ProcessingTime} {
		for kg := range MaxParallelism {
			ts, err := h.backend.AppendTimers(nil, uint16(kg), int(d))
			if err != nil {
				h.fatalf("%v", err)
			}
			for _, t := range ts {
				out = append(out, Timer{Domain: d, Time: t.Time, Key: string(t.Key), Payload: string(t.Payload)})
			}
		}
	}
	slices.SortFunc(out, func(a, b Timer) int {
		return cmp.Or(cmp.Compare(a.Domain, b.Domain), cmp.Compare(a.Time, b.Time), strings.Compare(a.Key, b.Key), strings.Compare(a.Payload, b.Payload))
	})
	return out
}

// fire delivers the timers of domain due at upTo, round after round, with
// seq as their sequence.
func (h *Harness) fire(d wasmstream.TimeDomain, upTo int64, seq uint64) error {
	if h.closed || h.backend == nil || h.backend.TimerCount() == 0 {
		return nil
	}
	h.use()
	kind := uint32(abi.BatchEventTimers)
	if d == wasmstream.ProcessingTime {
		kind = abi.BatchProcTimers
	}
	for range maxTimerRounds {
		due := h.timers.due[:0]
		for kg := range MaxParallelism {
			_, err := h.backend.PopTimers(uint16(kg), int(d), upTo, 0, func(t statestore.Timer) {
				due = append(due, statestore.Timer{Domain: t.Domain, Time: t.Time, Key: bytes.Clone(t.Key), Payload: bytes.Clone(t.Payload)})
			})
			if err != nil {
				return fmt.Errorf("wasmstreamtest: %v", err)
			}
		}
		h.timers.due = due
		if len(due) == 0 {
			return nil
		}
		slices.SortFunc(due, func(a, b statestore.Timer) int {
			return cmp.Or(cmp.Compare(a.Time, b.Time), bytes.Compare(a.Key, b.Key), bytes.Compare(a.Payload, b.Payload))
		})
		h.w.Reset(kind, 0)
		h.cur = h.cur[:0]
		for _, t := range due {
			h.w.Add(seq, t.Time, t.Key, t.Payload, nil, nil)
			h.cur = append(h.cur, pending{seq: seq, time: t.Time, kg: statestore.KeyGroup(t.Key, MaxParallelism), key: t.Key, value: t.Payload})
		}
		buf := bridge.Plugin.Buffer(h.w.Size())
		buf = h.w.AppendTo(buf[:0])
		h.failMsg = ""
		h.timers.in = true
		rc := bridge.Plugin.OnTimer(buf)
		h.timers.in = false
		if rc != 0 {
			return fmt.Errorf("wasmstreamtest: the plugin failed: %s", h.failMsg)
		}
	}
	return fmt.Errorf("wasmstreamtest: timers kept registering due timers for %d rounds", maxTimerRounds)
}

func (h *host) timerArgs(fn string, domain, ev int32, payload []byte) *pending {
	p := h.event(ev)
	if domain != abi.TimeDomainEvent && domain != abi.TimeDomainProcessing {
		h.trap("%s: time domain %d, want %d (event time) or %d (processing time)", fn, domain, abi.TimeDomainEvent, abi.TimeDomainProcessing)
	}
	if len(payload) > abi.MaxTimerPayload {
		h.trap("%s: timer payload of %d bytes, at most %d allowed", fn, len(payload), abi.MaxTimerPayload)
	}
	return p
}

func (h *host) TimerRegister(domain, ev int32, ts, jitter int64, payload []byte) int64 {
	p := h.timerArgs(abi.FnTimerRegister, domain, ev, payload)
	t := statestore.Timer{Domain: int(domain), Time: abi.JitterTime(p.key, ts, jitter, payload), Key: p.key, Payload: payload}
	_, err := h.backend.RegisterTimer(p.kg, t)
	h.check(err)
	return t.Time
}

func (h *host) TimerDelete(domain, ev int32, ts int64, payload []byte) {
	p := h.timerArgs(abi.FnTimerDelete, domain, ev, payload)
	_, err := h.backend.DeleteTimer(p.kg, statestore.Timer{Domain: int(domain), Time: ts, Key: p.key, Payload: payload})
	h.check(err)
}

func (h *host) WatermarkMs() int64 { return (*Harness)(h).Watermark() }
