// Package natstest starts a real embedded NATS server with JetStream for a
// test, with a client connection, both closed when the test ends.
package natstest

import (
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wasmstream/wasmstream/host/natsembed"
)

// Env is a running server and a client of it.
type Env struct {
	Server *natsembed.Server
	Conn   *nats.Conn
	JS     jetstream.JetStream
}

// Start starts a server storing in a test temp dir and connects to it.
func Start(t testing.TB, opts ...jetstream.JetStreamOpt) *Env {
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
	js, err := jetstream.New(nc, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return &Env{Server: srv, Conn: nc, JS: js}
}
