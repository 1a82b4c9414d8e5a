package plugin

import (
	"fmt"

	"github.com/tetratelabs/wazero/api"

	"github.com/wasmstream/wasmstream/abi"
	"github.com/wasmstream/wasmstream/host/process"
)

// Host functions abort the guest's call by panicking with an error; wazero
// recovers it and the export call fails with it. Argument decoding keeps
// its formatting on the failing path so the hot path does not allocate.

// badArg returns the error a host function aborts with.
func badArg(fn, format string, args ...any) error {
	return fmt.Errorf("%s: %s", fn, fmt.Sprintf(format, args...))
}

// guestSpan decodes an i32 pointer and i32 length passed by the guest and
// checks them against a linear memory of memSize bytes. neg reports a
// negative length; ok a span inside memory.
func guestSpan(ptr, n uint64, memSize uint32) (off, length uint32, neg, ok bool) {
	off = uint32(ptr)
	l := int32(uint32(n))
	if l < 0 {
		return off, 0, true, false
	}
	length = uint32(l)
	return off, length, false, uint64(off)+uint64(length) <= uint64(memSize)
}

// bytes returns a view of the guest memory span (ptr, n), or aborts the call.
func (in *instance) bytes(fn, what string, ptr, n uint64) []byte {
	// A negative length reads as a length of at least 2 GiB, which Read
	// refuses as it refuses any span outside memory.
	if b, ok := in.mem.Read(uint32(ptr), uint32(n)); ok && int32(uint32(n)) >= 0 {
		return b
	}
	off, _, neg, _ := guestSpan(ptr, n, in.mem.Size())
	in.badSpan(fn, what, off, n, neg)
	return nil
}

func (in *instance) badSpan(fn, what string, off uint32, n uint64, neg bool) {
	if neg {
		panic(badArg(fn, "%s length %d is negative", what, int32(uint32(n))))
	}
	panic(badArg(fn, "%s pointer %#x length %d outside guest memory (%d bytes)", what, off, uint32(n), in.mem.Size()))
}

// writeOut implements the result-size protocol: data is copied to (out, cap)
// only if it fits; the result is always its length.
func (in *instance) writeOut(fn string, out, capacity uint64, data []byte) uint64 {
	dst := in.bytes(fn, "output buffer", out, capacity)
	if len(data) <= len(dst) {
		copy(dst, data)
	}
	return api.EncodeI32(int32(len(data)))
}

// event returns the batch event with index v and remembers it for errors.
func (in *instance) event(fn string, v uint64) *process.Event {
	i := int32(uint32(v))
	if i < 0 || int(i) >= len(in.events) {
		in.lastEv = -1
		panic(badArg(fn, "event index %d out of range (the batch has %d events)", i, len(in.events)))
	}
	in.lastEv = int(i)
	return &in.events[i]
}

// keyed returns the batch event with index v for a state call and gives
// the backend its timestamp as the event time of its key group.
func (in *instance) keyed(fn string, v uint64) *process.Event {
	e := in.event(fn, v)
	in.state.SetEventTime(e.KeyGroup, e.Time)
	return e
}

// stateID checks that v names a state of kind want.
func (in *instance) stateID(fn string, v uint64, want abi.StateKind) int {
	st := int32(uint32(v))
	kinds := in.p.kinds
	if st < 0 || int(st) >= len(kinds) {
		panic(badArg(fn, "unknown state id %d (the contract declares %d states)", st, len(kinds)))
	}
	if kinds[st] != want {
		panic(badArg(fn, "state %d %q is a %s state, not a %s state", st, in.p.contract.States[st].Name, kinds[st], want))
	}
	return int(st)
}

func backendErr(fn string, err error) {
	if err != nil {
		panic(fmt.Errorf("%s: state backend: %w", fn, err))
	}
}

func boolResult(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// wasmstreamFuncs lists the host functions of module "wasmstream".
func wasmstreamFuncs() []hostFunc {
	return []hostFunc{
		{abi.FnValueGet, sig(i32, i32, i32, i32), sig(i32), func(in *instance, s []uint64) {
			e := in.keyed(abi.FnValueGet, s[1])
			st := in.stateID(abi.FnValueGet, s[0], abi.KindValue)
			v, found, err := in.state.Get(e.KeyGroup, st, e.Key)
			backendErr(abi.FnValueGet, err)
			if !found {
				in.bytes(abi.FnValueGet, "output buffer", s[2], s[3])
				s[0] = api.EncodeI32(abi.NotFound)
				return
			}
			s[0] = in.writeOut(abi.FnValueGet, s[2], s[3], v)
		}},
		{abi.FnValueSet, sig(i32, i32, i32, i32), nil, func(in *instance, s []uint64) {
			e := in.keyed(abi.FnValueSet, s[1])
			st := in.stateID(abi.FnValueSet, s[0], abi.KindValue)
			backendErr(abi.FnValueSet, in.state.Put(e.KeyGroup, st, e.Key, in.bytes(abi.FnValueSet, "value", s[2], s[3])))
		}},
		{abi.FnValueClear, sig(i32, i32), nil, func(in *instance, s []uint64) {
			e := in.keyed(abi.FnValueClear, s[1])
			st := in.stateID(abi.FnValueClear, s[0], abi.KindValue)
			backendErr(abi.FnValueClear, in.state.Delete(e.KeyGroup, st, e.Key))
		}},
		{abi.FnValueAddI64, sig(i32, i32, i64), sig(i64), func(in *instance, s []uint64) {
			e := in.keyed(abi.FnValueAddI64, s[1])
			st := in.stateID(abi.FnValueAddI64, s[0], abi.KindValue)
			n, err := in.state.AddInt64(e.KeyGroup, st, e.Key, int64(s[2]))
			backendErr(abi.FnValueAddI64, err)
			s[0] = uint64(n)
		}},
		{abi.FnValueAddF64, sig(i32, i32, f64), sig(f64), func(in *instance, s []uint64) {
			e := in.keyed(abi.FnValueAddF64, s[1])
			st := in.stateID(abi.FnValueAddF64, s[0], abi.KindValue)
			n, err := in.state.AddFloat64(e.KeyGroup, st, e.Key, api.DecodeF64(s[2]))
			backendErr(abi.FnValueAddF64, err)
			s[0] = api.EncodeF64(n)
		}},

		{abi.FnListGet, sig(i32, i32, i32, i32), sig(i32), func(in *instance, s []uint64) {
			e := in.keyed(abi.FnListGet, s[1])
			st := in.stateID(abi.FnListGet, s[0], abi.KindList)
			var err error
			in.scratch, err = in.state.ListAppendTo(in.scratch[:0], e.KeyGroup, st, e.Key)
			backendErr(abi.FnListGet, err)
			s[0] = in.writeOut(abi.FnListGet, s[2], s[3], in.scratch)
		}},
		{abi.FnListAdd, sig(i32, i32, i32, i32), nil, func(in *instance, s []uint64) {
			e := in.keyed(abi.FnListAdd, s[1])
			st := in.stateID(abi.FnListAdd, s[0], abi.KindList)
			backendErr(abi.FnListAdd, in.state.ListAdd(e.KeyGroup, st, e.Key, in.bytes(abi.FnListAdd, "item", s[2], s[3])))
		}},
		{abi.FnListAddAll, sig(i32, i32, i32, i32), nil, func(in *instance, s []uint64) {
			e := in.keyed(abi.FnListAddAll, s[1])
			st := in.stateID(abi.FnListAddAll, s[0], abi.KindList)
			b := in.encodedList(abi.FnListAddAll, s[2], s[3])
			backendErr(abi.FnListAddAll, in.state.ListAddAll(e.KeyGroup, st, e.Key, b))
		}},
		{abi.FnListUpdate, sig(i32, i32, i32, i32), nil, func(in *instance, s []uint64) {
			e := in.keyed(abi.FnListUpdate, s[1])
			st := in.stateID(abi.FnListUpdate, s[0], abi.KindList)
			b := in.encodedList(abi.FnListUpdate, s[2], s[3])
			backendErr(abi.FnListUpdate, in.state.ListReplace(e.KeyGroup, st, e.Key, b))
		}},
		{abi.FnListClear, sig(i32, i32), nil, func(in *instance, s []uint64) {
			e := in.keyed(abi.FnListClear, s[1])
			st := in.stateID(abi.FnListClear, s[0], abi.KindList)
			backendErr(abi.FnListClear, in.state.ListClear(e.KeyGroup, st, e.Key))
		}},

		{abi.FnMapGet, sig(i32, i32, i32, i32, i32, i32), sig(i32), func(in *instance, s []uint64) {
			e := in.keyed(abi.FnMapGet, s[1])
			st := in.stateID(abi.FnMapGet, s[0], abi.KindMap)
			k := in.bytes(abi.FnMapGet, "key", s[2], s[3])
			v, found, err := in.state.MapGet(e.KeyGroup, st, e.Key, k)
			backendErr(abi.FnMapGet, err)
			if !found {
				in.bytes(abi.FnMapGet, "output buffer", s[4], s[5])
				s[0] = api.EncodeI32(abi.NotFound)
				return
			}
			s[0] = in.writeOut(abi.FnMapGet, s[4], s[5], v)
		}},
		{abi.FnMapPut, sig(i32, i32, i32, i32, i32, i32), nil, func(in *instance, s []uint64) {
			e := in.keyed(abi.FnMapPut, s[1])
			st := in.stateID(abi.FnMapPut, s[0], abi.KindMap)
			k := in.bytes(abi.FnMapPut, "key", s[2], s[3])
			v := in.bytes(abi.FnMapPut, "value", s[4], s[5])
			backendErr(abi.FnMapPut, in.state.MapPut(e.KeyGroup, st, e.Key, k, v))
		}},
		{abi.FnMapRemove, sig(i32, i32, i32, i32), nil, func(in *instance, s []uint64) {
			e := in.keyed(abi.FnMapRemove, s[1])
			st := in.stateID(abi.FnMapRemove, s[0], abi.KindMap)
			k := in.bytes(abi.FnMapRemove, "key", s[2], s[3])
			backendErr(abi.FnMapRemove, in.state.MapDelete(e.KeyGroup, st, e.Key, k))
		}},
		{abi.FnMapContains, sig(i32, i32, i32, i32), sig(i32), func(in *instance, s []uint64) {
			e := in.keyed(abi.FnMapContains, s[1])
			st := in.stateID(abi.FnMapContains, s[0], abi.KindMap)
			k := in.bytes(abi.FnMapContains, "key", s[2], s[3])
			ok, err := in.state.MapContains(e.KeyGroup, st, e.Key, k)
			backendErr(abi.FnMapContains, err)
			s[0] = boolResult(ok)
		}},
		{abi.FnMapAddI64, sig(i32, i32, i32, i32, i64), sig(i64), func(in *instance, s []uint64) {
			e := in.keyed(abi.FnMapAddI64, s[1])
			st := in.stateID(abi.FnMapAddI64, s[0], abi.KindMap)
			k := in.bytes(abi.FnMapAddI64, "key", s[2], s[3])
			n, err := in.state.MapAddInt64(e.KeyGroup, st, e.Key, k, int64(s[4]))
			backendErr(abi.FnMapAddI64, err)
			s[0] = uint64(n)
		}},
		{abi.FnMapAddF64, sig(i32, i32, i32, i32, f64), sig(f64), func(in *instance, s []uint64) {
			e := in.keyed(abi.FnMapAddF64, s[1])
			st := in.stateID(abi.FnMapAddF64, s[0], abi.KindMap)
			k := in.bytes(abi.FnMapAddF64, "key", s[2], s[3])
			n, err := in.state.MapAddFloat64(e.KeyGroup, st, e.Key, k, api.DecodeF64(s[4]))
			backendErr(abi.FnMapAddF64, err)
			s[0] = api.EncodeF64(n)
		}},
		{abi.FnMapIter, sig(i32, i32, i32, i32, i32), sig(i32), func(in *instance, s []uint64) {
			e := in.keyed(abi.FnMapIter, s[1])
			st := in.stateID(abi.FnMapIter, s[0], abi.KindMap)
			what := int32(uint32(s[2]))
			if what != abi.IterKeys && what != abi.IterValues && what != abi.IterEntries {
				panic(badArg(abi.FnMapIter, "iteration mode %d, want 0 (keys), 1 (values) or 2 (entries)", what))
			}
			var err error
			in.scratch, err = in.state.MapAppendTo(in.scratch[:0], e.KeyGroup, st, e.Key, int(what))
			backendErr(abi.FnMapIter, err)
			s[0] = in.writeOut(abi.FnMapIter, s[3], s[4], in.scratch)
		}},
		{abi.FnMapIsEmpty, sig(i32, i32), sig(i32), func(in *instance, s []uint64) {
			e := in.keyed(abi.FnMapIsEmpty, s[1])
			st := in.stateID(abi.FnMapIsEmpty, s[0], abi.KindMap)
			empty, err := in.state.MapIsEmpty(e.KeyGroup, st, e.Key)
			backendErr(abi.FnMapIsEmpty, err)
			s[0] = boolResult(empty)
		}},
		{abi.FnMapClear, sig(i32, i32), nil, func(in *instance, s []uint64) {
			e := in.keyed(abi.FnMapClear, s[1])
			st := in.stateID(abi.FnMapClear, s[0], abi.KindMap)
			backendErr(abi.FnMapClear, in.state.MapClear(e.KeyGroup, st, e.Key))
		}},

		{abi.FnEmit, sig(i32, i32, i32, i32, i32, i32), nil, func(in *instance, s []uint64) {
			e := in.event(abi.FnEmit, s[0])
			port := int32(uint32(s[1]))
			if port < 0 || int(port) > len(in.p.contract.Outputs) {
				panic(badArg(abi.FnEmit, "unknown output port %d (the contract declares main and %d side outputs)", port, len(in.p.contract.Outputs)))
			}
			var key []byte
			if uint32(s[3]) != 0 {
				key = in.bytes(abi.FnEmit, "key", s[2], s[3])
			}
			v := in.bytes(abi.FnEmit, "value", s[4], s[5])
			in.out.Emit(int(port), e.Seq, key, v)
		}},
		{abi.FnReject, sig(i32, i32, i32), nil, func(in *instance, s []uint64) {
			e := in.event(abi.FnReject, s[0])
			if in.timerBatch {
				panic(badArg(abi.FnReject, "record %d is a fired timer, not an event: only events can be rejected; log the problem or fail the call instead", int32(uint32(s[0]))))
			}
			reason := in.bytes(abi.FnReject, "reason", s[1], s[2])
			in.out.Reject(e, string(reason))
		}},
		{abi.FnNowMs, nil, sig(i64), func(in *instance, s []uint64) {
			s[0] = uint64(in.nowMs())
		}},
		{abi.FnLog, sig(i32, i32, i32), nil, func(in *instance, s []uint64) {
			level := min(max(int(int32(uint32(s[0]))), abi.LogTrace), abi.LogError)
			msg := in.bytes(abi.FnLog, "message", s[1], s[2])
			if level >= in.p.opts.LogLevel {
				in.logf(level, string(msg))
			}
		}},
		{abi.FnFail, sig(i32, i32), nil, func(in *instance, s []uint64) {
			in.failMsg = string(in.bytes(abi.FnFail, "message", s[0], s[1]))
		}},
	}
}

// encodedList returns the guest's abi-encoded list at (ptr, n) after
// checking its encoding.
func (in *instance) encodedList(fn string, ptr, n uint64) []byte {
	b := in.bytes(fn, "encoded list", ptr, n)
	if _, err := abi.CountItems(b); err != nil {
		panic(badArg(fn, "encoded list at %#x (%d bytes) is malformed: %v", uint32(ptr), len(b), err))
	}
	return b
}
