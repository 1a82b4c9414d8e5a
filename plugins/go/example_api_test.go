package wasmstream_test

import (
	"fmt"

	wasmstream "github.com/wasmstream/wasmstream/plugins/go"
	"github.com/wasmstream/wasmstream/plugins/go/wasmstreamtest"
)

var clicks = wasmstream.NewMapState("clicks", wasmstream.String, wasmstream.Int64)

func ExampleMapState_AddInt64() {
	// Count clicks per user (the event key) and page, one host call per
	// event.
	count := wasmstream.ProcessFunc(func(ctx *wasmstream.Context, ev *wasmstream.Event) error {
		page, _ := ev.JSON().Get("page").String()
		clicks.AddInt64(ctx, page, 1)
		return nil
	})
	h := wasmstreamtest.New(nil, nil, wasmstreamtest.WithFunction("clicks", count))
	defer h.Close()

	for _, page := range []string{"home", "cart", "home"} {
		h.Process([]byte("u1"), []byte(`{"page":"`+page+`"}`))
	}
	fmt.Println(wasmstreamtest.Map(h, clicks, "u1"))
	// Output: map[cart:1 home:2]
}

func ExampleJSON_Get() {
	doc := wasmstream.JSON(`{"user":{"id":42,"name":"ann"},"items":[{"sku":"a-1"},{"sku":"b-2"}]}`)
	id, _ := doc.Get("user.id").Int()
	name, _ := doc.Get("user.name").String()
	sku, _ := doc.Get("items.1.sku").String()
	fmt.Println(id, name, sku, doc.Get("user.age").Exists())
	// Output: 42 ann b-2 false
}
