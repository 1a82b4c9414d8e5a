package memory_test

import (
	"context"
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

func TestSnapshots(t *testing.T) {
	statestoretest.RunSnapshots(t, func(t *testing.T, cfg statestore.Config) statestore.Backend {
		b, err := memory.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}, func(t *testing.T, cfg statestore.Config, h statestore.SnapshotHandle, src statestore.SnapshotSource) statestore.Backend {
		b, err := memory.Restore(context.Background(), cfg, h, src)
		if err != nil {
			t.Fatal(err)
		}
		return b
	})
}
