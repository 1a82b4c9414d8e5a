// Command sdkplain is a Go SDK plugin that uses no timers: a per-key
// counter that emits every count.
package main

import (
	"strconv"

	wasmstream "github.com/wasmstream/wasmstream/plugins/go"
)

var count = wasmstream.NewValueState("count", wasmstream.Int64)

type counter struct{ buf []byte }

func (c *counter) Open(*wasmstream.OpenContext) error { return nil }

func (c *counter) ProcessElement(ctx *wasmstream.Context, ev *wasmstream.Event) error {
	c.buf = strconv.AppendInt(c.buf[:0], count.AddInt64(ctx, 1), 10)
	ctx.Emit(ctx.Key(), c.buf)
	return nil
}

func init() { wasmstream.Register("sdkplain", &counter{}) }

func main() {}
