// Command extism is a test plugin that uses the Extism Go PDK for config,
// logging, variables and errors, next to raw wasmstream imports.
package main

import (
	"fmt"
	"strings"
	"unsafe"

	pdk "github.com/extism/go-pdk"

	"github.com/wasmstream/wasmstream/abi"
)

//go:wasmimport wasmstream emit
func emit(ev, port int32, k uint32, kn int32, v uint32, vn int32)

var contract = (&abi.Contract{ABI: abi.Version, Name: "extism-guest"}).AppendJSON(nil)

var buf []byte

func ptr(b []byte) uint32 {
	if len(b) == 0 {
		return 0
	}
	return uint32(uintptr(unsafe.Pointer(&b[0])))
}

func view(p, n uint32) []byte { return unsafe.Slice((*byte)(unsafe.Pointer(uintptr(p))), n) }

func out(ev int32, format string, a ...any) {
	v := []byte(fmt.Sprintf(format, a...))
	emit(ev, abi.MainOutput, 0, 0, ptr(v), int32(len(v)))
}

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
	g, ok := pdk.GetConfig("greeting")
	pdk.Log(pdk.LogInfo, fmt.Sprintf("open: greeting=%q found=%v", g, ok))
	pdk.SetVarInt("opens", pdk.GetVarInt("opens")+1)
	return 0
}

//go:wasmexport ws_process
func process(p, n uint32) int32 {
	bt, err := abi.ParseBatch(view(p, n))
	if err != nil {
		pdk.SetErrorString(err.Error())
		return 1
	}
	for i := 0; i < bt.Len(); i++ {
		ev := int32(i)
		args := strings.SplitN(string(bt.Value(i)), " ", 2)
		arg := ""
		if len(args) > 1 {
			arg = args[1]
		}
		switch args[0] {
		case "config":
			if v, ok := pdk.GetConfig(arg); ok {
				out(ev, "config:%s", v)
			} else {
				out(ev, "config:absent")
			}
		case "log":
			pdk.Log(pdk.LogWarn, arg)
		case "debug":
			pdk.Log(pdk.LogDebug, arg)
		case "incr":
			n := pdk.GetVarInt("n") + 1
			pdk.SetVarInt("n", n)
			out(ev, "n:%d", n)
		case "opens":
			out(ev, "opens:%d", pdk.GetVarInt("opens"))
		case "setvar":
			pdk.SetVar("s", []byte(arg))
		case "getvar":
			out(ev, "var:%s", pdk.GetVar("s"))
		case "delvar":
			pdk.RemoveVar("s")
		case "input":
			out(ev, "input:%d", len(pdk.Input()))
		case "error":
			pdk.SetErrorString(arg)
			return 1
		case "http":
			res := pdk.NewHTTPRequest(pdk.MethodGet, "http://example.com/").Send()
			out(ev, "http:%d", res.Status())
		default:
			pdk.SetErrorString("unknown command " + args[0])
			return 1
		}
	}
	return 0
}

//go:wasmexport ws_close
func closeFn() int32 { return 0 }

func main() {}
