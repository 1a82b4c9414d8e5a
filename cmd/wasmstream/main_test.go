package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/wasmstream/wasmstream/internal/natstest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/wasmstream/wasmstream/abi"
	"github.com/wasmstream/wasmstream/examples/freqcap"
)

// pluginDir is the freqcap example plugin's source, as the README's
// commands name it from this directory.
const pluginDir = "../../examples/freqcap/plugin"

// wasmstream runs the CLI in-process and returns what it wrote.
func wasmstream(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	// A generous bound so a stuck command fails the test instead of
	// hanging it; no assertion depends on timing.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	err = run(ctx, args, &out, &errOut)
	return out.String(), errOut.String(), err
}

func TestVersion(t *testing.T) {
	out, _, err := wasmstream(t, "version")
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("(ABI v%d,", abi.Version); !strings.HasPrefix(out, "wasmstream ") || !strings.Contains(out, want) {
		t.Errorf("version printed %q, want the ABI version %q", out, want)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
		// usage is set when the full usage text goes to stderr.
		usage bool
	}{
		{nil, "no command given", true},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`, true},
		{[]string{"plugin"}, "plugin needs a subcommand", false},
		{[]string{"plugin", "polish"}, `unknown plugin subcommand "polish"`, false},
		{[]string{"plugin", "build"}, "plugin build takes one Go package directory", false},
		{[]string{"run"}, "run needs a job config", false},
		{[]string{"run", "-f"}, "flag needs an argument", false},
		{[]string{"demo", "-events", "0"}, "must be positive", false},
	} {
		_, stderr, err := wasmstream(t, tc.args...)
		if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("wasmstream %q: error %v, want a usage error containing %q", tc.args, err, tc.want)
		}
		if tc.usage && !strings.Contains(stderr, "Usage:\n  wasmstream demo") {
			t.Errorf("wasmstream %q printed no usage on stderr: %q", tc.args, stderr)
		}
	}
}

// checkInspect checks plugin inspect's report of the freqcap plugin.
func checkInspect(t *testing.T, out, path string) {
	t.Helper()
	if first, _, _ := strings.Cut(out, "\n"); first != fmt.Sprintf("plugin freqcap (%s)", path) {
		t.Errorf("first line %q, want the contract name and %s", first, path)
	}
	section := func(name string) []string {
		_, rest, ok := strings.Cut(out, "\n"+name+":\n")
		if !ok {
			t.Errorf("no %s section in:\n%s", name, out)
			return nil
		}
		body, _, _ := strings.Cut(rest, "\n\n")
		var lines []string
		for l := range strings.Lines(body) {
			lines = append(lines, strings.Join(strings.Fields(l), " "))
		}
		return lines
	}
	expect := func(name string, want ...string) {
		t.Helper()
		got := section(name)
		for _, w := range want {
			found := false
			for _, l := range got {
				found = found || l == w
			}
			if !found {
				t.Errorf("%s section %q lacks %q", name, got, w)
			}
		}
	}
	expect("states", "id name kind ttl", "0 views map -")
	expect("outputs", "0 main", "1 capped")
	expect("fields (extracted by the host, in slot order)", "0 da_id <- $.da_id")
	expect("imports",
		`"wasmstream"."map_add_i64" (i32, i32, i32, i32, i64) -> i64`,
		`"wasmstream"."emit" (i32, i32, i32, i32, i32, i32) -> ()`,
		`"wasmstream"."reject" (i32, i32, i32) -> ()`)
	expect("exports", "ws_describe () -> i64", "ws_open (i32, i32) -> i32", "ws_process (i32, i32) -> i32", "ws_close () -> i32")
	if !strings.Contains(out, fmt.Sprintf("abi        v%d", abi.Version)) {
		t.Errorf("inspect does not report ABI v%d:\n%s", abi.Version, out)
	}
}

func TestPluginInspectSourceDir(t *testing.T) {
	out, stderr, err := wasmstream(t, "plugin", "inspect", pluginDir)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	checkInspect(t, out, pluginDir)
}

func TestPluginBuildThenInspect(t *testing.T) {
	wasm := filepath.Join(t.TempDir(), "x.wasm")
	out, stderr, err := wasmstream(t, "plugin", "build", pluginDir, "-o", wasm)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	if !strings.HasPrefix(out, wasm+`: plugin "freqcap", 1 states, 2 side outputs, 1 fields`) {
		t.Errorf("plugin build printed %q", out)
	}
	b, err := os.ReadFile(wasm)
	if err != nil || !bytes.HasPrefix(b, []byte("\x00asm")) {
		t.Fatalf("plugin build wrote no Wasm module to %s: %v", wasm, err)
	}
	out, stderr, err = wasmstream(t, "plugin", "inspect", wasm)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	checkInspect(t, out, wasm)
	if !strings.Contains(out, fmt.Sprintf("size       %d bytes", len(b))) {
		t.Errorf("inspect reports another size than the built file's %d bytes:\n%s", len(b), out)
	}

	// A file that is not a Wasm module is refused.
	junk := filepath.Join(t.TempDir(), "junk.wasm")
	if err := os.WriteFile(junk, []byte("not wasm"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := wasmstream(t, "plugin", "inspect", junk); err == nil || !strings.Contains(err.Error(), "invalid plugin") {
		t.Errorf("plugin inspect of a non-Wasm file: %v", err)
	}
}

// writeJob writes a job config naming the freqcap plugin source by its
// absolute path into a temporary directory and returns the file.
func writeJob(t *testing.T, body string) string {
	t.Helper()
	abs, err := filepath.Abs(pluginDir)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "job.yaml")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(body, "PLUGIN", strconv.Quote(abs))), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestRunJob(t *testing.T) {
	n := natstest.Start(t)
	srv, js := n.Server, n.JS
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "CLI", Subjects: []string{"clicks.>"}}); err != nil {
		t.Fatal(err)
	}
	events := freqcap.Generate(400, freqcap.GenOptions{Seed: 9, Users: 40})
	if err := freqcap.Publish(ctx, js, "clicks.web", events, nil); err != nil {
		t.Fatal(err)
	}
	job := writeJob(t, `name: clitest
source: {stream: CLI, subjects: ["clicks.>"]}
key: {field: user_no}
plugin:
  path: PLUGIN
  config: {cap: 2}
parallelism: 2
sinks:
  - {output: capped, type: stdout}
`)
	out, stderr, err := wasmstream(t, "run", "-f", job, "--nats", srv.URL, "--until-caught-up", "--status", "0")
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	if !strings.Contains(stderr, "job clitest: plugin freqcap") || !strings.Contains(stderr, "clitest: 400 events") {
		t.Errorf("stderr lacks the job line or the summary:\n%s", stderr)
	}
	if !strings.Contains(stderr, `warning: output "main" has no sink`) {
		t.Errorf("stderr lacks the warning for the main output:\n%s", stderr)
	}
	want := map[string]string{}
	for p := range freqcap.Oracle(events, 2) {
		want[fmt.Sprintf("%d.%d", p[0], p[1])] = fmt.Sprintf(`{"user_no":%d,"da_id":%d,"count":2}`, p[0], p[1])
	}
	if len(want) == 0 {
		t.Fatal("the oracle finds no capped pairs")
	}
	got := map[string]string{}
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		if len(f) != 3 || f[0] != "capped" {
			t.Errorf("stdout line %q, want \"capped <key> <value>\"", line)
			continue
		}
		if _, dup := got[f[1]]; dup {
			t.Errorf("key %s printed twice", f[1])
		}
		got[f[1]] = f[2]
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("capped %s: printed %q, want %q", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d capped records printed, the oracle has %d", len(got), len(want))
	}
}

func TestRunRefusesMisspeltKey(t *testing.T) {
	job := writeJob(t, `name: clitest
source: {stream: CLI}
key: {field: user_no}
plugin: {path: PLUGIN}
paralelism: 2
`)
	// The config is checked before any server is started or dialed.
	_, _, err := wasmstream(t, "run", "-f", job, "--nats", "nats://127.0.0.1:1")
	if err == nil || !strings.Contains(err.Error(), `unknown key "paralelism"`) || !strings.Contains(err.Error(), "parallelism") {
		t.Fatalf("run with a misspelt key: %v, want an error naming it and the known keys", err)
	}
	if errors.Is(err, errUsage) {
		t.Errorf("a bad job config is reported as a usage error: %v", err)
	}
}

// TestDemo runs the README's first command, scaled down.
func TestDemo(t *testing.T) {
	out, stderr, err := wasmstream(t, "demo", "-events", "20000")
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	if !strings.Contains(out, "identical, no duplicates") {
		t.Errorf("demo did not match its oracle:\n%s\n%s", out, stderr)
	}
	if !strings.Contains(out, "events      20000 (0 dead-lettered)") {
		t.Errorf("demo summary does not report 20000 events:\n%s", out)
	}
}
