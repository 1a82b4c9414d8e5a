package wasmstream

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unsafe"

	"github.com/wasmstream/wasmstream/abi"
)

// The SDK owns the plugin's exports (abi.Export*). Each //go:wasmexport
// function is a thin wrapper that turns (pointer, length) pairs into slices
// of the ws_buffer buffer and calls the entry point that the native
// wasmstreamtest harness calls too.

// inBuf is the guest-owned buffer the host writes open info and batches
// into (ws_buffer). It stays referenced here so the collector keeps it.
var inBuf []byte

// addr returns the linear-memory address of b's first byte.
func addr(b []byte) int32 { return int32(uintptr(unsafe.Pointer(unsafe.SliceData(b)))) }

// buffer returns the input buffer with room for size bytes.
func buffer(size int) []byte {
	if size < 0 {
		size = 0
	}
	if cap(inBuf) < size || inBuf == nil {
		inBuf = make([]byte, max(size+size/4, 64<<10))
	}
	return inBuf[:size]
}

// guestBytes returns the n bytes at ptr, which must lie inside inBuf.
func guestBytes(ptr, n int32) ([]byte, bool) {
	if inBuf == nil || n < 0 {
		return nil, false
	}
	off := ptr - addr(inBuf)
	if off < 0 || int64(off)+int64(n) > int64(len(inBuf)) {
		return nil, false
	}
	return inBuf[off : off+n : off+n], true
}

const errOutsideBuffer = "wasmstream: the payload is not inside the buffer returned by ws_buffer: the host must call ws_buffer and write the payload there"

//go:wasmexport ws_describe
func wsDescribe() int64 {
	b := describe()
	return int64(uint64(uint32(addr(b)))<<32 | uint64(uint32(len(b))))
}

//go:wasmexport ws_buffer
func wsBuffer(size int32) int32 { return addr(buffer(int(size))) }

//go:wasmexport ws_open
func wsOpen(ptr, n int32) int32 {
	b, ok := guestBytes(ptr, n)
	if !ok {
		failString(errOutsideBuffer)
		return 1
	}
	return open(b)
}

//go:wasmexport ws_process
func wsProcess(ptr, n int32) int32 {
	b, ok := guestBytes(ptr, n)
	if !ok {
		failString(errOutsideBuffer)
		return 1
	}
	return processBatch(b)
}

// ws_on_timer is exported by every plugin; the host calls it only for
// timers the plugin registered, and registering a timer needs a Function
// that implements TimerHandler. The timer host functions are linked into
// the module only when the plugin calls them.
//
//go:wasmexport ws_on_timer
func wsOnTimer(ptr, n int32) int32 {
	b, ok := guestBytes(ptr, n)
	if !ok {
		failString(errOutsideBuffer)
		return 1
	}
	return onTimers(b)
}

//go:wasmexport ws_close
func wsClose() int32 { return closeFn() }

const errNoFunction = "wasmstream: no Function registered: call wasmstream.Register(name, fn) from an init function of package main " +
	"(plugins are built with -buildmode=c-shared, where main never runs)"

// describe freezes the declarations and returns the contract JSON.
func describe() []byte {
	if registry.fn == nil {
		failString(errNoFunction)
	}
	registry.frozen = true
	c := abi.Contract{
		ABI:     abi.Version,
		Name:    registry.name,
		States:  registry.states,
		Outputs: registry.outputs,
		Fields:  registry.fields,
	}
	registry.describe = c.AppendJSON(registry.describe[:0])
	return registry.describe
}

// open decodes the open info, checks it against the declarations and calls
// the function's Open.
func open(b []byte) (rc int32) {
	registry.opened = false
	// Worker instances are opened without ws_describe (the host describes a
	// probe instance): declarations are final from here on too.
	registry.frozen = true
	if registry.fn == nil {
		failString(errNoFunction)
		return 1
	}
	info, err := abi.DecodeOpenInfo(b)
	if err != nil {
		failString("wasmstream: ws_open: " + err.Error() + ": the host speaks another ABI revision; rebuild the plugin with the SDK version matching the host")
		return 1
	}
	if !slices.Equal(info.Fields, fieldNames()) {
		failString(fmt.Sprintf("wasmstream: the host extracts fields [%s] but the plugin declares [%s] (slot order): "+
			"redeploy the job so its field list matches the plugin's contract", strings.Join(info.Fields, " "), strings.Join(fieldNames(), " ")))
		return 1
	}
	openCtx = OpenContext{info: info}
	defer recoverFail(&rc, "Open")
	if err := registry.fn.Open(&openCtx); err != nil {
		failString("wasmstream: Open: " + err.Error())
		return 1
	}
	registry.opened = true
	return 0
}

func fieldNames() []string {
	names := make([]string, len(registry.fields))
	for i, f := range registry.fields {
		names[i] = f.Name
	}
	return names
}

// cur is the per-event state, reused for every event so that the event loop
// does not allocate.
var cur struct {
	ctx     Context
	ev      Event
	timer   Timer
	in      bool // inside ProcessElement
	inTimer bool // inside OnTimer
}

// processBatch runs ProcessElement over every event of an encoded batch.
func processBatch(b []byte) (rc int32) {
	if !registry.opened {
		failString("wasmstream: ws_process called before a successful ws_open")
		return 1
	}
	bt, err := abi.ParseBatch(b)
	if err != nil {
		failString("wasmstream: ws_process: " + err.Error() + ": the host and the SDK disagree on the batch layout; rebuild the plugin with the SDK version matching the host")
		return 1
	}
	if bt.Kind() != abi.BatchEvents {
		failString("wasmstream: ws_process: batch kind " + itoa(int64(bt.Kind())) + " is not an event batch: the host must send timer batches to ws_on_timer")
		return 1
	}
	if bt.NumFields() != len(registry.fields) {
		failString("wasmstream: ws_process: the batch has " + itoa(int64(bt.NumFields())) + " field slots per event, the plugin declares " +
			itoa(int64(len(registry.fields))) + ": the host and the plugin contract disagree")
		return 1
	}
	defer recoverFail(&rc, "ProcessElement")
	ctx, ev, fn := &cur.ctx, &cur.ev, registry.fn
	ev.b = bt
	cur.in = true
	for i := 0; i < bt.Len(); i++ {
		ev.i = i
		ctx.ev = int32(i)
		ctx.rejected = false
		if err := fn.ProcessElement(ctx, ev); err != nil && !ctx.rejected {
			msg := err.Error()
			reject(int32(i), strPtr(msg), int32(len(msg)))
		}
	}
	cur.in = false
	ctx.ev = -1
	ev.b = abi.Batch{}
	return 0
}

// closeFn calls the function's Close when it implements Closer.
func closeFn() (rc int32) {
	registry.opened = false
	c, ok := registry.fn.(Closer)
	if !ok {
		return 0
	}
	defer recoverFail(&rc, "Close")
	if err := c.Close(); err != nil {
		failString("wasmstream: Close: " + err.Error())
		return 1
	}
	return 0
}

// recoverFail turns a panic in user code into a fail call and a non-zero
// return code, so the host reports the panic message instead of a trap.
func recoverFail(rc *int32, where string) {
	r := recover()
	if r == nil {
		return
	}
	msg := fmt.Sprintf("wasmstream: %s panicked: %v", where, r)
	switch {
	case cur.in:
		msg = fmt.Sprintf("wasmstream: %s panicked on event seq %d: %v", where, cur.ev.Seq(), r)
	case cur.inTimer:
		msg = fmt.Sprintf("wasmstream: %s panicked on the %s-time timer at %d of key %q: %v", where, cur.timer.Domain(), cur.timer.Time(), cur.timer.Key(), r)
	}
	cur.in, cur.inTimer = false, false
	cur.ctx.ev = -1
	failString(msg)
	*rc = 1
}

func failString(msg string) { fail(strPtr(msg), int32(len(msg))) }

// ptr returns the address of b's backing array (nil for a nil slice).
func ptr(b []byte) unsafe.Pointer { return unsafe.Pointer(unsafe.SliceData(b)) }

// strPtr returns the address of s's bytes.
func strPtr(s string) unsafe.Pointer { return unsafe.Pointer(unsafe.StringData(s)) }

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
