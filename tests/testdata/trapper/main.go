// Command trapper is a test plugin that fails on purpose: it counts events
// per key in a value state and emits each event on the main output, until it
// meets the event whose field "n" equals config "trap_at". There it panics
// (config mode "panic", the default) or exits the Wasm instance with code 3
// (mode "exit"), after a state update so the host knows the event.
package main

import (
	"fmt"
	"os"

	wasmstream "github.com/wasmstream/wasmstream/plugins/go"
)

var (
	n    = wasmstream.NewField("n")
	seen = wasmstream.NewValueState("seen", wasmstream.Int64)
)

type trapper struct {
	trapAt int64
	exit   bool
}

func (t *trapper) Open(ctx *wasmstream.OpenContext) error {
	at, err := ctx.ConfigInt("trap_at", -1)
	if err != nil {
		return err
	}
	t.trapAt = at
	switch mode, _ := ctx.Config("mode"); mode {
	case "", "panic":
	case "exit":
		t.exit = true
	default:
		return fmt.Errorf("config mode=%q: want panic or exit", mode)
	}
	return nil
}

func (t *trapper) ProcessElement(ctx *wasmstream.Context, ev *wasmstream.Event) error {
	v, ok := ev.Int(n)
	if !ok {
		return fmt.Errorf("n is %s, want an integer", ev.Kind(n))
	}
	seen.AddInt64(ctx, 1)
	if v == t.trapAt {
		if t.exit {
			os.Exit(3)
		}
		panic(fmt.Sprintf("trapper: refusing event n=%d", v))
	}
	ctx.Emit(ctx.Key(), ev.Value())
	return nil
}

func init() { wasmstream.Register("trapper", &trapper{}) }

func main() {}
