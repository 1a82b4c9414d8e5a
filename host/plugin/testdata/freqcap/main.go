// Command freqcap is a benchmark plugin in the shape of a frequency cap:
// per key it counts events by value (a campaign id) in a map state with one
// map_add_i64 per event and emits the event when its count reaches the cap.
// Config "now_calls" adds that many now_ms calls per event, to measure the
// cost of a host call.
package main

import (
	"strconv"
	"unsafe"

	"github.com/wasmstream/wasmstream/abi"
)

//go:wasmimport wasmstream map_add_i64
func mapAddI64(st, ev int32, k uint32, kn int32, d int64) int64

//go:wasmimport wasmstream emit
func emit(ev, port int32, k uint32, kn int32, v uint32, vn int32)

//go:wasmimport wasmstream now_ms
func nowMs() int64

const limit = 3

var contract = (&abi.Contract{
	ABI:    abi.Version,
	Name:   "freqcap",
	States: []abi.StateDesc{{Name: "counts", Kind: abi.KindMap}},
}).AppendJSON(nil)

var (
	buf      []byte
	nowCalls int
)

func ptr(b []byte) uint32 {
	if len(b) == 0 {
		return 0
	}
	return uint32(uintptr(unsafe.Pointer(&b[0])))
}

func view(p, n uint32) []byte { return unsafe.Slice((*byte)(unsafe.Pointer(uintptr(p))), n) }

//go:wasmexport ws_describe
func describe() uint64 { return uint64(ptr(contract))<<32 | uint64(len(contract)) }

//go:wasmexport ws_buffer
func buffer(size int32) uint32 {
	if int(size) > cap(buf) {
		buf = make([]byte, size)
	}
	return ptr(buf[:cap(buf)])
}

//go:wasmexport ws_open
func open(p, n uint32) int32 {
	info, err := abi.DecodeOpenInfo(view(p, n))
	if err != nil {
		return 1
	}
	nowCalls, _ = strconv.Atoi(info.Config["now_calls"])
	return 0
}

//go:wasmexport ws_process
func process(p, n uint32) int32 {
	bt, err := abi.ParseBatch(view(p, n))
	if err != nil {
		return 1
	}
	for i := 0; i < bt.Len(); i++ {
		v := bt.Value(i)
		if mapAddI64(0, int32(i), ptr(v), int32(len(v)), 1) == limit {
			k := bt.Key(i)
			emit(int32(i), abi.MainOutput, ptr(k), int32(len(k)), ptr(v), int32(len(v)))
		}
		for j := 0; j < nowCalls; j++ {
			nowMs()
		}
	}
	return 0
}

//go:wasmexport ws_close
func closeFn() int32 { return 0 }

func main() {}
