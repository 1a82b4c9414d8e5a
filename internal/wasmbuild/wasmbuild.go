// Package wasmbuild compiles a Go plugin package to a WASI reactor module
// with the standard Go toolchain, the way `wasmstream plugin build` does.
//
// Go's build cache makes a rebuild of an unchanged package cost a link step
// only, so callers may build on demand; ForTest additionally memoises per
// process so a test binary builds each plugin once.
package wasmbuild

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// Flags are the go build flags that make a wasmstream plugin: a WASI
// preview1 reactor whose exports come from //go:wasmexport.
var Flags = []string{"build", "-buildmode=c-shared", "-trimpath"}

// Env returns the environment for building a plugin.
func Env() []string {
	return append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
}

// Build compiles the Go package in dir to out. dir is a directory path (not an
// import path); it is built inside its own module.
func Build(ctx context.Context, dir, out string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if fi, err := os.Stat(abs); err != nil || !fi.IsDir() {
		return fmt.Errorf("wasmstream: plugin source %s: not a directory", dir)
	}
	outAbs, err := filepath.Abs(out)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(outAbs), 0o755); err != nil {
		return err
	}
	if _, err := exec.LookPath("go"); err != nil {
		return fmt.Errorf("wasmstream: building a plugin needs the Go toolchain on PATH: %w", err)
	}
	args := append(append([]string{}, Flags...), "-o", outAbs, ".")
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = abs
	cmd.Env = Env()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Stdout = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("wasmstream: go build of plugin %s failed: %v\n%s", dir, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// Command returns the equivalent shell command line, for messages.
func Command(dir, out string) string {
	return fmt.Sprintf("cd %s && GOOS=wasip1 GOARCH=wasm go %s -o %s .", dir, strings.Join(Flags, " "), out)
}

var (
	testMu    sync.Mutex
	testBuilt = map[string][]byte{}
)

// TB is the subset of testing.TB that ForTest uses.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
}

// ForTest builds the plugin in dir (relative to the module root) once per
// process and returns its bytes. It fails the test on a build error.
func ForTest(t TB, rel string) []byte {
	t.Helper()
	b, err := Cached(context.Background(), rel)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return b
}

// Cached builds the plugin in rel (relative to the module root) once per
// process and returns its bytes.
func Cached(ctx context.Context, rel string) ([]byte, error) {
	testMu.Lock()
	defer testMu.Unlock()
	if b, ok := testBuilt[rel]; ok {
		return b, nil
	}
	root, err := ModuleRoot()
	if err != nil {
		return nil, err
	}
	// The module is kept in memory; its file is removed once read.
	dir, err := os.MkdirTemp("", "wasmstream-plugin-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, strings.NewReplacer("/", "_", ".", "_").Replace(rel)+".wasm")
	if err := Build(ctx, filepath.Join(root, rel), out); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return nil, err
	}
	testBuilt[rel] = b
	return b, nil
}

// ModuleRoot finds the root of the wasmstream module by walking up from the
// working directory to the go.mod that declares it.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(bytes.TrimSpace(b), []byte("module github.com/wasmstream/wasmstream\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("wasmstream: not inside a wasmstream checkout (no go.mod for github.com/wasmstream/wasmstream above the working directory): run from the repository")
		}
		dir = parent
	}
}

// Load returns the bytes of the plugin at path: a .wasm file is read as is; a
// directory is a Go plugin package, built into cacheDir (default: the user
// cache dir) first. built reports whether a build ran.
func Load(ctx context.Context, path, cacheDir string) (wasm []byte, built bool, err error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, false, fmt.Errorf("wasmstream: plugin %s: %w (give a .wasm file or a Go plugin source directory)", path, err)
	}
	if !fi.IsDir() {
		b, err := os.ReadFile(path)
		return b, false, err
	}
	if cacheDir == "" {
		cacheDir = DefaultCacheDir()
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, false, err
	}
	out := filepath.Join(cacheDir, "plugins", strings.Trim(strings.NewReplacer("/", "_", "\\", "_", ":", "_").Replace(abs), "_")+".wasm")
	if err := Build(ctx, path, out); err != nil {
		return nil, true, err
	}
	b, err := os.ReadFile(out)
	return b, true, err
}

// DefaultCacheDir is where wasmstream keeps built plugins and compiled code:
// $XDG_CACHE_HOME/wasmstream or its platform equivalent, or a temp dir.
func DefaultCacheDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "wasmstream")
	}
	return filepath.Join(os.TempDir(), "wasmstream-cache")
}
