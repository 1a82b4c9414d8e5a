//go:build !wasm

package wasmstream

import (
	"unsafe"

	"github.com/wasmstream/wasmstream/plugins/go/internal/bridge"
)

// Natively (go test, go vet, godoc examples) the host functions dispatch to
// the in-process host that the wasmstreamtest harness installs.

func host() bridge.Host {
	h := bridge.Current
	if h == nil {
		panic("wasmstream: no host: natively the SDK runs only under a wasmstreamtest harness; " +
			"create one with wasmstreamtest.New before processing events, or build the plugin with GOOS=wasip1 GOARCH=wasm")
	}
	return h
}

// mem returns the n guest bytes at p.
func mem(p unsafe.Pointer, n int32) []byte {
	if p == nil || n <= 0 {
		return nil
	}
	return unsafe.Slice((*byte)(p), n)
}

func valueGet(st, ev int32, out unsafe.Pointer, cap int32) int32 {
	return host().ValueGet(st, ev, mem(out, cap))
}
func valueSet(st, ev int32, p unsafe.Pointer, n int32) { host().ValueSet(st, ev, mem(p, n)) }
func valueClear(st, ev int32)                          { host().ValueClear(st, ev) }
func valueAddI64(st, ev int32, delta int64) int64      { return host().ValueAddI64(st, ev, delta) }
func valueAddF64(st, ev int32, delta float64) float64  { return host().ValueAddF64(st, ev, delta) }

func listGet(st, ev int32, out unsafe.Pointer, cap int32) int32 {
	return host().ListGet(st, ev, mem(out, cap))
}
func listAdd(st, ev int32, p unsafe.Pointer, n int32)    { host().ListAdd(st, ev, mem(p, n)) }
func listAddAll(st, ev int32, p unsafe.Pointer, n int32) { host().ListAddAll(st, ev, mem(p, n)) }
func listUpdate(st, ev int32, p unsafe.Pointer, n int32) { host().ListUpdate(st, ev, mem(p, n)) }
func listClear(st, ev int32)                             { host().ListClear(st, ev) }

func mapGet(st, ev int32, k unsafe.Pointer, klen int32, out unsafe.Pointer, cap int32) int32 {
	return host().MapGet(st, ev, mem(k, klen), mem(out, cap))
}
func mapPut(st, ev int32, k unsafe.Pointer, klen int32, v unsafe.Pointer, vlen int32) {
	host().MapPut(st, ev, mem(k, klen), mem(v, vlen))
}
func mapRemove(st, ev int32, k unsafe.Pointer, klen int32) { host().MapRemove(st, ev, mem(k, klen)) }
func mapContains(st, ev int32, k unsafe.Pointer, klen int32) int32 {
	return host().MapContains(st, ev, mem(k, klen))
}
func mapAddI64(st, ev int32, k unsafe.Pointer, klen int32, delta int64) int64 {
	return host().MapAddI64(st, ev, mem(k, klen), delta)
}
func mapAddF64(st, ev int32, k unsafe.Pointer, klen int32, delta float64) float64 {
	return host().MapAddF64(st, ev, mem(k, klen), delta)
}
func mapIter(st, ev, what int32, out unsafe.Pointer, cap int32) int32 {
	return host().MapIter(st, ev, what, mem(out, cap))
}
func mapIsEmpty(st, ev int32) int32 { return host().MapIsEmpty(st, ev) }
func mapClear(st, ev int32)         { host().MapClear(st, ev) }

func timerRegister(domain, ev int32, ts, jitter int64, p unsafe.Pointer, n int32) int64 {
	return host().TimerRegister(domain, ev, ts, jitter, mem(p, n))
}
func timerDelete(domain, ev int32, ts int64, p unsafe.Pointer, n int32) {
	host().TimerDelete(domain, ev, ts, mem(p, n))
}
func watermarkMs() int64 { return host().WatermarkMs() }

func emit(ev, out int32, k unsafe.Pointer, klen int32, v unsafe.Pointer, vlen int32) {
	host().Emit(ev, out, mem(k, klen), mem(v, vlen))
}
func reject(ev int32, reason unsafe.Pointer, n int32) { host().Reject(ev, mem(reason, n)) }
func nowMs() int64                                    { return host().NowMs() }
func hostLog(level int32, p unsafe.Pointer, n int32)  { host().Log(level, mem(p, n)) }
func fail(p unsafe.Pointer, n int32)                  { host().Fail(mem(p, n)) }

func extismConfig(key string) (string, bool) {
	if bridge.Current == nil {
		return "", false
	}
	return bridge.Current.Config(key)
}
