package engine

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmstream/wasmstream/abi"
	"github.com/wasmstream/wasmstream/examples/freqcap"
	"github.com/wasmstream/wasmstream/host/job"
	"github.com/wasmstream/wasmstream/host/process"
	"github.com/wasmstream/wasmstream/statestore"
	"github.com/wasmstream/wasmstream/statestore/memory"
	"github.com/wasmstream/wasmstream/statestore/pebble"
)

// TestPebbleFromJobConfig runs the freqcap job with state.backend pebble:
// the engine opens the directory, keeps state and timers in it, and closes
// it when Run returns (so it can be opened again).
func TestPebbleFromJobConfig(t *testing.T) {
	e := newEnv(t)
	createStream(t, e, "FREQCAP", "views.>")
	data := freqcap.Generate(3000, freqcap.GenOptions{Seed: 5, Users: 100, Ads: 10})
	if err := freqcap.Publish(testCtx(t), e.js, "views.x", data, nil); err != nil {
		t.Fatal(err)
	}
	c := freqcapJob(t, 2)
	c.Dir = t.TempDir()
	c.State = job.State{Backend: job.BackendPebble, Dir: "state"}
	c.ApplyDefaults()
	var logged atomic.Int64
	cfg := freqcapConfig(t, e, c)
	cfg.Logf = func(format string, args ...any) {
		if strings.HasPrefix(format, "pebble: ") {
			logged.Add(1)
		}
		t.Logf(format, args...)
	}
	eng, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := eng.Run(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if sum.Backend != job.BackendPebble || sum.TimersFired != 2*int64(len(data)) || sum.Outputs["capped"] == 0 {
		t.Errorf("summary %s: want pebble state, every view's two timers fired, some pairs capped", sum)
	}
	if logged.Load() == 0 {
		t.Error("no Pebble log line reached Config.Logf")
	}
	b, err := pebble.Open(filepath.Join(c.Dir, "state"), statestore.Config{States: freqcap.Contract().States, MaxParallelism: c.MaxParallelism}, pebble.Options{})
	if err != nil {
		t.Fatalf("the state directory (relative to the job config) is not closed or not there: %v", err)
	}
	if n := b.TimerCount(); n != 0 {
		t.Errorf("%d timers left after a bounded run", n)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
}

// noTimers is a real memory backend seen through the Backend interface
// only, so that it keeps no timers.
type noTimers struct{ statestore.Backend }

func TestBackendWithoutTimers(t *testing.T) {
	e := newEnv(t)
	createStream(t, e, "FREQCAP", "views.>")
	if err := freqcap.Publish(testCtx(t), e.js, "views.x", freqcap.Generate(10, freqcap.GenOptions{Seed: 6}), nil); err != nil {
		t.Fatal(err)
	}
	c := freqcapJob(t, 1)
	mem, err := memory.New(statestore.Config{States: freqcap.Contract().States, MaxParallelism: c.MaxParallelism})
	if err != nil {
		t.Fatal(err)
	}

	// A process.TimerFunction.
	cfg := freqcapConfig(t, e, c)
	cfg.Backend = noTimers{mem}
	eng, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := eng.Run(testCtx(t))
	if err == nil || !strings.Contains(err.Error(), "handles timers") || !strings.Contains(err.Error(), "keeps none") {
		t.Errorf("Run: %v, want a refusal of the backend without timers", err)
	}
	if sum.EventsIn != 0 {
		t.Errorf("read %d events", sum.EventsIn)
	}

	// A function that registers timers (as a plugin importing
	// timer_register), whatever its Go type.
	cfg = freqcapConfig(t, e, c)
	cfg.Backend = noTimers{mem}
	cfg.UsesTimers = true
	cfg.NewFunction = func(int) (process.Function, error) { return &ttlWriter{}, nil }
	eng, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := eng.Run(testCtx(t)); err == nil || !strings.Contains(err.Error(), "registers timers") || !strings.Contains(err.Error(), "keeps none") {
		t.Errorf("Run: %v, want a refusal of the backend without timers", err)
	}
}

// ttlWriter puts each event's key into value state 0.
type ttlWriter struct{ st statestore.Backend }

func (w *ttlWriter) Open(_ context.Context, env process.Env) error { w.st = env.State; return nil }
func (w *ttlWriter) ProcessBatch(_ context.Context, evs []process.Event, _ process.Collector) error {
	for i := range evs {
		if err := w.st.Put(evs[i].KeyGroup, 0, evs[i].Key, []byte("v")); err != nil {
			return err
		}
	}
	return nil
}
func (w *ttlWriter) Close(context.Context) error { return nil }

// TestTTLCleanupWhileIdle writes keys of a state with a processing-time TTL,
// moves the clock past it, and waits for the idle workers' cleanup to remove
// every key: nothing reads them, so only CleanupExpired can.
func TestTTLCleanupWhileIdle(t *testing.T) {
	const n = 2000
	for _, backend := range []string{job.BackendMemory, job.BackendPebble} {
		t.Run(backend, func(t *testing.T) {
			e := newEnv(t)
			createStream(t, e, "FREQCAP", "views.>")
			if err := freqcap.Publish(testCtx(t), e.js, "views.x", freqcap.Generate(n, freqcap.GenOptions{Seed: 8, Users: 100_000}), nil); err != nil {
				t.Fatal(err)
			}
			c := freqcapJob(t, 2)
			if backend == job.BackendPebble {
				c.State = job.State{Backend: job.BackendPebble, Dir: t.TempDir()}
				c.ApplyDefaults()
			}
			clock := NewManualClock(1_000_000)
			cfg := freqcapConfig(t, e, c)
			cfg.States = []abi.StateDesc{{Name: "seen", Kind: abi.KindValue, TTL: &abi.TTL{Millis: 60_000}}}
			cfg.NewFunction = func(int) (process.Function, error) { return &ttlWriter{}, nil }
			cfg.Clock = clock
			cfg.UntilCaughtUp = false
			cfg.StatusEvery = 5 * time.Millisecond
			ctx, cancel := context.WithCancel(testCtx(t))
			defer cancel()
			var keys atomic.Int64
			keys.Store(-1)
			advanced := false
			cfg.Status = func(s Status) {
				switch {
				case !advanced && s.TotalProcessed() == n:
					keys.Store(s.State[0].Keys)
					clock.Advance(2 * time.Minute)
					advanced = true
				case advanced && s.State[0].Expired == keys.Load():
					cancel()
				}
			}
			eng, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			sum, err := eng.Run(ctx)
			if err != nil {
				t.Fatal(err)
			}
			st := sum.State[0]
			if keys.Load() <= 0 || st.Keys != 0 || st.Expired != keys.Load() {
				t.Errorf("%d keys written, then %d left and %d expired: want every key expired", keys.Load(), st.Keys, st.Expired)
			}
		})
	}
}

// ttlEventWriter puts each event's key into value state 0 at the event's
// time, as the Wasm host does for a plugin's state calls.
type ttlEventWriter struct{ ttlWriter }

func (w *ttlEventWriter) ProcessBatch(_ context.Context, evs []process.Event, _ process.Collector) error {
	for i := range evs {
		w.st.SetEventTime(evs[i].KeyGroup, evs[i].Time)
		if err := w.st.Put(evs[i].KeyGroup, 0, evs[i].Key, []byte("v")); err != nil {
			return err
		}
	}
	return nil
}

// TestEventTimeTTLFollowsWatermark writes keys of a state with an event-time
// TTL of one minute, and checks that nothing expires while the watermark is
// before their expiry, and that everything does, in every key group, once a
// later event moves the watermark past it.
func TestEventTimeTTLFollowsWatermark(t *testing.T) {
	const (
		n  = 2000
		t0 = int64(1_735_689_600_000)
	)
	for _, backend := range []string{job.BackendMemory, job.BackendPebble} {
		t.Run(backend, func(t *testing.T) {
			e := newEnv(t)
			createStream(t, e, "FREQCAP", "views.>")
			if err := freqcap.Publish(testCtx(t), e.js, "views.x", freqcap.Generate(n, freqcap.GenOptions{Seed: 9, Users: 100_000, StartMs: t0, StepMs: 1}), nil); err != nil {
				t.Fatal(err)
			}
			c := freqcapJob(t, 2)
			if backend == job.BackendPebble {
				c.State = job.State{Backend: job.BackendPebble, Dir: t.TempDir()}
				c.ApplyDefaults()
			}
			cfg := freqcapConfig(t, e, c)
			cfg.States = []abi.StateDesc{{Name: "seen", Kind: abi.KindValue, TTL: &abi.TTL{Millis: 60_000, Domain: abi.TimeEvent}}}
			cfg.NewFunction = func(int) (process.Function, error) { return &ttlEventWriter{}, nil }
			cfg.UntilCaughtUp = false
			cfg.StatusEvery = 5 * time.Millisecond
			ctx, cancel := context.WithCancel(testCtx(t))
			defer cancel()
			var keys, expiredBefore atomic.Int64
			keys.Store(-1)
			var published atomic.Bool
			cfg.Status = func(s Status) {
				switch {
				case !published.Load() && s.TotalProcessed() == n:
					keys.Store(s.State[0].Keys)
					expiredBefore.Store(s.State[0].Expired)
					published.Store(true)
					// An event ten minutes later moves the watermark past
					// every expiry (the job's bound is one minute).
					go func() {
						late := fmt.Appendf(nil, `{"user_no":999999999,"da_id":1,"log_time":%d}`, t0+10*60_000)
						if err := freqcap.Publish(ctx, e.js, "views.x", [][]byte{late}, nil); err != nil && ctx.Err() == nil {
							t.Error(err)
						}
					}()
				case published.Load() && s.State[0].Expired >= keys.Load():
					cancel()
				}
			}
			eng, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			sum, err := eng.Run(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if keys.Load() <= 0 || expiredBefore.Load() != 0 {
				t.Errorf("%d keys written, %d expired before the watermark passed their expiry: want keys and none expired", keys.Load(), expiredBefore.Load())
			}
			// The last event's own key is written at the new time and stays.
			if st := sum.State[0]; st.Expired != keys.Load() || st.Keys != 1 {
				t.Errorf("after the watermark passed: %d keys left, %d expired; want 1 left and %d expired", st.Keys, st.Expired, keys.Load())
			}
		})
	}
}
