package tests

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wasmstream/wasmstream/checkpoint"
	"github.com/wasmstream/wasmstream/examples/freqcap"
	"github.com/wasmstream/wasmstream/host/engine"
	"github.com/wasmstream/wasmstream/host/job"
	"github.com/wasmstream/wasmstream/host/runner"
)

// Checkpoints end to end, in process: the freqcap job (Wasm plugin) with
// checkpoints every 100ms is stopped mid-stream, restarted from its latest
// checkpoint and finished with a bounded run. The exactly-once sink then
// holds exactly the oracle's records, the at-least-once one at least all
// of them; a damaged checkpoint makes the restart fall back to the one
// before it, with a warning naming the damaged file.

// checkpointJob is the freqcap example job writing to subjects under
// prefix, capped through an exactly-once sink and released through an
// at-least-once one, with checkpoints every 100ms into dir.
func checkpointJob(t *testing.T, prefix, backend, dir string) *job.Config {
	t.Helper()
	cfg := freqcapJob(t, prefix+".capped", 2)
	for i := range cfg.Sinks {
		if cfg.Sinks[i].Output == "capped" {
			cfg.Sinks[i].Mode = job.ExactlyOnce
		}
	}
	// The capped records go to a KV bucket too, keyed "<user>.<ad>".
	cfg.Sinks = append(cfg.Sinks, job.Sink{Output: "capped", Type: job.SinkKV, Bucket: prefix + "_capped", Create: true, Mode: job.ExactlyOnce})
	cfg.Checkpoint = job.Checkpoint{
		Interval: job.Duration(100 * time.Millisecond),
		Storage:  job.CheckpointStorage{Path: filepath.Join(dir, "checkpoints")},
	}
	if backend == job.BackendPebble {
		cfg.State = job.State{Backend: job.BackendPebble, Dir: filepath.Join(dir, "state")}
	}
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// stopMidStream runs cfg while it publishes data in small steps, and
// stops it once at least two checkpoints are complete, half the events
// are read and the job has read events its newest checkpoint does not
// hold, so that the restart replays them. When the publishing is done and
// everything read is checkpointed, it stops too.
func stopMidStream(t *testing.T, e *env, cfg *job.Config, wasm []byte, data [][]byte) engine.Summary {
	t.Helper()
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	if _, err := e.js.CreateStream(ctx, jetstream.StreamConfig{Name: cfg.Source.Stream, Subjects: cfg.Source.Subjects}); err != nil {
		t.Fatal(err)
	}
	n := uint64(len(data))
	pubDone := make(chan error, 1)
	go func() {
		const step = 500
		for i := 0; i < len(data); i += step {
			if err := freqcap.Publish(ctx, e.js, "views.web", data[i:min(i+step, len(data))], nil); err != nil {
				if ctx.Err() != nil {
					err = nil // run 1 stopped
				}
				pubDone <- err
				return
			}
			select {
			case <-time.After(10 * time.Millisecond):
			case <-ctx.Done():
				pubDone <- nil
				return
			}
		}
		pubDone <- nil
	}()
	var replay bool
	j, err := runner.Prepare(ctx, cfg, runner.Options{
		Conn: e.nc, Wasm: wasm, Logf: t.Logf, StatusEvery: 2 * time.Millisecond,
		Status: func(s engine.Status) {
			c := s.Checkpoints
			if c == nil || c.Completed < 2 || s.LastSeq < n/2 {
				return
			}
			if s.LastSeq > c.LastSequence {
				replay = true
				cancel()
			} else if s.LastSeq == n {
				cancel()
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close(context.Background())
	sum, err := j.Run(ctx)
	if err != nil {
		t.Fatalf("run 1: %v", err)
	}
	if err := <-pubDone; err != nil {
		t.Fatal(err)
	}
	// The rest of the events, for the second run, once the publishes in
	// flight have landed.
	<-e.js.PublishAsyncComplete()
	if left := int(sum.LastSeq); left < len(data) {
		st, err := e.js.Stream(testCtx(t), cfg.Source.Stream)
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := freqcap.Publish(testCtx(t), e.js, "views.web", data[info.State.LastSeq:], nil); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("run 1 stopped at sequence %d, its newest checkpoint holds up to %d (replay: %v)", sum.LastSeq, sum.Checkpoints.LastSequence, replay)
	return sum
}

// finishRun restores cfg's latest checkpoint and runs to the end of the
// stream; warnings go to warn.
func finishRun(t *testing.T, e *env, cfg *job.Config, wasm []byte, warn func(string, ...any)) engine.Summary {
	t.Helper()
	ctx := testCtx(t)
	j, err := runner.Prepare(ctx, cfg, runner.Options{Conn: e.nc, Wasm: wasm, Logf: t.Logf, Warnf: warn, UntilCaughtUp: true})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close(context.Background())
	sum, err := j.Run(ctx)
	if err != nil {
		t.Fatalf("run 2: %v", err)
	}
	return sum
}

// checkAtLeast checks that every oracle record of output is on subject.
func checkAtLeast(t *testing.T, e *env, subject, output string, want []freqcap.Record) {
	t.Helper()
	have := map[string]int{}
	for _, r := range e.read(t, subject) {
		have[r.Key+" "+string(r.Data)]++
	}
	missing := 0
	for _, w := range want {
		if w.Output != output {
			continue
		}
		if have[w.Key+" "+w.Value] == 0 {
			if missing++; missing <= 5 {
				t.Errorf("%s: the oracle's %s record %s %s is missing", subject, output, w.Key, w.Value)
			}
		}
	}
	if missing > 0 {
		t.Errorf("%s: %d records lost", subject, missing)
	}
}

func TestCheckpointRestoreExactlyOnce(t *testing.T) {
	const n = 30_000
	wasm := freqcapWasm(t)
	for _, backend := range []string{job.BackendMemory, job.BackendPebble} {
		t.Run(backend, func(t *testing.T) {
			e := newEnv(t)
			data := freqcap.Generate(n, freqcap.GenOptions{Seed: 41, Users: 2000})
			dir := t.TempDir()
			cfg := checkpointJob(t, "out", backend, dir)
			limit := jobCap(t, cfg)

			sum1 := stopMidStream(t, e, cfg, wasm, data)
			t.Logf("run 1: %s", sum1)
			if sum1.Checkpoints == nil || sum1.Checkpoints.Completed < 2 {
				t.Fatalf("run 1 completed %+v checkpoints, want at least 2", sum1.Checkpoints)
			}

			sum2 := finishRun(t, e, checkpointJob(t, "out", backend, dir), wasm, t.Logf)
			t.Logf("run 2: %s", sum2)
			c := sum2.Checkpoints
			if c == nil || c.Restored == 0 {
				t.Fatalf("run 2 restored no checkpoint (%+v)", c)
			}
			if want := n - int(sum1.Checkpoints.LastSequence); sum2.EventsIn != int64(want) {
				t.Errorf("run 2 read %d events, want the %d after the restored checkpoint's sequence %d", sum2.EventsIn, want, sum1.Checkpoints.LastSequence)
			}

			recs := e.read(t, "out.capped")
			checkCapped(t, recs, "out.capped", freqcap.Oracle(data, limit), limit)
			id := regexp.MustCompile(`^freqcap/[0-9]+/[01]/[0-9]+$`)
			for _, r := range recs[:min(len(recs), 50)] {
				if got := nats.Header(r.Header).Get(nats.MsgIdHdr); !id.MatchString(got) {
					t.Errorf("record seq %d: %s %q, want freqcap/<checkpoint>/<worker>/<ordinal>", r.Seq, nats.MsgIdHdr, got)
				}
			}
			want := freqcap.Expect(data, freqcap.Params{Cap: limit})
			checkAtLeast(t, e, "out.capped.released", "released", want)

			// The KV sink holds every capped record under its key.
			kv, err := e.js.KeyValue(testCtx(t), "out_capped")
			if err != nil {
				t.Fatal(err)
			}
			wantKV := map[string]string{}
			for _, r := range want {
				if r.Output == "capped" {
					wantKV[engine.KVKey([]byte(r.Key))] = r.Value
				}
			}
			keys, err := kv.ListKeys(testCtx(t))
			if err != nil {
				t.Fatal(err)
			}
			nkeys := 0
			for k := range keys.Keys() {
				nkeys++
				ent, err := kv.Get(testCtx(t), k)
				if err != nil {
					t.Fatal(err)
				}
				if w, ok := wantKV[k]; !ok || w != string(ent.Value()) {
					t.Errorf("KV %s = %s, the oracle has %q", k, ent.Value(), w)
				}
			}
			if nkeys != len(wantKV) {
				t.Errorf("the KV sink holds %d keys, the oracle %d", nkeys, len(wantKV))
			}
		})
	}
}

func TestCheckpointDamagedFallsBack(t *testing.T) {
	const n = 20_000
	wasm := freqcapWasm(t)
	e := newEnv(t)
	data := freqcap.Generate(n, freqcap.GenOptions{Seed: 42, Users: 2000})
	dir := t.TempDir()
	cfg := checkpointJob(t, "dmg", job.BackendMemory, dir)
	limit := jobCap(t, cfg)
	stopMidStream(t, e, cfg, wasm, data)

	// Damage a state file of the newest checkpoint, keeping its size.
	st, err := checkpoint.NewDirStorage(filepath.Join(dir, "checkpoints"))
	if err != nil {
		t.Fatal(err)
	}
	store, err := checkpoint.NewStore(st, cfg.Name, checkpoint.Options{})
	if err != nil {
		t.Fatal(err)
	}
	newest, err := store.Latest(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	part := newest.Parts[0]
	rel := filepath.Join(cfg.Name, fmt.Sprintf("chk-%d", newest.ID), part.Name, part.Snapshot.Files[0].Name)
	path := filepath.Join(st.Root(), rel)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	var warnings []string
	sum := finishRun(t, e, checkpointJob(t, "dmg", job.BackendMemory, dir), wasm, func(format string, args ...any) {
		mu.Lock()
		warnings = append(warnings, fmt.Sprintf(format, args...))
		mu.Unlock()
		t.Logf(format, args...)
	})
	if c := sum.Checkpoints; c == nil || c.Restored == 0 || c.Restored >= newest.ID {
		t.Errorf("run 2 restored %+v, want a checkpoint before the damaged %d", sum.Checkpoints, newest.ID)
	}
	named := false
	for _, w := range warnings {
		if strings.Contains(w, filepath.ToSlash(rel)) && strings.Contains(w, fmt.Sprint(newest.ID)) {
			named = true
		}
	}
	if !named {
		t.Errorf("no warning names the damaged file %s; warnings: %q", rel, warnings)
	}
	// Falling back repeats the epoch of the damaged checkpoint: nothing
	// is lost.
	checkAtLeast(t, e, "dmg.capped", "capped", freqcap.Expect(data, freqcap.Params{Cap: limit}))
}

// BenchmarkCheckpointPause runs the freqcap job (Wasm, parallelism 2) over
// 200,000 events with a checkpoint every 100ms, on memory and on Pebble
// state, and reports the processing pause the checkpoints cause (the
// longest time a worker stopped for one): its 50th and 99th percentiles,
// the alignment of the last checkpoint, and the throughput.
//
//	go test ./tests -run '^$' -bench CheckpointPause -benchtime 1x
func BenchmarkCheckpointPause(b *testing.B) {
	const n = 200_000
	wasm := freqcapWasm(&testing.T{})
	for _, backend := range []string{job.BackendMemory, job.BackendPebble} {
		b.Run(backend, func(b *testing.B) {
			t := &testing.T{}
			e := newEnv(t)
			data := freqcap.Generate(n, freqcap.GenOptions{Seed: 43, Users: 20_000})
			e.publish(t, "FREQCAP", "views.>", "views.web", data)
			var last engine.Summary
			b.ResetTimer()
			for i := range b.N {
				dir := b.TempDir()
				cfg := checkpointJob(t, fmt.Sprintf("bench%d", i), backend, dir)
				ctx := testCtx(t)
				j, err := runner.Prepare(ctx, cfg, runner.Options{Conn: e.nc, Wasm: wasm, UntilCaughtUp: true})
				if err != nil {
					b.Fatal(err)
				}
				last, err = j.Run(ctx)
				j.Close(context.Background())
				if err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			c := last.Checkpoints
			if c == nil || c.Completed < 2 {
				b.Fatalf("%+v checkpoints: the run is too short to measure", c)
			}
			b.ReportMetric(float64(c.PauseP50.Microseconds())/1000, "pause-p50-ms")
			b.ReportMetric(float64(c.PauseP99.Microseconds())/1000, "pause-p99-ms")
			b.ReportMetric(float64(c.Completed), "checkpoints")
			b.ReportMetric(last.EventsPerSec, "events/s")
			b.Logf("%s", c)
		})
	}
}
