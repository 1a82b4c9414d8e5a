package wasmstream_test

import (
	"bytes"
	"testing"

	wasmstream "github.com/wasmstream/wasmstream/plugins/go"
	"github.com/wasmstream/wasmstream/plugins/go/wasmstreamtest"
)

// testFn delegates to the hooks a test sets, so one test binary can run many
// handlers against the states declared in this package's test files.
type testFn struct{}

var (
	step      func(ctx *wasmstream.Context, ev *wasmstream.Event) error
	openHook  func(ctx *wasmstream.OpenContext) error
	closeHook func() error
)

func (testFn) Open(ctx *wasmstream.OpenContext) error {
	if openHook != nil {
		return openHook(ctx)
	}
	return nil
}

func (testFn) ProcessElement(ctx *wasmstream.Context, ev *wasmstream.Event) error {
	if step == nil {
		return nil
	}
	return step(ctx, ev)
}

func (testFn) Close() error {
	if closeHook != nil {
		return closeHook()
	}
	return nil
}

// start opens a harness running testFn.
func start(t *testing.T, config map[string]string, opts ...wasmstreamtest.Option) *wasmstreamtest.Harness {
	t.Helper()
	t.Cleanup(func() { step, openHook, closeHook = nil, nil, nil })
	return wasmstreamtest.New(t, config, append(opts, wasmstreamtest.WithFunction("sdktest", testFn{}))...)
}

// do runs f as the handler of one event with key.
func do(t *testing.T, h *wasmstreamtest.Harness, key string, f func(ctx *wasmstream.Context)) {
	t.Helper()
	step = func(ctx *wasmstream.Context, _ *wasmstream.Event) error { f(ctx); return nil }
	h.Process([]byte(key), []byte(`{}`))
}

// fails runs f as the handler of one event and returns the plugin failure.
func fails(t *testing.T, h *wasmstreamtest.Harness, key string, f func(ctx *wasmstream.Context)) error {
	t.Helper()
	step = func(ctx *wasmstream.Context, _ *wasmstream.Event) error { f(ctx); return nil }
	return h.ProcessEvents(wasmstreamtest.Event{Key: []byte(key), Value: []byte(`{}`)})
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }
