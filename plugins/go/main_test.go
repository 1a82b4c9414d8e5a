package wasmstream_test

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	wasmstream "github.com/wasmstream/wasmstream/plugins/go"
	"github.com/wasmstream/wasmstream/plugins/go/wasmstreamtest"
)

// declarationPanics holds what invalid declarations panicked with. They are
// made in TestMain, before any harness describes the plugin (after which
// every declaration panics for being late).
var declarationPanics = map[string]string{}

func panicOf(f func()) (msg string) {
	defer func() { msg = fmt.Sprint(recover()) }()
	f()
	return ""
}

func TestMain(m *testing.M) {
	declarationPanics["duplicate state"] = panicOf(func() { wasmstream.NewValueState("counter", wasmstream.Int64) })
	declarationPanics["bad state name"] = panicOf(func() { wasmstream.NewListState("has space", wasmstream.Bytes) })
	declarationPanics["short ttl"] = panicOf(func() {
		wasmstream.NewMapState("m", wasmstream.String, wasmstream.Int64, wasmstream.WithTTL(time.Microsecond))
	})
	declarationPanics["duplicate field"] = panicOf(func() { wasmstream.NewField("amount") })
	declarationPanics["main output"] = panicOf(func() { wasmstream.NewSideOutput("main") })
	declarationPanics["bad register name"] = panicOf(func() { wasmstream.Register("a/b", testFn{}) })
	declarationPanics["nil register"] = panicOf(func() { wasmstream.Register("x", nil) })
	os.Exit(m.Run())
}

func TestDeclarationValidation(t *testing.T) {
	for what, want := range map[string]string{
		"duplicate state":   `duplicate state name "counter"`,
		"bad state name":    `"has space": only letters, digits`,
		"short ttl":         "WithTTL(1µs): the TTL must be at least 1ms",
		"duplicate field":   `duplicate field "amount"`,
		"main output":       `duplicate or reserved output name "main"`,
		"bad register name": `Register: wasmstream: invalid plugin contract: name: "a/b"`,
		"nil register":      "Register: nil Function",
	} {
		if got := declarationPanics[what]; !strings.Contains(got, want) {
			t.Errorf("%s: panic %q, want it to contain %q", what, got, want)
		}
	}
	// Failed declarations leave no trace in the contract.
	h := start(t, nil)
	for _, s := range h.Contract().States {
		if s.Name == "has space" || s.Name == "m" {
			t.Errorf("failed declaration %q is in the contract", s.Name)
		}
	}
}

func TestNoRegisteredFunction(t *testing.T) {
	_, err := wasmstreamtest.Open(nil)
	if err == nil || !strings.Contains(err.Error(), "no Function registered") {
		t.Errorf("Open without a registered Function: %v", err)
	}
}
