package wasmstream

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/wasmstream/wasmstream/abi"
)

// Level is a log level.
type Level int32

// Log levels, lowest first. The host drops lines below the job's level.
const (
	LevelTrace Level = abi.LogTrace
	LevelDebug Level = abi.LogDebug
	LevelInfo  Level = abi.LogInfo
	LevelWarn  Level = abi.LogWarn
	LevelError Level = abi.LogError
)

// String returns the level's name.
func (l Level) String() string {
	switch l {
	case LevelTrace:
		return "trace"
	case LevelDebug:
		return "debug"
	case LevelInfo:
		return "info"
	case LevelWarn:
		return "warn"
	case LevelError:
		return "error"
	}
	return "level(" + strconv.Itoa(int(l)) + ")"
}

// Log sends one line to the host's log at level, with one host call and no
// allocation. It may be called from Open, ProcessElement and Close.
func Log(level Level, msg string) { hostLog(int32(level), strPtr(msg), int32(len(msg))) }

// Logf formats with fmt.Sprintf and logs the result. Formatting allocates:
// prefer Log on the per-event path.
func Logf(level Level, format string, args ...any) { Log(level, fmt.Sprintf(format, args...)) }

// Context is the per-event context handed to ProcessElement, and the
// per-timer context handed to OnTimer: it scopes keyed state and timers to
// the current event's (or timer's) key and emits outputs on its behalf. It
// is reused for the next event: do not keep it after the call returns.
type Context struct {
	ev       int32 // index of the event in the current batch
	rejected bool
}

// Key returns the current event's key (a view valid during the call).
func (c *Context) Key() []byte {
	if c.ev < 0 || int(c.ev) >= cur.ev.b.Len() {
		panic("wasmstream: Context used outside ProcessElement and OnTimer: the Context is valid only during the call it was passed to")
	}
	return cur.ev.b.Key(int(c.ev))
}

// Emit sends a record to the main output. The host copies key and value:
// the caller may reuse them right after the call. key may be nil.
func (c *Context) Emit(key, value []byte) {
	emit(c.ev, abi.MainOutput, ptr(key), int32(len(key)), ptr(value), int32(len(value)))
}

// EmitTo sends a record to a side output declared with NewSideOutput.
func (c *Context) EmitTo(out SideOutput, key, value []byte) {
	if out.port <= 0 {
		panic("wasmstream: EmitTo with a zero SideOutput: declare it with NewSideOutput as a package-level variable")
	}
	emit(c.ev, out.port, ptr(key), int32(len(key)), ptr(value), int32(len(value)))
}

// Reject sends the current event to the job's dead-letter subject with
// reason, once; processing continues with the next event. Returning an error
// from ProcessElement does the same with the error text, so Reject is for
// handlers that reject and still return nil, or want a fixed reason.
//
// In OnTimer there is no event to reject: Reject panics there.
func (c *Context) Reject(reason string) {
	if cur.inTimer {
		panic("wasmstream: Reject called in OnTimer: a fired timer is not an event; log the problem, or return an error to fail the job")
	}
	if c.rejected {
		return
	}
	c.rejected = true
	reject(c.ev, strPtr(reason), int32(len(reason)))
}

// Now returns the host's processing time in ms since the Unix epoch (one
// host call).
func (c *Context) Now() int64 { return nowMs() }

// Log logs msg at level (see the package-level Log).
func (c *Context) Log(level Level, msg string) { Log(level, msg) }

// Logf formats and logs; it allocates (see the package-level Logf).
func (c *Context) Logf(level Level, format string, args ...any) { Logf(level, format, args...) }

// SideOutput is a named output besides the main one. Declare side outputs as
// package-level variables; the host routes each to the subject the job
// configures for its name.
type SideOutput struct {
	port int32
	name string
}

// NewSideOutput declares a side output. name must be unique, not "main",
// and use letters, digits, '_', '-' and '.'.
func NewSideOutput(name string) SideOutput {
	declare("side output", name)
	c := abi.Contract{ABI: abi.Version, Name: "x", Outputs: append(registry.outputs[:len(registry.outputs):len(registry.outputs)], name)}
	if err := c.Validate(); err != nil {
		panic("wasmstream: NewSideOutput: " + err.Error())
	}
	registry.outputs = c.Outputs
	return SideOutput{port: int32(len(registry.outputs)), name: name}
}

// Name returns the side output's name.
func (o SideOutput) Name() string { return o.name }

// OpenContext is handed to Open: the job's config and where this instance
// runs.
type OpenContext struct {
	info abi.OpenInfo
}

// openCtx is kept so its config stays readable after Open.
var openCtx OpenContext

// JobName returns the name of the job running the plugin.
func (c *OpenContext) JobName() string { return c.info.Job }

// Worker returns this instance's worker index, from 0.
func (c *OpenContext) Worker() int { return c.info.Worker }

// Parallelism returns the number of workers of the job.
func (c *OpenContext) Parallelism() int { return c.info.Parallelism }

// Config returns the plugin config value for key. It reads the config the
// host sent with ws_open and falls back to the Extism config (pdk.GetConfig),
// which the host serves from the same job config.
func (c *OpenContext) Config(key string) (string, bool) {
	if v, ok := c.info.Config[key]; ok {
		return v, true
	}
	return extismConfig(key)
}

// ConfigInt returns the config value for key as an integer, or def when the
// key is absent. A value that is not a decimal integer is an error naming the
// key.
func (c *OpenContext) ConfigInt(key string, def int64) (int64, error) {
	s, ok := c.Config(key)
	if !ok {
		return def, nil
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("config %s=%q: want a decimal integer", key, s)
	}
	return n, nil
}

// Log logs msg at level (see the package-level Log).
func (c *OpenContext) Log(level Level, msg string) { Log(level, msg) }

// Logf formats and logs (see the package-level Logf).
func (c *OpenContext) Logf(level Level, format string, args ...any) { Logf(level, format, args...) }
