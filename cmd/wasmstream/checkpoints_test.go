package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/wasmstream/wasmstream/abi"
	"github.com/wasmstream/wasmstream/checkpoint"
	"github.com/wasmstream/wasmstream/statestore"
	"github.com/wasmstream/wasmstream/statestore/memory"
)

// TestCheckpointsList writes two real checkpoints of a memory backend to
// the directory a job config names and lists them.
func TestCheckpointsList(t *testing.T) {
	dir := t.TempDir()
	cfg := `name: listed
source: {stream: EVENTS, subjects: ["events.>"]}
key: {field: user}
plugin: {path: plugin.wasm}
checkpoint:
  interval: 2s
  storage: {type: dir, path: ckpt}
`
	path := filepath.Join(dir, "job.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := checkpoint.NewDirStorage(filepath.Join(dir, "ckpt"))
	if err != nil {
		t.Fatal(err)
	}
	store, err := checkpoint.NewStore(st, "listed", checkpoint.Options{})
	if err != nil {
		t.Fatal(err)
	}
	states := []abi.StateDesc{{Name: "count", Kind: abi.KindValue}}
	b, err := memory.New(statestore.Config{States: states, MaxParallelism: 128})
	if err != nil {
		t.Fatal(err)
	}
	for i, seq := range []uint64{1234, 98765} {
		if err := b.Put(uint16(i), 0, []byte("k"), []byte("v")); err != nil {
			t.Fatal(err)
		}
		p, err := store.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		s, err := statestore.TakeSnapshot(b, nil)
		if err != nil {
			t.Fatal(err)
		}
		h, err := s.Write(ctx, p.Target("worker-0"))
		if err != nil {
			t.Fatal(err)
		}
		m := &checkpoint.Metadata{Stream: "EVENTS", Sequence: seq, Backend: "memory", MaxParallelism: 128,
			Contract: abi.Contract{States: states}, Parts: []checkpoint.Part{{Name: "worker-0", Snapshot: h}}}
		if err := store.Commit(ctx, p, m); err != nil {
			t.Fatal(err)
		}
	}

	var out, errOut bytes.Buffer
	if err := run(ctx, []string{"checkpoints", "list", "-f", path}, &out, &errOut); err != nil {
		t.Fatalf("checkpoints list: %v\n%s", err, errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "ID") || !strings.Contains(lines[0], "SEQUENCE") {
		t.Fatalf("checkpoints list printed:\n%s\nwant a header and two checkpoints", out.String())
	}
	for i, want := range []string{`^1\s.*\s1234\s+complete$`, `^2\s.*\s98765\s+complete$`} {
		if !regexp.MustCompile(want).MatchString(lines[i+1]) {
			t.Errorf("line %q does not match %s", lines[i+1], want)
		}
	}

	// A job without checkpoints says so.
	if err := os.WriteFile(path, []byte(strings.Replace(cfg, "interval: 2s", "interval: 0s", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run(ctx, []string{"checkpoints", "list", "-f", path}, &out, &errOut); err == nil || !strings.Contains(err.Error(), "checkpoint.interval") {
		t.Errorf("checkpoints list of a job without checkpoints: %v, want an error naming checkpoint.interval", err)
	}
}
