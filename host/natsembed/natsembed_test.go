package natsembed

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestStartPublishConsume(t *testing.T) {
	var mu sync.Mutex
	var lines []string
	s, err := Start(Options{StoreDir: t.TempDir(), Logf: func(f string, a ...any) {
		mu.Lock()
		lines = append(lines, f)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()
	if !strings.HasPrefix(s.URL, "nats://127.0.0.1:") {
		t.Errorf("URL %q", s.URL)
	}
	nc, err := nats.Connect(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "t.1", []byte("hello")); err != nil {
		t.Fatal(err)
	}
	m, err := st.GetMsg(ctx, 1)
	if err != nil || string(m.Data) != "hello" {
		t.Fatalf("GetMsg: %v %v", m, err)
	}
	mu.Lock()
	n := len(lines)
	mu.Unlock()
	if n == 0 {
		t.Error("Logf received no lines")
	}
}

func TestStartErrors(t *testing.T) {
	if _, err := Start(Options{}); err == nil || !strings.Contains(err.Error(), "StoreDir") {
		t.Errorf("no store dir: %v", err)
	}
	if _, err := Start(Options{StoreDir: t.TempDir(), Listen: "nonsense"}); err == nil || !strings.Contains(err.Error(), "host:port") {
		t.Errorf("bad listen: %v", err)
	}
}

func TestListenFixedPort(t *testing.T) {
	a, err := Start(Options{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Shutdown()
	port := a.URL[strings.LastIndex(a.URL, ":")+1:]
	// A second server on the same port fails with a message, not a hang.
	if _, err := Start(Options{StoreDir: t.TempDir(), Listen: "127.0.0.1:" + port, ReadyTimeout: 2 * time.Second}); err == nil {
		t.Error("second server on a used port started")
	}
}
