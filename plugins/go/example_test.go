package wasmstream_test

import (
	"errors"
	"fmt"
	"strconv"

	wasmstream "github.com/wasmstream/wasmstream/plugins/go"
	"github.com/wasmstream/wasmstream/plugins/go/wasmstreamtest"
)

var (
	cents = wasmstream.NewField("cents") // extracted by the host
	spent = wasmstream.NewValueState("spent", wasmstream.Int64)
	big   = wasmstream.NewSideOutput("big")
)

// Totals sums each account's spending and reports accounts that reach a
// limit.
type Totals struct {
	limit int64
	buf   []byte // reused output buffer
}

func (t *Totals) Open(ctx *wasmstream.OpenContext) (err error) {
	t.limit, err = ctx.ConfigInt("limit", 1000)
	return err
}

func (t *Totals) ProcessElement(ctx *wasmstream.Context, ev *wasmstream.Event) error {
	n, ok := ev.Int(cents)
	if !ok {
		return errors.New("cents: want an integer")
	}
	sum := spent.AddInt64(ctx, n) // one host call
	if sum >= t.limit {
		t.buf = strconv.AppendInt(t.buf[:0], sum, 10)
		ctx.EmitTo(big, ctx.Key(), t.buf)
		spent.Clear(ctx)
	}
	return nil
}

// A plugin registers its function in init:
//
//	func init() { wasmstream.Register("totals", &Totals{}) }
//
// wasmstreamtest runs it natively; WithFunction stands in for the
// registration here.
func Example() {
	h := wasmstreamtest.New(nil, map[string]string{"limit": "100"},
		wasmstreamtest.WithFunction("totals", &Totals{}))
	defer h.Close()

	h.Process([]byte("acct-1"), []byte(`{"cents":60}`))
	h.Process([]byte("acct-2"), []byte(`{"cents":5}`))
	h.Process([]byte("acct-1"), []byte(`{"cents":50}`))
	h.Process([]byte("acct-2"), []byte(`{"cents":"lots"}`))

	for _, r := range h.Output("big") {
		fmt.Println("big:", r.Key, r.Value)
	}
	for _, r := range h.Rejected() {
		fmt.Println("rejected:", r.Key, r.Reason)
	}
	left, _ := wasmstreamtest.Value(h, spent, "acct-2")
	fmt.Println("acct-2 spent:", left)
	// Output:
	// big: acct-1 110
	// rejected: acct-2 cents: want an integer
	// acct-2 spent: 5
}
