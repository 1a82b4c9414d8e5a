package checkpoint_test

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wasmstream/wasmstream/checkpoint"
	"github.com/wasmstream/wasmstream/host/natsembed"
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
	srv, err := natsembed.Start(natsembed.Options{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := nats.Connect(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
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
