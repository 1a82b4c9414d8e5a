package memory_test

import (
	"testing"

	"github.com/wasmstream/wasmstream/statestore"
	"github.com/wasmstream/wasmstream/statestore/memory"
	"github.com/wasmstream/wasmstream/statestore/statestoretest"
)

func TestConformance(t *testing.T) {
	statestoretest.Run(t, func(t *testing.T, cfg statestore.Config) statestore.Backend {
		b, err := memory.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return b
	})
}
