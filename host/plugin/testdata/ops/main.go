// Command ops is a test plugin that drives every wasmstream host function
// through raw imports. Each event's value is a ';'-separated list of
// commands; results are emitted on the main output keyed by the event key.
package main

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/wasmstream/wasmstream/abi"
)

//go:wasmimport wasmstream value_get
func valueGet(st, ev int32, out uint32, cap int32) int32

//go:wasmimport wasmstream value_set
func valueSet(st, ev int32, p uint32, n int32)

//go:wasmimport wasmstream value_clear
func valueClear(st, ev int32)

//go:wasmimport wasmstream value_add_i64
func valueAddI64(st, ev int32, d int64) int64

//go:wasmimport wasmstream value_add_f64
func valueAddF64(st, ev int32, d float64) float64

//go:wasmimport wasmstream list_get
func listGet(st, ev int32, out uint32, cap int32) int32

//go:wasmimport wasmstream list_add
func listAdd(st, ev int32, p uint32, n int32)

//go:wasmimport wasmstream list_add_all
func listAddAll(st, ev int32, p uint32, n int32)

//go:wasmimport wasmstream list_update
func listUpdate(st, ev int32, p uint32, n int32)

//go:wasmimport wasmstream list_clear
func listClear(st, ev int32)

//go:wasmimport wasmstream map_get
func mapGet(st, ev int32, k uint32, kn int32, out uint32, cap int32) int32

//go:wasmimport wasmstream map_put
func mapPut(st, ev int32, k uint32, kn int32, v uint32, vn int32)

//go:wasmimport wasmstream map_remove
func mapRemove(st, ev int32, k uint32, kn int32)

//go:wasmimport wasmstream map_contains
func mapContains(st, ev int32, k uint32, kn int32) int32

//go:wasmimport wasmstream map_add_i64
func mapAddI64(st, ev int32, k uint32, kn int32, d int64) int64

//go:wasmimport wasmstream map_add_f64
func mapAddF64(st, ev int32, k uint32, kn int32, d float64) float64

//go:wasmimport wasmstream map_iter
func mapIter(st, ev, what int32, out uint32, cap int32) int32

//go:wasmimport wasmstream map_is_empty
func mapIsEmpty(st, ev int32) int32

//go:wasmimport wasmstream map_clear
func mapClear(st, ev int32)

//go:wasmimport wasmstream emit
func emit(ev, port int32, k uint32, kn int32, v uint32, vn int32)

//go:wasmimport wasmstream reject
func reject(ev int32, p uint32, n int32)

//go:wasmimport wasmstream now_ms
func nowMs() int64

//go:wasmimport wasmstream timer_register
func timerRegister(domain, ev int32, ts, jitter int64, p uint32, n int32) int64

//go:wasmimport wasmstream timer_delete
func timerDelete(domain, ev int32, ts int64, p uint32, n int32)

//go:wasmimport wasmstream watermark_ms
func watermarkMs() int64

//go:wasmimport wasmstream log
func logMsg(level int32, p uint32, n int32)

//go:wasmimport wasmstream fail
func fail(p uint32, n int32)

// State ids, in contract order.
const (
	stV = 0 // value
	stL = 1 // list
	stM = 2 // map
	stN = 3 // value holding a number
)

var contract = (&abi.Contract{
	ABI:  abi.Version,
	Name: "ops",
	States: []abi.StateDesc{
		{Name: "v", Kind: abi.KindValue},
		{Name: "l", Kind: abi.KindList},
		{Name: "m", Kind: abi.KindMap},
		{Name: "n", Kind: abi.KindValue},
	},
	Outputs: []string{"side"},
	Fields:  []abi.FieldDesc{{Name: "user", Path: "user.id"}},
}).AppendJSON(nil)

func ptr(b []byte) uint32 {
	if len(b) == 0 {
		return 0
	}
	return uint32(uintptr(unsafe.Pointer(&b[0])))
}

func sptr(s string) (uint32, int32) {
	if s == "" {
		return 0, 0
	}
	return uint32(uintptr(unsafe.Pointer(unsafe.StringData(s)))), int32(len(s))
}

func view(p, n uint32) []byte { return unsafe.Slice((*byte)(unsafe.Pointer(uintptr(p))), n) }

var (
	buf  []byte
	info abi.OpenInfo
	hold [][]byte
)

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
	var err error
	info, err = abi.DecodeOpenInfo(view(p, n))
	if err != nil {
		return failf("open info: %v", err)
	}
	if msg, ok := info.Config["fail_open"]; ok {
		return failf("%s", msg)
	}
	return 0
}

//go:wasmexport ws_close
func closeFn() int32 {
	if msg, ok := info.Config["fail_close"]; ok {
		return failf("%s", msg)
	}
	return 0
}

func failf(format string, args ...any) int32 {
	p, n := sptr(fmt.Sprintf(format, args...))
	fail(p, n)
	return 1
}

// get runs a result-size protocol call with a 2-byte buffer first and
// retries with an exact one.
func get(call func(out uint32, cap int32) int32) ([]byte, bool) {
	small := make([]byte, 2)
	n := call(ptr(small), int32(len(small)))
	if n == abi.NotFound {
		return nil, false
	}
	if int(n) <= len(small) {
		return small[:n], true
	}
	big := make([]byte, n)
	if m := call(ptr(big), n); m != n {
		panic(fmt.Sprintf("size changed from %d to %d", n, m))
	}
	return big, true
}

func items(b []byte) string {
	var out []string
	for {
		item, rest, ok, err := abi.NextItem(b)
		if err != nil {
			return "malformed"
		}
		if !ok {
			return strings.Join(out, ",")
		}
		out = append(out, string(item))
		b = rest
	}
}

func encode(csv string) []byte {
	var b []byte
	for _, s := range strings.Split(csv, ",") {
		b = abi.AppendItem(b, []byte(s))
	}
	return b
}

//go:wasmexport ws_process
func process(p, n uint32) int32 {
	bt, err := abi.ParseBatch(view(p, n))
	if err != nil {
		return failf("batch: %v", err)
	}
	if bt.Kind() != abi.BatchEvents {
		return failf("ws_process: batch kind %d", bt.Kind())
	}
	for i := 0; i < bt.Len(); i++ {
		for _, cmd := range strings.Split(string(bt.Value(i)), ";") {
			if st := run(bt, int32(i), strings.Fields(cmd)); st != 0 {
				return st
			}
		}
	}
	return 0
}

// onTimer emits "fired:<kind>:<time>:<seq>:<payload>" for each fired timer
// and runs the payload as commands: '/' separates commands and ',' their
// arguments, as the payload is one argument of the treg command.
//
//go:wasmexport ws_on_timer
func onTimer(p, n uint32) int32 {
	bt, err := abi.ParseBatch(view(p, n))
	if err != nil {
		return failf("timer batch: %v", err)
	}
	if bt.Kind() != abi.BatchEventTimers && bt.Kind() != abi.BatchProcTimers || bt.NumFields() != 0 {
		return failf("ws_on_timer: batch kind %d with %d fields", bt.Kind(), bt.NumFields())
	}
	for i := 0; i < bt.Len(); i++ {
		key, payload := bt.Key(i), string(bt.Value(i))
		v := fmt.Sprintf("fired:%d:%d:%d:%s", bt.Kind(), bt.Timestamp(i), bt.Seq(i), payload)
		vp, vn := sptr(v)
		emit(int32(i), abi.MainOutput, ptr(key), int32(len(key)), vp, vn)
		for _, cmd := range strings.Split(payload, "/") {
			if st := run(bt, int32(i), strings.Split(cmd, ",")); st != 0 {
				return st
			}
		}
	}
	return 0
}

func run(bt abi.Batch, ev int32, args []string) int32 {
	key := bt.Key(int(ev))
	out := func(format string, a ...any) {
		v := fmt.Sprintf(format, a...)
		vp, vn := sptr(v)
		emit(ev, abi.MainOutput, ptr(key), int32(len(key)), vp, vn)
	}
	arg := func(i int) string {
		if i < len(args) {
			return args[i]
		}
		return ""
	}
	a1, a1n := sptr(arg(1))
	a2, a2n := sptr(arg(2))
	a3, a3n := sptr(arg(3))
	switch arg(0) {
	case "":
	case "vget":
		if v, ok := get(func(o uint32, c int32) int32 { return valueGet(stV, ev, o, c) }); ok {
			out("vget:%s", v)
		} else {
			out("vget:absent")
		}
	case "vset":
		valueSet(stV, ev, a1, a1n)
	case "vclear":
		valueClear(stV, ev)
	case "vaddi":
		d, _ := strconv.ParseInt(arg(1), 10, 64)
		out("vaddi:%d", valueAddI64(stN, ev, d))
	case "vaddf":
		d, _ := strconv.ParseFloat(arg(1), 64)
		out("vaddf:%g", valueAddF64(stN, ev, d))
	case "lget":
		v, _ := get(func(o uint32, c int32) int32 { return listGet(stL, ev, o, c) })
		out("lget:%s", items(v))
	case "ladd":
		listAdd(stL, ev, a1, a1n)
	case "laddall":
		b := encode(arg(1))
		listAddAll(stL, ev, ptr(b), int32(len(b)))
	case "lupdate":
		b := encode(arg(1))
		listUpdate(stL, ev, ptr(b), int32(len(b)))
	case "lclear":
		listClear(stL, ev)
	case "mget":
		if v, ok := get(func(o uint32, c int32) int32 { return mapGet(stM, ev, a1, a1n, o, c) }); ok {
			out("mget:%s", v)
		} else {
			out("mget:absent")
		}
	case "mput":
		mapPut(stM, ev, a1, a1n, a2, a2n)
	case "mremove":
		mapRemove(stM, ev, a1, a1n)
	case "mcontains":
		out("mcontains:%d", mapContains(stM, ev, a1, a1n))
	case "maddi":
		d, _ := strconv.ParseInt(arg(2), 10, 64)
		out("maddi:%d", mapAddI64(stM, ev, a1, a1n, d))
	case "maddf":
		d, _ := strconv.ParseFloat(arg(2), 64)
		out("maddf:%g", mapAddF64(stM, ev, a1, a1n, d))
	case "miter":
		what := map[string]int32{"keys": abi.IterKeys, "values": abi.IterValues, "entries": abi.IterEntries}[arg(1)]
		v, _ := get(func(o uint32, c int32) int32 { return mapIter(stM, ev, what, o, c) })
		out("miter:%s", items(v))
	case "misempty":
		out("misempty:%d", mapIsEmpty(stM, ev))
	case "mclear":
		mapClear(stM, ev)
	case "emit": // emit port key value; key "-" emits without a key
		port, _ := strconv.Atoi(arg(1))
		vp, vn := sptr(arg(3))
		if arg(2) == "-" {
			emit(ev, int32(port), 0, 0, vp, vn)
			return 0
		}
		emit(ev, int32(port), a2, a2n, vp, vn)
	case "reject":
		reject(ev, a1, a1n)
	case "now":
		out("now:%d", nowMs())
	case "treg": // treg domain ts jitter [payload]: emits the effective time
		d, _ := strconv.Atoi(arg(1))
		ts, _ := strconv.ParseInt(arg(2), 10, 64)
		jitter, _ := strconv.ParseInt(arg(3), 10, 64)
		pp, pn := sptr(arg(4))
		out("treg:%d", timerRegister(int32(d), ev, ts, jitter, pp, pn))
	case "tdel": // tdel domain ts [payload]
		d, _ := strconv.Atoi(arg(1))
		ts, _ := strconv.ParseInt(arg(2), 10, 64)
		timerDelete(int32(d), ev, ts, a3, a3n)
	case "wm":
		out("wm:%d", watermarkMs())
	case "log":
		level, _ := strconv.Atoi(arg(1))
		logMsg(int32(level), a2, a2n)
	case "print":
		fmt.Println(arg(1))
	case "eprint":
		fmt.Fprintln(os.Stderr, arg(1))
	case "fail":
		return failf("%s", arg(1))
	case "failok": // a message without a failure status is no failure
		failf("%s", arg(1))
	case "status":
		return 7
	case "field":
		f := bt.Field(int(ev), 0)
		switch f.Kind {
		case abi.FieldString, abi.FieldRaw:
			out("field:%s:%s", f.Kind, f.Str)
		case abi.FieldInt:
			out("field:int:%d", f.Int())
		default:
			out("field:%s", f.Kind)
		}
	case "meta":
		out("meta:%d:%d:%s", bt.Seq(int(ev)), bt.Timestamp(int(ev)), bt.Subject(int(ev)))
	case "info":
		out("info:%s:%d:%d:%s:%s", info.Job, info.Worker, info.Parallelism, strings.Join(info.Fields, ","), info.Config["greeting"])
	case "time":
		out("time:%d", time.Now().UnixMilli())
	case "big": // a value larger than the batch buffer
		v := strings.Repeat("x", 100000)
		vp, vn := sptr(v)
		valueSet(stV, ev, vp, vn)

	// Bad arguments.
	case "badptr":
		valueSet(stV, ev, 0x7fff0000, 12)
	case "neglen":
		valueSet(stV, ev, a1, -1)
	case "badev":
		valueClear(stV, 9999)
	case "badstate":
		valueClear(99, ev)
	case "wrongkind":
		valueClear(stL, ev)
	case "badport":
		emit(ev, 7, 0, 0, a1, a1n)
	case "badmode":
		mapIter(stM, ev, 9, 0, 0)
	case "badlist":
		b := []byte{0xff, 0xff, 0, 0, 1}
		listAddAll(stL, ev, ptr(b), int32(len(b)))
	case "badkeyptr":
		mapAddI64(stM, ev, 0x7fff0000, 12, 1)
	case "badout":
		valueGet(stV, ev, 0xfffffff0, 64)
	case "tbaddomain":
		timerRegister(2, ev, 1, 0, 0, 0)
	case "tbigpayload":
		b := make([]byte, abi.MaxTimerPayload+1)
		timerRegister(abi.TimeDomainEvent, ev, 1, 0, ptr(b), int32(len(b)))
	case "tbadev":
		timerDelete(abi.TimeDomainEvent, 77, 1, 0, 0)
	case "tbadptr":
		timerRegister(abi.TimeDomainEvent, ev, 1, 0, 0x7fff0000, 12)

	// Traps.
	case "panic":
		panic("boom: " + arg(1))
	case "oob":
		return int32(*(*byte)(unsafe.Pointer(uintptr(math.MaxUint32 - 3))))
	case "exit":
		os.Exit(3)
	case "alloc": // allocate and touch n MiB
		mb, _ := strconv.Atoi(arg(1))
		b := make([]byte, mb<<20)
		for j := 0; j < len(b); j += 4096 {
			b[j] = 1
		}
		hold = append(hold, b)
	case "loop":
		for x := 0; ; x++ {
			if x < 0 {
				return 0
			}
		}
	default:
		return failf("unknown command %q", arg(0))
	}
	return 0
}

func main() {}
