package wasmstreamtest

import (
	"fmt"

	"github.com/wasmstream/wasmstream/abi"
	wasmstream "github.com/wasmstream/wasmstream/plugins/go"
	"github.com/wasmstream/wasmstream/plugins/go/internal/bridge"
)

// The harness implements the host functions the way the Wasm host does. A
// host error (a bad state id, a state of another kind, an Add on a value
// that is not 8 bytes, an event index outside the batch) aborts the call, as
// a trap would: the SDK reports it as a plugin failure.

// host is the Harness seen as the SDK's host.
type host Harness

var _ bridge.Host = (*host)(nil)

type hostError struct{ msg string }

func (e hostError) Error() string { return e.msg }

func (h *host) trap(format string, args ...any) {
	panic(hostError{"host: " + fmt.Sprintf(format, args...)})
}

func (h *host) check(err error) {
	if err != nil {
		h.trap("%v", err)
	}
}

func (h *host) event(ev int32) *pending {
	if ev < 0 || int(ev) >= len(h.cur) {
		h.trap("event index %d outside the batch of %d events: state and output calls are valid only during ProcessElement", ev, len(h.cur))
	}
	p := &h.cur[ev]
	h.backend.SetEventTime(p.kg, p.time)
	return p
}

// answer copies v into out when it fits and returns its length.
func answer(v, out []byte) int32 {
	if len(v) <= len(out) {
		copy(out, v)
	}
	return int32(len(v))
}

func (h *host) ValueGet(st, ev int32, out []byte) int32 {
	p := h.event(ev)
	v, ok, err := h.backend.Get(p.kg, int(st), p.key)
	h.check(err)
	if !ok {
		return abi.NotFound
	}
	return answer(v, out)
}

func (h *host) ValueSet(st, ev int32, v []byte) {
	p := h.event(ev)
	h.check(h.backend.Put(p.kg, int(st), p.key, v))
}

func (h *host) ValueClear(st, ev int32) {
	p := h.event(ev)
	h.check(h.backend.Delete(p.kg, int(st), p.key))
}

func (h *host) ValueAddI64(st, ev int32, delta int64) int64 {
	p := h.event(ev)
	n, err := h.backend.AddInt64(p.kg, int(st), p.key, delta)
	h.check(err)
	return n
}

func (h *host) ValueAddF64(st, ev int32, delta float64) float64 {
	p := h.event(ev)
	n, err := h.backend.AddFloat64(p.kg, int(st), p.key, delta)
	h.check(err)
	return n
}

func (h *host) ListGet(st, ev int32, out []byte) int32 {
	p := h.event(ev)
	var err error
	h.tmp, err = h.backend.ListAppendTo(h.tmp[:0], p.kg, int(st), p.key)
	h.check(err)
	return answer(h.tmp, out)
}

func (h *host) ListAdd(st, ev int32, item []byte) {
	p := h.event(ev)
	h.check(h.backend.ListAdd(p.kg, int(st), p.key, item))
}

func (h *host) ListAddAll(st, ev int32, encoded []byte) {
	p := h.event(ev)
	h.check(h.backend.ListAddAll(p.kg, int(st), p.key, encoded))
}

func (h *host) ListUpdate(st, ev int32, encoded []byte) {
	p := h.event(ev)
	h.check(h.backend.ListReplace(p.kg, int(st), p.key, encoded))
}

func (h *host) ListClear(st, ev int32) {
	p := h.event(ev)
	h.check(h.backend.ListClear(p.kg, int(st), p.key))
}

func (h *host) MapGet(st, ev int32, k, out []byte) int32 {
	p := h.event(ev)
	v, ok, err := h.backend.MapGet(p.kg, int(st), p.key, k)
	h.check(err)
	if !ok {
		return abi.NotFound
	}
	return answer(v, out)
}

func (h *host) MapPut(st, ev int32, k, v []byte) {
	p := h.event(ev)
	h.check(h.backend.MapPut(p.kg, int(st), p.key, k, v))
}

func (h *host) MapRemove(st, ev int32, k []byte) {
	p := h.event(ev)
	h.check(h.backend.MapDelete(p.kg, int(st), p.key, k))
}

func (h *host) MapContains(st, ev int32, k []byte) int32 {
	p := h.event(ev)
	ok, err := h.backend.MapContains(p.kg, int(st), p.key, k)
	h.check(err)
	if ok {
		return 1
	}
	return 0
}

func (h *host) MapAddI64(st, ev int32, k []byte, delta int64) int64 {
	p := h.event(ev)
	n, err := h.backend.MapAddInt64(p.kg, int(st), p.key, k, delta)
	h.check(err)
	return n
}

func (h *host) MapAddF64(st, ev int32, k []byte, delta float64) float64 {
	p := h.event(ev)
	n, err := h.backend.MapAddFloat64(p.kg, int(st), p.key, k, delta)
	h.check(err)
	return n
}

func (h *host) MapIter(st, ev, what int32, out []byte) int32 {
	p := h.event(ev)
	if what != abi.IterKeys && what != abi.IterValues && what != abi.IterEntries {
		h.trap("map_iter: mode %d, want %d, %d or %d", what, abi.IterKeys, abi.IterValues, abi.IterEntries)
	}
	var err error
	h.tmp, err = h.backend.MapAppendTo(h.tmp[:0], p.kg, int(st), p.key, int(what))
	h.check(err)
	return answer(h.tmp, out)
}

func (h *host) MapIsEmpty(st, ev int32) int32 {
	p := h.event(ev)
	ok, err := h.backend.MapIsEmpty(p.kg, int(st), p.key)
	h.check(err)
	if ok {
		return 1
	}
	return 0
}

func (h *host) MapClear(st, ev int32) {
	p := h.event(ev)
	h.check(h.backend.MapClear(p.kg, int(st), p.key))
}

func (h *host) Emit(ev, out int32, k, v []byte) {
	p := h.event(ev)
	if out < 0 || int(out) > len(h.contract.Outputs) {
		h.trap("emit to output port %d: the contract declares ports 0..%d", out, len(h.contract.Outputs))
	}
	h.records = append(h.records, Record{Output: h.contract.OutputName(int(out)), Seq: p.seq, Key: string(k), Value: string(v)})
}

func (h *host) Reject(ev int32, reason []byte) {
	p := h.event(ev)
	if h.timers.in {
		h.trap("reject: record %d is a fired timer, not an event: only events can be rejected", ev)
	}
	h.rejected = append(h.rejected, Rejection{Seq: p.seq, Key: string(p.key), Value: string(p.value), Reason: string(reason)})
}

func (h *host) NowMs() int64 { return h.now }

func (h *host) Log(level int32, msg []byte) {
	h.logs = append(h.logs, LogLine{Level: wasmstream.Level(level), Msg: string(msg)})
	if h.t != nil {
		h.t.Logf("plugin log [%v] %s", wasmstream.Level(level), msg)
	}
}

func (h *host) Fail(msg []byte) { h.failMsg = string(msg) }

func (h *host) Config(key string) (string, bool) {
	v, ok := h.config[key]
	return v, ok
}
