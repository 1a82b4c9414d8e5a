package checkpoint_test

import (
	"context"
	"github.com/wasmstream/wasmstream/internal/natstest"
	"testing"

	"github.com/wasmstream/wasmstream/checkpoint"
)

// storages returns the storages every storage-level test runs against: a
// local directory and an Object Store bucket of a real embedded NATS
// server.
func storages(t *testing.T) map[string]func(t *testing.T) checkpoint.Storage {
	return map[string]func(t *testing.T) checkpoint.Storage{
		"dir": func(t *testing.T) checkpoint.Storage {
			d, err := checkpoint.NewDirStorage(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			return d
		},
		"objectstore": func(t *testing.T) checkpoint.Storage { return objectStorage(t) },
	}
}

// objectStorage starts an embedded NATS server and returns a storage in a
// bucket of it; both are closed when the test ends.
func objectStorage(t testing.TB) *checkpoint.ObjectStorage {
	t.Helper()
	n := natstest.Start(t)
	js := n.JS
	st, err := checkpoint.OpenObjectStorage(context.Background(), js, "CHECKPOINTS")
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
