// Package wasmstream is the Go SDK for writing wasmstream plugins: keyed
// process functions, compiled to WebAssembly, that the wasmstream host runs
// on a stream of JSON events (the model of Flink's KeyedProcessFunction).
//
// A plugin is a package main that declares its keyed states, the event
// fields it reads and its side outputs as package-level variables, and
// registers a Function from an init function:
//
//	package main
//
//	import (
//		"errors"
//		"strconv"
//
//		wasmstream "github.com/wasmstream/wasmstream/plugins/go"
//	)
//
//	var (
//		amount = wasmstream.NewField("amount") // extracted by the host
//		total  = wasmstream.NewValueState("total", wasmstream.Int64)
//		big    = wasmstream.NewSideOutput("big")
//	)
//
//	type Totals struct {
//		limit int64
//		buf   []byte // reused output buffer
//	}
//
//	func (t *Totals) Open(ctx *wasmstream.OpenContext) (err error) {
//		t.limit, err = ctx.ConfigInt("limit", 1000)
//		return err
//	}
//
//	func (t *Totals) ProcessElement(ctx *wasmstream.Context, ev *wasmstream.Event) error {
//		n, ok := ev.Int(amount)
//		if !ok {
//			return errors.New("amount: want an integer") // the event goes to the dead-letter subject
//		}
//		sum := total.AddInt64(ctx, n) // one host call
//		if sum >= t.limit {
//			t.buf = strconv.AppendInt(t.buf[:0], sum, 10)
//			ctx.EmitTo(big, ctx.Key(), t.buf)
//			total.Clear(ctx)
//		}
//		return nil
//	}
//
//	func init() { wasmstream.Register("totals", &Totals{}) }
//
//	func main() {}
//
// Build it as a WASI reactor:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o totals.wasm .
//
// and test it natively with package wasmstreamtest, which runs the same code
// against an in-process host.
//
// # Declarations
//
// The host learns what the plugin declares through the contract the SDK
// answers to ws_describe: states in declaration order (a state's id is its
// position), side outputs, and fields in slot order. Declarations made after
// the plugin has been described panic, so keep them at package level.
// Renaming or reordering states changes what a restored checkpoint maps to.
//
// # Events and fields
//
// ProcessElement receives the event and a Context scoped to the event's key.
// Fields declared with NewField are extracted by the host before the batch
// reaches the plugin; Event.Int, Float, String, Bytes and Bool read them
// without parsing or host calls. Other parts of the payload are reachable
// through Event.JSON, an allocation-free scanner. Byte slices and strings
// from an Event are views valid only during ProcessElement.
//
// # State
//
// ValueState, ListState and MapState hold keyed state in the host's state
// backend; every operation is one host call scoped to ctx's key. Values are
// encoded by a Codec: Int64, Float64, Bool, String, Bytes, or JSONCodec for
// structured values. AddInt64 and AddFloat64 (on Int64 and Float64 states)
// update a number in place on the host, in one call, without a
// read-modify-write round trip.
//
// # Timers
//
// A Function that implements TimerHandler can register timers for the
// current key: Context.RegisterEventTimer fires when the watermark
// (Context.Watermark) reaches the given time, Context.RegisterProcessingTimer
// when the host's clock (Context.Now) does. A timer carries an optional
// payload of up to MaxTimerPayload bytes; at most one timer exists per key,
// domain, time and payload, so registering the same timer again is free of
// effect. The Jitter variants spread timers that many keys register for the
// same time. When a timer fires, OnTimer runs with a Context scoped to the
// timer's key: state, Emit and timer calls work as in ProcessElement.
// Timers are keyed state: checkpoints include them. A plugin that never
// registers a timer does not import the timer host functions.
//
// # Performance
//
// The SDK's per-event and per-timer paths make no allocation: events are decoded in
// place from the batch buffer, state keys and values are encoded into reused
// scratch buffers, and reads answer into a reused buffer that grows to the
// largest value seen. A host call costs about 100 ns from Wasm and a guest
// allocation several times that, so prefer AddInt64 over Value plus Update,
// extracted fields over parsing the payload, and strconv.Append* into a
// reused buffer over fmt or encoding/json when building outputs.
//
// # Errors
//
// An error returned by ProcessElement rejects that event: the host
// publishes it to the job's dead-letter subject with the error text, and
// the batch continues. A panic fails the job with the panic message and the
// event's sequence number. An error from Open fails the job at start.
//
// # Extism
//
// The host also implements the Extism host functions for config and
// logging, so github.com/extism/go-pdk works inside a plugin; OpenContext's
// Config falls back to pdk.GetConfig for keys the open info lacks.
package wasmstream
