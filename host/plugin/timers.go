package plugin

import (
	"context"
	"fmt"

	"github.com/wasmstream/wasmstream/abi"
	"github.com/wasmstream/wasmstream/host/process"
	"github.com/wasmstream/wasmstream/statestore"
)

// Timers: timer_register and timer_delete address the key of a record of
// the current batch, an event batch (ws_process) or a timer batch
// (ws_on_timer); fired timers reach the guest through ws_on_timer.

var _ process.TimerFunction = (*instance)(nil)

// timerFuncs lists the timer host functions of module "wasmstream".
func timerFuncs() []hostFunc {
	return []hostFunc{
		{abi.FnTimerRegister, sig(i32, i32, i64, i64, i32, i32), sig(i64), func(in *instance, s []uint64) {
			const fn = abi.FnTimerRegister
			t, kg := in.timer(fn, s[0], s[1], int64(s[2]), s[4], s[5])
			t.Time = abi.JitterTime(t.Key, t.Time, int64(s[3]), t.Payload)
			_, err := in.timers.RegisterTimer(kg, t)
			timerErr(fn, err)
			s[0] = uint64(t.Time)
		}},
		{abi.FnTimerDelete, sig(i32, i32, i64, i32, i32), nil, func(in *instance, s []uint64) {
			const fn = abi.FnTimerDelete
			t, kg := in.timer(fn, s[0], s[1], int64(s[2]), s[3], s[4])
			_, err := in.timers.DeleteTimer(kg, t)
			timerErr(fn, err)
		}},
		{abi.FnWatermarkMs, nil, sig(i64), func(in *instance, s []uint64) {
			wm := int64(abi.NoWatermark)
			if in.watermark != nil {
				wm = in.watermark()
			}
			s[0] = uint64(wm)
		}},
	}
}

// timer decodes the arguments common to timer_register and timer_delete.
func (in *instance) timer(fn string, domain, ev uint64, ts int64, p, plen uint64) (statestore.Timer, uint16) {
	d := int32(uint32(domain))
	if d != abi.TimeDomainEvent && d != abi.TimeDomainProcessing {
		panic(badArg(fn, "time domain %d, want %d (event time) or %d (processing time)", d, abi.TimeDomainEvent, abi.TimeDomainProcessing))
	}
	e := in.event(fn, ev)
	if n := int32(uint32(plen)); n > abi.MaxTimerPayload {
		panic(badArg(fn, "timer payload of %d bytes, at most %d allowed: keep a short identifier in the payload and the rest in keyed state", n, abi.MaxTimerPayload))
	}
	var payload []byte
	if uint32(plen) != 0 {
		payload = in.bytes(fn, "payload", p, plen)
	}
	if in.timers == nil {
		panic(fmt.Errorf("%s: the worker has no timer store: the engine must pass process.Env.Timers to plugins that use timers", fn))
	}
	return statestore.Timer{Domain: int(d), Time: ts, Key: e.Key, Payload: payload}, e.KeyGroup
}

func timerErr(fn string, err error) {
	if err != nil {
		panic(fmt.Errorf("%s: timer store: %w", fn, err))
	}
}

// OnTimers implements process.TimerFunction: it hands the fired timers to
// the guest's ws_on_timer as one timer batch.
func (in *instance) OnTimers(ctx context.Context, domain int, timers []process.Event, out process.Collector) error {
	if in.dead != nil {
		return in.dead
	}
	if in.mod == nil {
		return errNotOpen
	}
	if len(timers) == 0 {
		return nil
	}
	var kind uint32
	switch domain {
	case abi.TimeDomainEvent:
		kind = abi.BatchEventTimers
	case abi.TimeDomainProcessing:
		kind = abi.BatchProcTimers
	default:
		return fmt.Errorf("wasmstream: plugin %q: OnTimers with time domain %d, want %d (event time) or %d (processing time)",
			in.p.name, domain, abi.TimeDomainEvent, abi.TimeDomainProcessing)
	}
	if in.fnOnTimer == nil {
		return fmt.Errorf("wasmstream: plugin %q: %d timers fired but the plugin does not export %s: "+
			"restore the timers with the plugin that registered them, or drop them from the checkpoint", in.p.name, len(timers), abi.ExportOnTimer)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	w := &in.w
	w.Reset(kind, 0)
	for i := range timers {
		t := &timers[i]
		w.Add(t.Seq, t.Time, t.Key, t.Value, nil, nil)
	}
	size := w.Size()
	if err := in.buffer(ctx, size); err != nil {
		return err
	}
	view, _ := in.mem.Read(in.bufPtr, uint32(size))
	w.AppendTo(view[:0])
	in.events, in.out, in.timerBatch = timers, out, true
	in.stack[0], in.stack[1] = uint64(in.bufPtr), uint64(size)
	err := in.callStatus(ctx, in.fnOnTimer, abi.ExportOnTimer, true)
	in.events, in.out, in.timerBatch = nil, nil, false
	return err
}
