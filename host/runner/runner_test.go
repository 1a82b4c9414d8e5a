package runner_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/wasmstream/wasmstream/internal/natstest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wasmstream/wasmstream/abi"
	"github.com/wasmstream/wasmstream/examples/freqcap"
	"github.com/wasmstream/wasmstream/host/job"
	"github.com/wasmstream/wasmstream/host/plugin"
	"github.com/wasmstream/wasmstream/host/process"
	"github.com/wasmstream/wasmstream/host/runner"
	"github.com/wasmstream/wasmstream/internal/wasmbuild"
)

func testCtx(t *testing.T) context.Context {
	// A generous bound so a stuck job fails the test instead of hanging
	// it; no assertion depends on timing.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// parseJob parses a job config whose relative paths resolve against the
// examples/freqcap directory.
func parseJob(t *testing.T, yaml string) *job.Config {
	t.Helper()
	cfg, err := job.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Dir = filepath.Join("..", "..", "examples", "freqcap")
	return cfg
}

const baseJob = `
name: rt
source: {stream: RT, subjects: ["views.>"]}
key: {field: user_no}
plugin:
  path: plugin
  config: {cap: 2}
`

func freqcapWasm(t *testing.T) []byte { return wasmbuild.ForTest(t, "examples/freqcap/plugin") }

func TestPrepareRefusesSinkForUnknownOutput(t *testing.T) {
	cfg := parseJob(t, baseJob+`
sinks:
  - {output: capped, type: stdout}
  - {output: clicks, type: stdout}
`)
	j, err := runner.Prepare(testCtx(t), cfg, runner.Options{Wasm: freqcapWasm(t)})
	if err == nil {
		j.Close(context.Background())
		t.Fatal("Prepare accepted a sink for an output the plugin does not have")
	}
	for _, w := range []string{"sinks[1].output", `no output "clicks"`, "main, capped"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q: %v", w, err)
		}
	}
	if strings.Contains(err.Error(), "sinks[0]") {
		t.Errorf("error blames the valid sink: %v", err)
	}
}

func TestPrepareRefusesUndeclaredFieldOverride(t *testing.T) {
	cfg := parseJob(t, baseJob+`
  fields: {campaign: ad.campaign}
`)
	j, err := runner.Prepare(testCtx(t), cfg, runner.Options{Wasm: freqcapWasm(t)})
	if err == nil {
		j.Close(context.Background())
		t.Fatal("Prepare accepted an override of a field the plugin does not declare")
	}
	for _, w := range []string{"plugin.fields.campaign", "da_id"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q: %v", w, err)
		}
	}
}

func TestPrepareWarnsForOutputsWithoutSinks(t *testing.T) {
	wasm := freqcapWasm(t)
	for _, tc := range []struct {
		name  string
		sinks string
		want  []string // outputs warned about
	}{
		{"no sinks", "", []string{"capped", "main", "released"}},
		{"capped sunk", "sinks:\n  - {output: capped, type: stdout}\n", []string{"main", "released"}},
		{"all sunk", "sinks:\n  - {output: capped, type: stdout}\n  - {output: released, type: stdout}\n  - {output: main, type: stdout}\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j, err := runner.Prepare(testCtx(t), parseJob(t, baseJob+tc.sinks), runner.Options{Wasm: wasm})
			if err != nil {
				t.Fatal(err)
			}
			defer j.Close(context.Background())
			var warned []string
			for _, w := range j.Warnings {
				for _, o := range []string{"capped", "main", "released"} {
					if strings.Contains(w, fmt.Sprintf("output %q has no sink", o)) {
						warned = append(warned, o)
					}
				}
			}
			slices.Sort(warned)
			if !slices.Equal(warned, tc.want) || len(j.Warnings) != len(tc.want) {
				t.Errorf("warnings %q, want one for each of %v", j.Warnings, tc.want)
			}
		})
	}
}

func TestPrepareRefusesBadPlugins(t *testing.T) {
	ctx := testCtx(t)
	cfg := parseJob(t, baseJob)
	cfg.Plugin.Path = "no-such-plugin.wasm"
	if _, err := runner.Prepare(ctx, cfg, runner.Options{}); err == nil || !strings.HasPrefix(err.Error(), "plugin.path: ") || !strings.Contains(err.Error(), "no-such-plugin.wasm") {
		t.Errorf("Prepare with a missing plugin file: %v", err)
	}
	cfg = parseJob(t, baseJob)
	_, err := runner.Prepare(ctx, cfg, runner.Options{Wasm: []byte("not a wasm module")})
	if err == nil || !errors.Is(err, plugin.ErrInvalidPlugin) || !strings.Contains(err.Error(), "plugin plugin:") {
		t.Errorf("Prepare with bytes that are no Wasm module: %v", err)
	}
}

// server is an embedded NATS server with a stream RT capturing views.> that
// holds events.
func server(t *testing.T, events [][]byte) *nats.Conn {
	t.Helper()
	n := natstest.Start(t)
	nc, js := n.Conn, n.JS
	ctx := testCtx(t)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "RT", Subjects: []string{"views.>"}}); err != nil {
		t.Fatal(err)
	}
	if err := freqcap.Publish(ctx, js, "views.web", events, nil); err != nil {
		t.Fatal(err)
	}
	return nc
}

// stdoutPairs parses stdout sink lines "capped <user>.<ad> <value>" into
// their keys, checking each value.
func stdoutPairs(t *testing.T, out string, limit int) map[string]bool {
	t.Helper()
	got := map[string]bool{}
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		if len(f) != 3 || f[0] != "capped" {
			t.Errorf("stdout sink line %q, want \"capped <key> <value>\"", line)
			continue
		}
		user, ad, _ := strings.Cut(f[1], ".")
		if want := fmt.Sprintf(`{"user_no":%s,"da_id":%s,"count":%d}`, user, ad, limit); f[2] != want {
			t.Errorf("stdout sink line %q: value %s, want %s", line, f[2], want)
		}
		if got[f[1]] {
			t.Errorf("key %s written twice", f[1])
		}
		got[f[1]] = true
	}
	return got
}

func oracleKeys(events [][]byte, limit int) map[string]bool {
	want := map[string]bool{}
	for p := range freqcap.Oracle(events, limit) {
		want[fmt.Sprintf("%d.%d", p[0], p[1])] = true
	}
	return want
}

func TestPrepareNative(t *testing.T) {
	events := freqcap.Generate(800, freqcap.GenOptions{Seed: 2, Users: 40})
	nc := server(t, events)
	cfg := parseJob(t, baseJob+`
parallelism: 2
sinks:
  - {output: capped, type: stdout}
`)
	var out bytes.Buffer
	newFn := func(int) (process.Function, error) { return freqcap.NewNative(), nil }
	j, err := runner.PrepareNative(cfg, freqcap.Contract(), newFn, runner.Options{Conn: nc, UntilCaughtUp: true, Stdout: &out})
	if err != nil {
		t.Fatal(err)
	}
	if j.Plugin != nil {
		t.Error("a native job has a plugin")
	}
	if len(j.Warnings) != 2 || !strings.Contains(j.Warnings[0], `"main"`) || !strings.Contains(j.Warnings[1], `"released"`) {
		t.Errorf("warnings %q, want one each for the main and released outputs", j.Warnings)
	}
	sum, err := j.Run(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Close(context.Background()); err != nil {
		t.Errorf("Close of a native job: %v", err)
	}
	want := oracleKeys(events, 2)
	got := stdoutPairs(t, out.String(), 2)
	if len(want) == 0 || len(got) != len(want) || sum.Outputs["capped"] != int64(len(want)) {
		t.Errorf("%d capped keys on stdout, %d counted, the oracle has %d", len(got), sum.Outputs["capped"], len(want))
	}
	for k := range want {
		if !got[k] {
			t.Errorf("capped pair %s missing from stdout", k)
		}
	}

	// PrepareNative checks the contract and the sinks against it.
	if _, err := runner.PrepareNative(cfg, abi.Contract{ABI: abi.Version}, newFn, runner.Options{Conn: nc}); !errors.Is(err, abi.ErrBadContract) {
		t.Errorf("PrepareNative with an unnamed contract: %v", err)
	}
	c := freqcap.Contract()
	c.Outputs = nil
	if _, err := runner.PrepareNative(cfg, c, newFn, runner.Options{Conn: nc}); err == nil || !strings.Contains(err.Error(), "sinks[0].output") {
		t.Errorf("PrepareNative with a sink for an output the contract lacks: %v", err)
	}
}

// TestPrepareFieldOverride runs the Wasm plugin with its da_id field read
// from another JSON path.
func TestPrepareFieldOverride(t *testing.T) {
	var events [][]byte
	for i := range 60 {
		events = append(events, fmt.Appendf(nil, `{"user_no":%d,"ad":{"id":%d},"da_id":"ignored"}`, i%4, i%3))
	}
	nc := server(t, events)
	cfg := parseJob(t, baseJob+`
  fields: {da_id: ad.id}
sinks:
  - {output: capped, type: stdout}
`)
	var out bytes.Buffer
	j, err := runner.Prepare(testCtx(t), cfg, runner.Options{Conn: nc, UntilCaughtUp: true, Stdout: &out, Wasm: freqcapWasm(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close(context.Background())
	sum, err := j.Run(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if sum.DeadLettered != 0 {
		t.Errorf("%d events dead-lettered: the override was not applied", sum.DeadLettered)
	}
	got := stdoutPairs(t, out.String(), 2)
	// Users 0..3 each see ads 0..2 five times.
	if len(got) != 12 {
		t.Errorf("capped keys %v, want the 12 (user, ad) pairs", got)
	}
	for u := range 4 {
		for a := range 3 {
			if k := fmt.Sprintf("%d.%d", u, a); !got[k] {
				t.Errorf("capped pair %s missing", k)
			}
		}
	}
}
