//go:build wasm

package wasmstream

import (
	"unsafe"

	pdk "github.com/extism/go-pdk"
)

// Host functions of import module "wasmstream" (abi.ImportModule). Pointers
// and lengths address this module's linear memory; the host never keeps them
// past the call, hence //go:noescape.

//go:wasmimport wasmstream value_get
//go:noescape
func valueGet(st, ev int32, out unsafe.Pointer, cap int32) int32

//go:wasmimport wasmstream value_set
//go:noescape
func valueSet(st, ev int32, p unsafe.Pointer, n int32)

//go:wasmimport wasmstream value_clear
func valueClear(st, ev int32)

//go:wasmimport wasmstream value_add_i64
func valueAddI64(st, ev int32, delta int64) int64

//go:wasmimport wasmstream value_add_f64
func valueAddF64(st, ev int32, delta float64) float64

//go:wasmimport wasmstream list_get
//go:noescape
func listGet(st, ev int32, out unsafe.Pointer, cap int32) int32

//go:wasmimport wasmstream list_add
//go:noescape
func listAdd(st, ev int32, p unsafe.Pointer, n int32)

//go:wasmimport wasmstream list_add_all
//go:noescape
func listAddAll(st, ev int32, p unsafe.Pointer, n int32)

//go:wasmimport wasmstream list_update
//go:noescape
func listUpdate(st, ev int32, p unsafe.Pointer, n int32)

//go:wasmimport wasmstream list_clear
func listClear(st, ev int32)

//go:wasmimport wasmstream map_get
//go:noescape
func mapGet(st, ev int32, k unsafe.Pointer, klen int32, out unsafe.Pointer, cap int32) int32

//go:wasmimport wasmstream map_put
//go:noescape
func mapPut(st, ev int32, k unsafe.Pointer, klen int32, v unsafe.Pointer, vlen int32)

//go:wasmimport wasmstream map_remove
//go:noescape
func mapRemove(st, ev int32, k unsafe.Pointer, klen int32)

//go:wasmimport wasmstream map_contains
//go:noescape
func mapContains(st, ev int32, k unsafe.Pointer, klen int32) int32

//go:wasmimport wasmstream map_add_i64
//go:noescape
func mapAddI64(st, ev int32, k unsafe.Pointer, klen int32, delta int64) int64

//go:wasmimport wasmstream map_add_f64
//go:noescape
func mapAddF64(st, ev int32, k unsafe.Pointer, klen int32, delta float64) float64

//go:wasmimport wasmstream map_iter
//go:noescape
func mapIter(st, ev, what int32, out unsafe.Pointer, cap int32) int32

//go:wasmimport wasmstream map_is_empty
func mapIsEmpty(st, ev int32) int32

//go:wasmimport wasmstream map_clear
func mapClear(st, ev int32)

//go:wasmimport wasmstream timer_register
//go:noescape
func timerRegister(domain, ev int32, ts, jitter int64, p unsafe.Pointer, n int32) int64

//go:wasmimport wasmstream timer_delete
//go:noescape
func timerDelete(domain, ev int32, ts int64, p unsafe.Pointer, n int32)

//go:wasmimport wasmstream watermark_ms
func watermarkMs() int64

//go:wasmimport wasmstream emit
//go:noescape
func emit(ev, out int32, k unsafe.Pointer, klen int32, v unsafe.Pointer, vlen int32)

//go:wasmimport wasmstream reject
//go:noescape
func reject(ev int32, reason unsafe.Pointer, n int32)

//go:wasmimport wasmstream now_ms
func nowMs() int64

//go:wasmimport wasmstream log
//go:noescape
func hostLog(level int32, p unsafe.Pointer, n int32)

//go:wasmimport wasmstream fail
//go:noescape
func fail(p unsafe.Pointer, n int32)

// extismConfig reads plugin config through the Extism PDK (config_get of
// abi.ExtismModule), which the wasmstream host implements natively.
func extismConfig(key string) (string, bool) { return pdk.GetConfig(key) }
