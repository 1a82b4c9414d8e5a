package plugin

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"

	"github.com/wasmstream/wasmstream/abi"
	"github.com/wasmstream/wasmstream/host/process"
	"github.com/wasmstream/wasmstream/statestore"
)

// instance is one Wasm instance of a plugin, the process.Function of one
// worker. Everything in it is used from the worker's goroutine only.
type instance struct {
	p   *Plugin
	mod api.Module
	mem api.Memory

	fnInit, fnDescribe, fnBuffer, fnOpen, fnProcess, fnClose api.Function
	fnOnTimer                                                api.Function // nil when not exported

	stack [2]uint64
	cctx  callCtx // reused call context when calls have no deadline

	// Batch buffer in guest memory, from the last ws_buffer call.
	bufPtr, bufCap uint32
	w              abi.BatchWriter

	// Per call.
	events  []process.Event
	out     process.Collector
	lastEv  int
	failMsg string
	scratch []byte
	// timerBatch is set while ws_on_timer runs: the batch records are
	// fired timers.
	timerBatch bool

	timers    statestore.TimerStore
	watermark func() int64

	state   statestore.Backend
	config  map[string]string
	clock   func() int64
	lastNs  int64
	envLog  func(level int, msg string)
	stdout  lineWriter
	stderr  lineWriter
	extism  extismState
	dead    error // set when the instance can no longer be called
	opened  bool
	closed  bool
	modName string
}

// instKey is the context key under which host functions find their instance
// when the context passed to them is not the instance's own callCtx.
type instKey struct{}

// callCtx is the context export calls run under: it carries the instance so
// host functions find it with one type assertion.
type callCtx struct {
	context.Context
	in *instance
}

func (c *callCtx) Value(key any) any {
	if _, ok := key.(instKey); ok {
		return c.in
	}
	return c.Context.Value(key)
}

// instanceOf returns the instance a host function is called for.
func instanceOf(ctx context.Context) *instance {
	if c, ok := ctx.(*callCtx); ok {
		return c.in
	}
	if in, ok := ctx.Value(instKey{}).(*instance); ok {
		return in
	}
	panic(errors.New("wasmstream host function called outside a plugin call"))
}

func (p *Plugin) newInstance() *instance {
	in := &instance{p: p, lastEv: -1}
	in.cctx.in = in
	in.stdout = lineWriter{in: in, level: abi.LogInfo}
	in.stderr = lineWriter{in: in, level: abi.LogWarn, keepTail: true}
	return in
}

// CallError is the error of a failed export call.
type CallError struct {
	Plugin string
	Export string
	// Status is the non-zero status the export returned; 0 when it did not
	// return (Err is set then).
	Status int32
	// Message is the failure message the guest set through fail or Extism's
	// error_set.
	Message string
	// Err is the trap, exit, timeout or host function error that aborted
	// the call. The instance is dead after it.
	Err error
	// Seq is the stream sequence of the event the guest last named in a host
	// call, if HasSeq.
	Seq    uint64
	HasSeq bool
	// FirstSeq and LastSeq delimit the batch being processed, if InBatch.
	FirstSeq, LastSeq uint64
	InBatch           bool
	// Stderr holds the last lines the guest wrote to stderr before it
	// trapped or exited, such as a Go panic message.
	Stderr string
}

func (e *CallError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "wasmstream: plugin %q: %s ", e.Plugin, e.Export)
	var exit *sys.ExitError
	switch {
	case e.Err == nil && e.Message != "":
		fmt.Fprintf(&b, "failed: %s", e.Message)
	case e.Err == nil:
		fmt.Fprintf(&b, "failed with status %d and no message", e.Status)
	case errors.As(e.Err, &exit) && exit.ExitCode() == sys.ExitCodeDeadlineExceeded:
		b.WriteString("timed out")
	case errors.As(e.Err, &exit) && exit.ExitCode() == sys.ExitCodeContextCanceled:
		b.WriteString("was canceled")
	case errors.As(e.Err, &exit):
		fmt.Fprintf(&b, "exited with code %d", exit.ExitCode())
	default:
		b.WriteString("trapped")
	}
	switch {
	case e.HasSeq && e.InBatch:
		fmt.Fprintf(&b, " at event seq %d (the event of its last host call; batch seqs %d..%d)", e.Seq, e.FirstSeq, e.LastSeq)
	case e.InBatch:
		fmt.Fprintf(&b, " in batch seqs %d..%d", e.FirstSeq, e.LastSeq)
	}
	// The wasm stack trace, if any, goes last.
	var msg, trace string
	if e.Err != nil && exit == nil {
		msg = e.Err.Error()
		if i := strings.Index(msg, "\nwasm stack trace:"); i >= 0 {
			msg, trace = msg[:i], msg[i:]
		}
		fmt.Fprintf(&b, ": %s", msg)
	}
	if e.Err != nil && e.Message != "" {
		fmt.Fprintf(&b, "; guest message: %s", e.Message)
	}
	if e.Stderr != "" {
		fmt.Fprintf(&b, "; stderr: %s", e.Stderr)
	}
	b.WriteString(trace)
	return b.String()
}

func (e *CallError) Unwrap() error { return e.Err }

var errNotOpen = errors.New("wasmstream: plugin function used before Open or after Close")

// instantiate creates the Wasm instance and runs _initialize.
func (in *instance) instantiate(ctx context.Context, clock func() int64, log func(int, string)) error {
	p := in.p
	in.clock = clock
	in.envLog = log
	in.modName = fmt.Sprintf("%s#%d", p.name, p.seq.Add(1))
	cfg := wazero.NewModuleConfig().
		WithName(in.modName).
		WithStartFunctions().
		WithStdout(&in.stdout).
		WithStderr(&in.stderr).
		WithRandSource(rand.Reader)
	if clock != nil {
		cfg = cfg.WithWalltime(func() (int64, int32) {
			ms := clock()
			return ms / 1000, int32(ms%1000) * 1e6
		}, sys.ClockResolution(time.Millisecond)).
			WithNanotime(func() int64 {
				// Monotonic, as WASI requires, even if the host clock steps back.
				ns := clock() * 1e6
				if ns < in.lastNs {
					ns = in.lastNs
				}
				in.lastNs = ns
				return ns
			}, sys.ClockResolution(time.Millisecond))
	} else {
		cfg = cfg.WithSysWalltime().WithSysNanotime()
	}
	mod, err := p.rt.InstantiateModule(ctx, p.compiled, cfg)
	if err != nil {
		return fmt.Errorf("instantiating: %w", err)
	}
	in.mod = mod
	in.mem = mod.ExportedMemory("memory")
	in.fnInit = mod.ExportedFunction(abi.ExportInitialize)
	in.fnDescribe = mod.ExportedFunction(abi.ExportDescribe)
	in.fnBuffer = mod.ExportedFunction(abi.ExportBuffer)
	in.fnOpen = mod.ExportedFunction(abi.ExportOpen)
	in.fnProcess = mod.ExportedFunction(abi.ExportProcess)
	in.fnClose = mod.ExportedFunction(abi.ExportClose)
	if p.hasTimer {
		in.fnOnTimer = mod.ExportedFunction(abi.ExportOnTimer)
	}
	if p.hasInit {
		if err := in.callStatus(ctx, in.fnInit, abi.ExportInitialize, false); err != nil {
			in.closeModule(ctx)
			return err
		}
	}
	return nil
}

func (in *instance) closeModule(ctx context.Context) {
	if in.mod != nil {
		_ = in.mod.Close(context.WithoutCancel(ctx))
		in.mod = nil
		in.mem = nil
	}
}

// call runs an export with in.stack as its parameters and results. An error
// is always a *CallError that left the instance dead.
func (in *instance) call(ctx context.Context, fn api.Function, export string) error {
	in.failMsg = ""
	in.lastEv = -1
	in.stderr.resetCall()
	in.extism.reset()
	var err error
	if t := in.p.opts.CallTimeout; t > 0 {
		// The runtime watches this context from another goroutine, so it
		// must not be the reused one.
		tctx, cancel := context.WithTimeout(ctx, t)
		err = fn.CallWithStack(&callCtx{Context: tctx, in: in}, in.stack[:])
		cancel()
	} else {
		in.cctx.Context = ctx
		err = fn.CallWithStack(&in.cctx, in.stack[:])
		in.cctx.Context = nil
	}
	in.extism.reset() // the arena lives for one call
	if err != nil {
		in.stdout.flush()
		in.stderr.flush()
		ce := in.callError(export)
		ce.Err = err
		ce.Stderr = in.stderr.summary()
		in.dead = ce
		in.closeModule(ctx)
		return ce
	}
	return nil
}

// callStatus runs an export and, when status is true, turns a non-zero
// status into an error carrying the message the guest set with fail or
// error_set during the call.
func (in *instance) callStatus(ctx context.Context, fn api.Function, export string, status bool) error {
	if err := in.call(ctx, fn, export); err != nil {
		return err
	}
	if st := int32(uint32(in.stack[0])); status && st != 0 {
		ce := in.callError(export)
		ce.Status = st
		ce.Message = in.failMsg
		return ce
	}
	return nil
}

func (in *instance) callError(export string) *CallError {
	ce := &CallError{Plugin: in.p.name, Export: export}
	if n := len(in.events); n > 0 {
		ce.InBatch = true
		ce.FirstSeq, ce.LastSeq = in.events[0].Seq, in.events[n-1].Seq
		if in.lastEv >= 0 && in.lastEv < n {
			ce.HasSeq = true
			ce.Seq = in.events[in.lastEv].Seq
		}
	}
	return ce
}

// buffer makes sure the guest's batch buffer holds at least size bytes.
func (in *instance) buffer(ctx context.Context, size int) error {
	if size > math.MaxInt32 {
		return fmt.Errorf("wasmstream: plugin %q: %d-byte input does not fit a 32-bit guest", in.p.name, size)
	}
	if uint32(size) <= in.bufCap {
		return nil
	}
	want := uint32(size)
	if g := 2 * uint64(in.bufCap); g > uint64(want) && g <= math.MaxInt32 {
		want = uint32(g)
	}
	want = max(want, 4096)
	in.stack[0] = uint64(want)
	if err := in.call(ctx, in.fnBuffer, abi.ExportBuffer); err != nil {
		return err
	}
	ptr := uint32(in.stack[0])
	if _, ok := in.mem.Read(ptr, want); !ok {
		ce := in.callError(abi.ExportBuffer)
		ce.Err = fmt.Errorf("returned pointer %#x for %d bytes outside guest memory (%d bytes)", ptr, want, in.mem.Size())
		in.dead = ce
		in.closeModule(ctx)
		return ce
	}
	in.bufPtr, in.bufCap = ptr, want
	return nil
}

// Open implements process.Function.
func (in *instance) Open(ctx context.Context, env process.Env) error {
	if in.opened {
		return fmt.Errorf("wasmstream: plugin %q: Open called twice", in.p.name)
	}
	if len(in.p.contract.States) > 0 && env.State == nil {
		return fmt.Errorf("wasmstream: plugin %q declares %d states but the worker has no state backend", in.p.name, len(in.p.contract.States))
	}
	in.opened = true
	in.state = env.State
	in.config = env.Config
	in.timers = env.Timers
	in.watermark = env.Watermark
	clock := env.Now
	if clock == nil {
		clock = in.p.opts.Clock
	}
	if err := in.open(ctx, clock, env); err != nil {
		in.closeModule(ctx)
		in.dead = err
		return err
	}
	return nil
}

func (in *instance) open(ctx context.Context, clock func() int64, env process.Env) error {
	if err := in.instantiate(ctx, clock, env.Log); err != nil {
		if _, ok := err.(*CallError); ok {
			return err
		}
		return fmt.Errorf("wasmstream: plugin %q: %w", in.p.name, err)
	}
	oi := abi.OpenInfo{Job: env.Job, Worker: env.Worker, Parallelism: env.Parallelism, Fields: env.Fields, Config: env.Config}
	b := oi.Append(nil)
	if err := in.buffer(ctx, len(b)); err != nil {
		return err
	}
	in.mem.Write(in.bufPtr, b)
	in.stack[0], in.stack[1] = uint64(in.bufPtr), uint64(len(b))
	return in.callStatus(ctx, in.fnOpen, abi.ExportOpen, true)
}

// ProcessBatch implements process.Function.
func (in *instance) ProcessBatch(ctx context.Context, events []process.Event, out process.Collector) error {
	if in.dead != nil {
		return in.dead
	}
	if in.mod == nil {
		return errNotOpen
	}
	if len(events) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	w := &in.w
	w.Reset(abi.BatchEvents, len(in.p.contract.Fields))
	for i := range events {
		e := &events[i]
		w.Add(e.Seq, e.Time, e.Key, e.Value, e.Subject, e.Fields)
	}
	size := w.Size()
	if err := in.buffer(ctx, size); err != nil {
		return err
	}
	view, _ := in.mem.Read(in.bufPtr, uint32(size))
	if enc := w.AppendTo(view[:0]); len(enc) != size || &enc[0] != &view[0] {
		copy(view, enc) // not reached: Size is the encoded size
	}
	in.events, in.out = events, out
	in.stack[0], in.stack[1] = uint64(in.bufPtr), uint64(size)
	err := in.callStatus(ctx, in.fnProcess, abi.ExportProcess, true)
	in.events, in.out = nil, nil
	return err
}

// Close implements process.Function.
func (in *instance) Close(ctx context.Context) error {
	if in.closed {
		return nil
	}
	in.closed = true
	if in.mod == nil {
		return nil
	}
	defer in.closeModule(ctx)
	return in.callStatus(ctx, in.fnClose, abi.ExportClose, true)
}

// logf passes a guest log line on, if its level is enabled.
func (in *instance) logf(level int, msg string) {
	if level < in.p.opts.LogLevel {
		return
	}
	if in.envLog != nil {
		in.envLog(level, msg)
	} else if in.p.opts.Log != nil {
		in.p.opts.Log(level, in.p.name, msg)
	}
}

func (in *instance) nowMs() int64 {
	if in.clock != nil {
		return in.clock()
	}
	return time.Now().UnixMilli()
}

// lineWriter turns a guest's stdout or stderr into log lines. For stderr
// it also remembers, per call, the start of a Go or TinyGo panic report and
// the last lines, to explain a trap.
type lineWriter struct {
	in       *instance
	level    int
	buf      []byte
	keepTail bool
	panicked []string // the panic line and the lines after it
	tail     []string // the last lines
}

const (
	maxLine    = 4096
	keptLines  = 6
	panicStart = "panic: "
	fatalStart = "fatal error: "
)

func (w *lineWriter) resetCall() {
	w.panicked = w.panicked[:0]
	w.tail = w.tail[:0]
}

func (w *lineWriter) Write(b []byte) (int, error) {
	n := len(b)
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			w.buf = append(w.buf, b...)
			if len(w.buf) >= maxLine {
				w.flush()
			}
			break
		}
		w.buf = append(w.buf, b[:i]...)
		w.emit()
		b = b[i+1:]
	}
	return n, nil
}

func (w *lineWriter) flush() {
	if len(w.buf) > 0 {
		w.emit()
	}
}

func (w *lineWriter) emit() {
	line := string(w.buf)
	w.buf = w.buf[:0]
	if w.keepTail {
		switch {
		case len(w.panicked) == 0 && (strings.HasPrefix(line, panicStart) || strings.HasPrefix(line, fatalStart)):
			w.panicked = append(w.panicked, line)
		case len(w.panicked) > 0 && len(w.panicked) < keptLines:
			w.panicked = append(w.panicked, line)
		}
		if len(w.tail) == keptLines {
			copy(w.tail, w.tail[1:])
			w.tail = w.tail[:keptLines-1]
		}
		w.tail = append(w.tail, line)
	}
	w.in.logf(w.level, line)
}

// summary returns what the guest wrote to stderr during the current call
// that explains a trap: a panic report's first lines, or else the last lines.
func (w *lineWriter) summary() string {
	lines := w.panicked
	if len(lines) == 0 {
		lines = w.tail
	}
	var b strings.Builder
	for _, l := range lines {
		if l = strings.TrimSpace(l); l != "" {
			if b.Len() > 0 {
				b.WriteString(" | ")
			}
			b.WriteString(l)
		}
	}
	return b.String()
}
