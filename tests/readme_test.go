package tests

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wasmstream/wasmstream/host/job"
	"github.com/wasmstream/wasmstream/host/plugin"
	"github.com/wasmstream/wasmstream/internal/wasmbuild"
)

// TestREADMEPlugin builds the plugin shown in README.md and loads it: a
// newcomer's first plugin must compile and be accepted by the host.
func TestREADMEPlugin(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(readme)
	start := strings.Index(s, "```go\npackage main\n")
	if start < 0 {
		t.Fatal("README.md has no ```go block with a package main plugin")
	}
	src := s[start+len("```go\n"):]
	src = src[:strings.Index(src, "```")]

	// The source must be inside the module to import the SDK; the directory
	// is ignored by git and removed afterwards.
	dir := filepath.Join("testdata", "readme-plugin")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "readme.wasm")
	if err := wasmbuild.Build(context.Background(), dir, out); err != nil {
		t.Fatalf("the README's plugin does not build: %v", err)
	}
	wasm, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	p, err := plugin.Load(context.Background(), "", wasm, plugin.Options{})
	if err != nil {
		t.Fatalf("the host refuses the README's plugin: %v", err)
	}
	defer p.Close(context.Background())
	c := p.Contract()
	if len(c.States) != 1 || c.States[0].Name != "views" || len(c.Outputs) != 1 || c.Outputs[0] != "capped" {
		t.Errorf("the README's plugin declares %+v, want state views and output capped", c)
	}
}

// TestREADMEJobConfig parses the job config reference in README.md: every
// key it documents must be one the parser knows, with a valid value.
func TestREADMEJobConfig(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(readme)
	start := strings.Index(s, "### Job config reference")
	if start < 0 {
		t.Fatal("README.md has no job config reference")
	}
	s = s[start:]
	i := strings.Index(s, "```yaml\n")
	if i < 0 {
		t.Fatal("the job config reference has no ```yaml block")
	}
	src := s[i+len("```yaml\n"):]
	src = src[:strings.Index(src, "```")]
	cfg, err := job.Parse([]byte(src))
	if err != nil {
		t.Fatalf("the README's job config does not parse: %v", err)
	}
	if cfg.Name != "freqcap" || cfg.Parallelism != 2 || cfg.EventTime.Field != "log_time" {
		t.Errorf("parsed %+v", cfg)
	}
}
