package tests

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmstream/wasmstream/examples/freqcap"
	"github.com/wasmstream/wasmstream/host/engine"
	"github.com/wasmstream/wasmstream/host/job"
	"github.com/wasmstream/wasmstream/host/runner"
	"github.com/wasmstream/wasmstream/internal/wasmbuild"
)

// progress follows a running job's counters through its Status callback.
type progress struct {
	mu     sync.Mutex
	last   engine.Status
	notify chan struct{}
}

func newProgress() *progress { return &progress{notify: make(chan struct{}, 1)} }

func (p *progress) status(s engine.Status) {
	p.mu.Lock()
	p.last = s
	p.mu.Unlock()
	select {
	case p.notify <- struct{}{}:
	default:
	}
}

// waitProcessed waits until the job has processed n events, or fails the
// test when ctx ends or the job returns first.
func (p *progress) waitProcessed(t *testing.T, ctx context.Context, done <-chan struct{}, n int64) {
	t.Helper()
	p.wait(t, ctx, done, "processed events", n, engine.Status.TotalProcessed)
}

// wait waits until what(status) reaches n.
func (p *progress) wait(t *testing.T, ctx context.Context, done <-chan struct{}, name string, n int64, what func(engine.Status) int64) {
	t.Helper()
	for {
		p.mu.Lock()
		got := what(p.last)
		p.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-p.notify:
		case <-done:
			t.Fatalf("the healthy job ended with %d of %d %s", got, n, name)
		case <-ctx.Done():
			t.Fatalf("the healthy job reached %d of %d %s: %v", got, n, name, ctx.Err())
		}
	}
}

// trapperJob reads stream TRAP and runs the trapper plugin, which fails on
// the event whose n is trapAt.
func trapperJob(t *testing.T, mode string, trapAt int) *job.Config {
	t.Helper()
	cfg, err := job.Parse(fmt.Appendf(nil, `
name: trapjob
source: {stream: TRAP, subjects: ["trap.>"]}
key: {field: k}
plugin:
  path: testdata/trapper
  config: {mode: %s, trap_at: %d}
parallelism: 2
sinks:
  - {output: main, type: jetstream, subject: trapped.out, create: true}
dead_letter: {subject: trapped.dlq, create: true}
`, mode, trapAt))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestPluginFailureIsIsolated runs a job whose plugin fails on one event next
// to a healthy freqcap job, in this process and on one server and one
// connection. The failing job stops with an error that names the plugin, the
// export and the event's stream sequence; the healthy job, started before
// the failure and fed more events after it, ends with the oracle's result.
func TestPluginFailureIsIsolated(t *testing.T) {
	trapWasm := wasmbuild.ForTest(t, "tests/testdata/trapper")
	capWasm := freqcapWasm(t)
	for _, tc := range []struct {
		mode string
		// want are fragments the failing job's error must hold besides
		// the plugin, export and sequence.
		want []string
	}{
		{"panic", []string{"panicked", "trapper: refusing event n=700"}},
		{"exit", []string{"exited with code 3"}},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			const trapAt = 700
			ctx := testCtx(t)
			e := newEnv(t)

			// The healthy job: live (not until caught up), so it is
			// running before, during and after the other job fails.
			data := freqcap.Generate(20_000, freqcap.GenOptions{Seed: 3, Users: 5_000})
			first, second := data[:12_000], data[12_000:]
			e.publish(t, "FREQCAP", "views.>", "views.web", first)
			capCfg := freqcapJob(t, "freqcap.capped", 2)
			prog := newProgress()
			healthy, err := runner.Prepare(ctx, capCfg, runner.Options{
				Conn: e.nc, Wasm: capWasm, Logf: t.Logf,
				Status: prog.status, StatusEvery: 5 * time.Millisecond,
			})
			if err != nil {
				t.Fatal(err)
			}
			defer healthy.Close(context.Background())
			healthyCtx, stopHealthy := context.WithCancel(ctx)
			var healthySum engine.Summary
			var healthyErr error
			healthyDone := make(chan struct{})
			go func() {
				defer close(healthyDone)
				healthySum, healthyErr = healthy.Run(healthyCtx)
			}()
			// However the test ends, the job stops before its plugin is
			// closed.
			defer func() {
				stopHealthy()
				<-healthyDone
			}()
			prog.waitProcessed(t, ctx, healthyDone, int64(len(first)))

			// The failing job, on its own stream of the same server.
			events := make([][]byte, 1000)
			for i := range events {
				events[i] = fmt.Appendf(nil, `{"k":"u%d","n":%d}`, i%37, i+1)
			}
			e.publish(t, "TRAP", "trap.>", "trap.in", events)
			trap, err := runner.Prepare(ctx, trapperJob(t, tc.mode, trapAt), runner.Options{Conn: e.nc, UntilCaughtUp: true, Wasm: trapWasm, Logf: t.Logf})
			if err != nil {
				t.Fatal(err)
			}
			defer trap.Close(context.Background())
			if name := trap.Plugin.Contract().Name; name != "trapper" {
				t.Fatalf("test plugin's contract name %q, want trapper", name)
			}
			trapSum, trapErr := trap.Run(ctx)
			if trapErr == nil {
				t.Fatalf("the trapper job succeeded (%s), want it to fail on the event with n=%d", trapSum, trapAt)
			}
			msg := trapErr.Error()
			// Event n=trapAt was published as stream sequence trapAt.
			for _, w := range append([]string{`plugin "trapper"`, "ws_process", fmt.Sprintf("event seq %d", trapAt)}, tc.want...) {
				if !strings.Contains(msg, w) {
					t.Errorf("the failing job's error lacks %q: %v", w, msg)
				}
			}
			if errors.Is(trapErr, context.Canceled) {
				t.Errorf("the failing job's error is a cancellation: %v", trapErr)
			}
			if trapSum.TotalProcessed() > int64(len(events)) || trapSum.EventsIn == 0 {
				t.Errorf("failing job summary %s", trapSum)
			}
			select {
			case <-healthyDone:
				t.Fatalf("the healthy job stopped when the other job failed: %v (%s)", healthyErr, healthySum)
			default:
			}

			// The healthy job carries on with events published after the
			// failure. A last view, dated past every other view and the
			// out-of-orderness bound, moves the watermark past them all, as
			// newer traffic does in a live job, so every cap is decided;
			// then the job is stopped.
			var lastTime int64
			for _, ev := range data {
				var v struct {
					LogTime int64 `json:"log_time"`
				}
				if err := json.Unmarshal(ev, &v); err != nil {
					t.Fatal(err)
				}
				lastTime = max(lastTime, v.LogTime)
			}
			marker := fmt.Appendf(nil, `{"user_no":999999999,"da_id":1,"log_time":%d}`, lastTime+int64(time.Hour/time.Millisecond))
			if err := freqcap.Publish(ctx, e.js, "views.web", append(second, marker), nil); err != nil {
				t.Fatal(err)
			}
			limit := jobCap(t, capCfg)
			want := freqcap.Oracle(data, limit)
			prog.waitProcessed(t, ctx, healthyDone, int64(len(data)+1))
			prog.wait(t, ctx, healthyDone, "capped records", int64(len(want)), func(s engine.Status) int64 { return s.Outputs["capped"] })
			stopHealthy()
			<-healthyDone
			if healthyErr != nil {
				t.Fatalf("the healthy job failed: %v", healthyErr)
			}
			if n := int64(len(data) + 1); healthySum.EventsIn != n || healthySum.TotalProcessed() != n || healthySum.DeadLettered != 0 {
				t.Errorf("healthy job: %s; want %d events read and processed, none dead-lettered", healthySum, n)
			}
			if healthySum.Outputs["capped"] != int64(len(want)) {
				t.Errorf("healthy job emitted %d capped records, the oracle has %d pairs", healthySum.Outputs["capped"], len(want))
			}
			checkCapped(t, e.read(t, "freqcap.capped"), "freqcap.capped", want, limit)
		})
	}
}
