package wasmbuild

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func testCtx(t *testing.T) context.Context {
	// A generous bound so a hung go build fails the test instead of hanging
	// it; no assertion depends on timing.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// writeModule writes a standalone Go module with the given files into a
// fresh directory and returns it.
func writeModule(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestBuildReportsGoBuildOutput(t *testing.T) {
	ctx := testCtx(t)
	cases := []struct {
		name  string
		files map[string]string
		// want are fragments of go build's own output that the error
		// must carry.
		want []string
	}{
		{
			name:  "no Go files",
			files: map[string]string{"go.mod": "module example.com/empty\n\ngo 1.24\n", "README.txt": "not Go\n"},
			want:  []string{"no Go files"},
		},
		{
			name: "syntax error",
			files: map[string]string{
				"go.mod":  "module example.com/broken\n\ngo 1.24\n",
				"main.go": "package main\n\nfunc main() { this is not Go }\n",
			},
			want: []string{"main.go:3", "syntax error"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeModule(t, tc.files)
			out := filepath.Join(t.TempDir(), "x.wasm")
			err := Build(ctx, dir, out)
			if err == nil {
				t.Fatalf("Build of %s succeeded", tc.name)
			}
			msg := err.Error()
			if !strings.Contains(msg, "go build of plugin "+dir+" failed") {
				t.Errorf("error does not name the plugin directory %s: %s", dir, msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error lacks go build's output %q: %s", w, msg)
				}
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("a failed build left %s (stat: %v)", out, err)
			}
		})
	}
}

func TestBuildRefusesAFile(t *testing.T) {
	f := filepath.Join(t.TempDir(), "main.go")
	if err := os.WriteFile(f, []byte("package main\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := Build(testCtx(t), f, filepath.Join(t.TempDir(), "x.wasm"))
	if err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("Build of a file: %v, want a not-a-directory error", err)
	}
}

func TestModuleRoot(t *testing.T) {
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	want, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if root != want {
		t.Errorf("ModuleRoot() = %s, want %s", root, want)
	}
	if _, err := os.Stat(filepath.Join(root, "examples", "freqcap", "plugin", "main.go")); err != nil {
		t.Errorf("the module root holds no freqcap plugin: %v", err)
	}

	// Outside a checkout, including inside another module, it is an error.
	other := writeModule(t, map[string]string{"go.mod": "module example.com/other\n\ngo 1.24\n"})
	t.Chdir(other)
	if r, err := ModuleRoot(); err == nil || !strings.Contains(err.Error(), "not inside a wasmstream checkout") {
		t.Errorf("ModuleRoot() outside the checkout = %q, %v; want an error", r, err)
	}
}

func TestLoadWasmFile(t *testing.T) {
	// Load does not look inside a .wasm file: its bytes come back as they are.
	want := []byte("\x00asm\x01\x00\x00\x00any bytes")
	path := filepath.Join(t.TempDir(), "p.wasm")
	if err := os.WriteFile(path, want, 0o644); err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	got, built, err := Load(testCtx(t), path, cache)
	if err != nil {
		t.Fatal(err)
	}
	if built || !bytes.Equal(got, want) {
		t.Errorf("Load(%s) = %q built=%v, want the file's bytes, not built", path, got, built)
	}
	if ents, _ := os.ReadDir(cache); len(ents) != 0 {
		t.Errorf("loading a .wasm file wrote to the cache dir: %v", ents)
	}
}

func TestLoadMissing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.wasm")
	_, _, err := Load(testCtx(t), path, t.TempDir())
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "give a .wasm file or a Go plugin source directory") {
		t.Fatalf("Load of a missing path: %v", err)
	}
}

func TestLoadBuildsDirectoryAndCachedCleansUp(t *testing.T) {
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	cache := t.TempDir()
	dir := filepath.Join(root, "examples", "freqcap", "plugin")
	wasm, built, err := Load(ctx, dir, cache)
	if err != nil {
		t.Fatal(err)
	}
	if !built || !bytes.HasPrefix(wasm, []byte("\x00asm")) {
		t.Fatalf("Load(%s): built=%v, %d bytes starting %q; want a built Wasm module", dir, built, len(wasm), wasm[:min(8, len(wasm))])
	}
	ents, err := os.ReadDir(filepath.Join(cache, "plugins"))
	if err != nil || len(ents) != 1 || !strings.HasSuffix(ents[0].Name(), ".wasm") {
		t.Errorf("cache dir after a build: %v %v, want one .wasm file", ents, err)
	}

	// Cached builds the same package to the same module and leaves no
	// file behind in the temp dir.
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	got, err := Cached(ctx, "examples/freqcap/plugin")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, wasm) {
		t.Errorf("Cached and Load built different modules (%d and %d bytes)", len(got), len(wasm))
	}
	if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("Cached left %v in the temp dir", names)
	}
	again := ForTest(t, "examples/freqcap/plugin")
	if &again[0] != &got[0] {
		t.Error("ForTest rebuilt a plugin Cached already built in this process")
	}
}
