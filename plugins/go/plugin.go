package wasmstream

import (
	"strconv"

	"github.com/wasmstream/wasmstream/abi"
	"github.com/wasmstream/wasmstream/plugins/go/internal/bridge"
)

// Function is a keyed process function: the host calls ProcessElement once
// per event, in stream order per key, with keyed state scoped to the event's
// key (the model of Flink's KeyedProcessFunction).
//
// Returning an error from ProcessElement rejects that one event: the host
// sends it to the job's dead-letter subject with the error text as reason,
// and processing continues with the next event. A panic is a bug in the
// plugin and fails the job.
type Function interface {
	// Open is called once per instance before the first event, with the job's
	// config. An error fails the job with that message.
	Open(ctx *OpenContext) error
	// ProcessElement handles one event. ctx and ev are reused for the next
	// event: do not keep them, nor the byte slices they return, after the
	// call.
	ProcessElement(ctx *Context, ev *Event) error
}

// Closer is implemented by Functions that release resources when the
// instance shuts down. An error is logged by the host.
type Closer interface {
	Close() error
}

// ProcessFunc adapts a plain function to Function, for handlers without
// Open logic:
//
//	wasmstream.Register("passthrough", wasmstream.ProcessFunc(
//		func(ctx *wasmstream.Context, ev *wasmstream.Event) error {
//			ctx.Emit(ev.Key(), ev.Value())
//			return nil
//		}))
type ProcessFunc func(ctx *Context, ev *Event) error

// Open does nothing.
func (f ProcessFunc) Open(*OpenContext) error { return nil }

// ProcessElement calls f.
func (f ProcessFunc) ProcessElement(ctx *Context, ev *Event) error { return f(ctx, ev) }

// registry is everything the plugin declares, in declaration order.
var registry struct {
	name     string
	fn       Function
	timers   TimerHandler // fn, when it handles timers
	states   []abi.StateDesc
	outputs  []string
	fields   []abi.FieldDesc
	frozen   bool // ws_describe has been answered: declarations are final
	opened   bool
	describe []byte
}

// Register makes fn the plugin's function and name its contract name
// (letters, digits, '_', '-' and '.'; the host checks checkpoints against
// it). Call it once, from an init function of package main:
//
//	func init() { wasmstream.Register("dedup", &Dedup{}) }
//	func main() {}
//
// Plugins are built with -buildmode=c-shared, where main is never called.
func Register(name string, fn Function) {
	if registry.fn != nil {
		panic("wasmstream: Register called twice: a plugin registers exactly one Function, from one init function")
	}
	if fn == nil {
		panic("wasmstream: Register: nil Function")
	}
	c := abi.Contract{ABI: abi.Version, Name: name}
	if err := c.Validate(); err != nil {
		panic("wasmstream: Register: " + err.Error())
	}
	registry.name, registry.fn = name, fn
	registry.timers, _ = fn.(TimerHandler)
}

// declare checks that a declaration happens before the contract is sent.
func declare(what, name string) {
	if registry.frozen {
		panic("wasmstream: " + what + " " + strconv.Quote(name) + " declared after the plugin was described to the host: " +
			"declare states, fields and side outputs as package-level variables")
	}
}

func init() {
	bridge.Plugin = bridge.Guest{
		Describe: describe,
		Buffer:   buffer,
		Open:     open,
		Process:  processBatch,
		OnTimer:  onTimers,
		Close:    closeFn,
		Register: func(name string, fn any) {
			if name != "" {
				registry.name = name
			}
			registry.fn, _ = fn.(Function)
			registry.timers, _ = fn.(TimerHandler)
			registry.opened = false
		},
		Registered: func() (string, any) {
			if registry.fn == nil {
				return registry.name, nil
			}
			return registry.name, registry.fn
		},
	}
}
