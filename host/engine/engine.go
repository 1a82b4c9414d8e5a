package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wasmstream/wasmstream/abi"
	"github.com/wasmstream/wasmstream/checkpoint"
	"github.com/wasmstream/wasmstream/host/job"
	"github.com/wasmstream/wasmstream/host/jsonscan"
	"github.com/wasmstream/wasmstream/host/process"
	"github.com/wasmstream/wasmstream/statestore"
	"github.com/wasmstream/wasmstream/statestore/memory"
	"github.com/wasmstream/wasmstream/statestore/pebble"
)

// Header names the engine sets on what it publishes.
const (
	HeaderKey           = "Wasmstream-Key"
	HeaderDlqReason     = "Wasmstream-Dlq-Reason"
	HeaderSourceSubject = "Wasmstream-Source-Subject"
	HeaderSourceSeq     = "Wasmstream-Source-Seq"
	// HeaderEventTime and HeaderWatermark are set on late events published
	// to the late subject: the event's time and the watermark it was behind
	// (ms since the Unix epoch, decimal).
	HeaderEventTime = "Wasmstream-Event-Time"
	HeaderWatermark = "Wasmstream-Watermark"
	// HeaderTimerDomain and HeaderTimerTime are set on the dead letter of
	// a timer the function rejected: "event" or "processing", and the
	// timer's time. Its payload is the timer's payload and HeaderKey its key.
	HeaderTimerDomain = "Wasmstream-Timer-Domain"
	HeaderTimerTime   = "Wasmstream-Timer-Time"
)

// Defaults for Config fields left zero.
const (
	DefaultMaxPublishPending = 4096
	DefaultStatusEvery       = 5 * time.Second
	DefaultAckWait           = time.Minute
	// batchesPerWorker is how many batches each worker cycles through: one
	// being filled, the others queued or being processed.
	batchesPerWorker = 4
)

// Config is what an engine runs.
type Config struct {
	// Conn is the NATS connection to use; when nil, the engine connects to
	// URL and closes the connection when Run returns.
	Conn *nats.Conn
	URL  string

	// Job is the validated job config.
	Job *job.Config

	// Fields are the fields the function receives, in slot order, with
	// job overrides applied (see ResolveFields). An empty Path means Name.
	Fields []abi.FieldDesc
	// Outputs are the function's side outputs: Outputs[i] is port i+1.
	Outputs []string
	// States are the function's states: the engine creates the job's
	// backend (state.backend) for them when Backend is nil, and cleans up
	// the expired entries of those with a TTL.
	States []abi.StateDesc
	// Backend is the keyed state backend; the caller owns it. When nil the
	// engine opens the backend the job config names (memory, or pebble in
	// state.dir) when Run starts, and flushes and closes it when Run ends.
	Backend statestore.Backend
	// UsesTimers says that the function registers timers (a plugin that
	// imports timer_register). Run refuses a backend that keeps no timers
	// for such a function, as it does for a process.TimerFunction.
	UsesTimers bool

	// NewFunction makes the function instance of one worker. It is called
	// once per worker when Run starts.
	NewFunction func(worker int) (process.Function, error)
	// PluginConfig is handed to the function at open; nil means
	// Job.Plugin.Config.
	PluginConfig map[string]string

	// Logf receives the engine's log lines; nil discards them.
	Logf func(format string, args ...any)
	// Warnf receives warnings (a damaged checkpoint skipped, a checkpoint
	// that failed); nil sends them to Logf.
	Warnf func(format string, args ...any)
	// Status, when set, is called every StatusEvery (default 5s) with the
	// current counters.
	Status      func(Status)
	StatusEvery time.Duration
	// UntilCaughtUp makes Run return once it has processed every event the
	// stream held (per the subject filter) when Run started.
	UntilCaughtUp bool
	// UntilSeq, when more than 0, makes Run return once it has processed
	// the events up to this stream sequence, waiting for them if the stream
	// does not hold them yet. With UntilCaughtUp, Run returns at whichever
	// comes first.
	//
	// A bounded run (UntilCaughtUp or UntilSeq) that reaches its end raises
	// the watermark to the maximum (math.MaxInt64) after the last event, so
	// every remaining event-time timer fires before Run returns.
	// Processing-time timers do not fire at the end: they stay registered.
	UntilSeq uint64

	// Clock is the processing time: it fires processing-time timers,
	// measures the source's idle timeout and answers process.Env.Now. Nil
	// means WallClock; tests use a ManualClock.
	Clock Clock

	// Contract and PluginHash describe the plugin in checkpoint metadata;
	// a restore checks the checkpoint's states against Contract.States.
	Contract   abi.Contract
	PluginHash string
	// Checkpoints is where the job's checkpoints are kept; nil opens the
	// storage the job's checkpoint section names (when it sets an
	// interval). The caller owns a store it gives.
	Checkpoints *checkpoint.Store
	// RestoreFrom names the checkpoint to restore; 0 restores the latest
	// complete one. It applies when the job takes checkpoints.
	RestoreFrom uint64
	// NoRestore starts the job per source.start even when checkpoints
	// exist (checkpoints are still taken).
	NoRestore bool

	// Stdout receives stdout sinks' lines; nil means os.Stdout.
	Stdout io.Writer
	// MaxPublishPending bounds the asynchronous publishes awaiting an ack
	// (default 4096).
	MaxPublishPending int
	// AckWait bounds the wait for outstanding publish acks when Run ends
	// (default 1m).
	AckWait time.Duration
}

// Summary is what a run did. Status reports the same counters while it runs.
type Summary struct {
	Job string
	// EventsIn counts messages read from the stream.
	EventsIn int64
	// Processed counts events handed to each worker's function.
	Processed []int64
	// Outputs counts emitted records per output name.
	Outputs map[string]int64
	// Discarded counts records of outputs without a sink.
	Discarded int64
	// DeadLettered counts events sent to the dead-letter subject.
	DeadLettered int64
	// Late counts late events: events whose event time was at or below the
	// watermark when read. The job's late.policy says whether they went to
	// the late subject, to the function, or nowhere.
	Late int64
	// TimersFired counts timers handed to the function, both domains.
	TimersFired int64
	// Watermark is the source's event-time watermark (abi.NoWatermark
	// before the first; math.MaxInt64 once a bounded run ended).
	Watermark int64
	// Watermarks is each worker's watermark: the last one a batch brought
	// it.
	Watermarks []int64
	// Backend names the state backend: "memory", "pebble" or, for a
	// backend the caller gave, its Go type.
	Backend string
	// State is the backend's per-state statistics: keys and bytes held,
	// cache hits and misses, expired entries removed.
	State []statestore.StateStats
	// Checkpoints reports the run's checkpoints; nil when the job takes
	// none.
	Checkpoints *CheckpointStats
	// LastSeq is the stream sequence of the last event read.
	LastSeq      uint64
	Elapsed      time.Duration
	EventsPerSec float64
}

// Status is a snapshot of a running job's counters.
type Status = Summary

// TotalProcessed sums Processed.
func (s Summary) TotalProcessed() int64 {
	var n int64
	for _, p := range s.Processed {
		n += p
	}
	return n
}

func (s Summary) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d events in %s (%.0f/s), processed %v, dead-lettered %d", s.Job, s.EventsIn, s.Elapsed.Round(time.Millisecond), s.EventsPerSec, s.Processed, s.DeadLettered)
	for _, name := range sortedNames(s.Outputs) {
		fmt.Fprintf(&b, ", %s %d", name, s.Outputs[name])
	}
	if s.Discarded > 0 {
		fmt.Fprintf(&b, ", discarded %d", s.Discarded)
	}
	if s.Late > 0 {
		fmt.Fprintf(&b, ", late %d", s.Late)
	}
	if s.TimersFired > 0 {
		fmt.Fprintf(&b, ", timers fired %d", s.TimersFired)
	}
	if c := s.Checkpoints; c != nil {
		fmt.Fprintf(&b, ", %s", c)
	}
	for _, st := range s.State {
		fmt.Fprintf(&b, ", state %s %d keys %d bytes", st.Name, st.Keys, st.Bytes)
		if st.CacheHits+st.CacheMisses > 0 {
			fmt.Fprintf(&b, " hit ratio %.3f", st.HitRatio())
		}
		if st.Expired > 0 {
			fmt.Fprintf(&b, " expired %d", st.Expired)
		}
	}
	return b.String()
}

// ResolveFields applies the job's plugin.fields overrides to the fields a
// plugin declares and fills empty paths with the field name.
func ResolveFields(c *job.Config, declared []abi.FieldDesc) ([]abi.FieldDesc, error) {
	names := make([]string, len(declared))
	for i, f := range declared {
		names[i] = f.Name
	}
	if err := c.CheckFieldOverrides(names); err != nil {
		return nil, err
	}
	out := make([]abi.FieldDesc, len(declared))
	for i, f := range declared {
		out[i] = abi.FieldDesc{Name: f.Name, Path: c.FieldPath(f.Name, f.Path)}
	}
	return out, nil
}

// Engine runs one job. Run may be called once.
type Engine struct {
	cfg   Config
	job   *job.Config
	logf  func(format string, args ...any)
	paths []string // scanner paths: fields, then key paths, then event time
	nf    int      // plugin fields
	keyAt int      // first key slot
	tsAt  int      // event time slot or -1
	ports []port
	// eoSinks are the exactly-once sinks, in config order.
	eoSinks []job.Sink
	ran     atomic.Bool
	clock   Clock

	// event time
	timeKind   job.EventTimeKind
	timeName   string // field path or header name
	timeFormat string
	bound      int64 // max out-of-orderness, ms
	idle       int64 // idle timeout, ms; 0 = off
	latePolicy string

	// run state
	start     time.Time
	eventsIn  atomic.Int64
	lastSeq   atomic.Uint64
	dead      atomic.Int64
	discarded atomic.Int64
	late      atomic.Int64
	fired     atomic.Int64
	watermark atomic.Int64 // the source's
	backend   statestore.Backend
	ownsState bool                  // the engine opened backend and closes it
	stateName string                // Summary.Backend
	hasTTL    bool                  // some state has a TTL: workers clean up
	timers    statestore.TimerStore // nil when the backend keeps no timers
	workers   []*worker
	pub       jetstream.JetStream
	nc        *nats.Conn
	dlq       asideTarget
	lateOut   asideTarget
	stdout    *lineWriter
	stallOpt  jetstream.PublishOpt

	// checkpoints (checkpoint.go); cp is nil when the job takes none.
	// A restore sets resumeSeq (the first sequence to read, 0 = per
	// source.start) and the watermark the source and workers start at.
	cp          *coordinator
	resumeSeq   uint64
	restoredWM  int64
	restoredSeq uint64

	errMu     sync.Mutex
	err       error
	hasFailed atomic.Bool
	cancel    context.CancelFunc
}

// port is one output of the function and where its records go.
type port struct {
	name  string
	sinks []portSink
}

// portSink is one sink of a port.
type portSink struct {
	job.Sink
	// eo is the sink's index among the exactly-once sinks, or -1.
	eo int
	// kvPrefix is "$KV.<bucket>." for a kv sink.
	kvPrefix string
}

// New checks cfg and returns an engine ready to Run.
func New(cfg Config) (*Engine, error) {
	if cfg.Job == nil {
		return nil, errors.New("engine: Config.Job is nil: load a job config with job.Load")
	}
	j := cfg.Job
	if err := j.Validate(); err != nil {
		return nil, fmt.Errorf("engine: job config: %w", err)
	}
	if cfg.Conn == nil && cfg.URL == "" {
		return nil, errors.New("engine: no NATS server: set Config.Conn or Config.URL")
	}
	if cfg.NewFunction == nil {
		return nil, errors.New("engine: Config.NewFunction is nil: give a factory of process functions")
	}
	if cfg.Backend == nil && len(cfg.States) == 0 {
		// A stateless function is fine; an empty memory backend serves it.
		cfg.States = nil
	}
	if len(cfg.Fields) > abi.MaxFields {
		return nil, fmt.Errorf("engine: %d fields, at most %d allowed", len(cfg.Fields), abi.MaxFields)
	}
	e := &Engine{cfg: cfg, job: j, logf: cfg.Logf, tsAt: -1, clock: cfg.Clock}
	for _, st := range cfg.States {
		if st.TTL != nil {
			e.hasTTL = true
		}
	}
	if e.logf == nil {
		e.logf = func(string, ...any) {}
	}
	if e.clock == nil {
		e.clock = WallClock{}
	}
	e.watermark.Store(abi.NoWatermark)
	e.restoredWM = abi.NoWatermark
	e.timeKind, e.timeName, e.timeFormat = j.TimeSource()
	e.bound = j.EventTime.MaxOutOfOrderness.D().Milliseconds()
	e.idle = j.EventTime.IdleTimeout.D().Milliseconds()
	if j.EventTime.IdleTimeout > 0 && e.idle == 0 {
		e.idle = 1
	}
	e.latePolicy = j.LatePolicy()
	for _, f := range cfg.Fields {
		p := f.Path
		if p == "" {
			p = f.Name
		}
		e.paths = append(e.paths, p)
	}
	e.nf = len(cfg.Fields)
	e.keyAt = len(e.paths)
	e.paths = append(e.paths, j.Key.Paths()...)
	if e.timeKind == job.EventTimeFromField {
		e.tsAt = len(e.paths)
		e.paths = append(e.paths, e.timeName)
	}
	if _, err := jsonscan.Compile(e.paths); err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	warnings, err := j.CheckOutputs(cfg.Outputs)
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	for _, w := range warnings {
		e.logf("warning: %s", w)
	}
	names := append([]string{"main"}, cfg.Outputs...)
	e.ports = make([]port, len(names))
	for i, n := range names {
		e.ports[i].name = n
	}
	eo := 0
	for _, s := range j.Sinks {
		ps := portSink{Sink: s, eo: -1}
		if s.Type == job.SinkKV {
			ps.kvPrefix = "$KV." + s.Bucket + "."
		}
		if s.ExactlyOnce() {
			if !j.Checkpoint.Enabled() {
				return nil, fmt.Errorf("engine: sink %s is exactly_once but the job takes no checkpoints: set checkpoint.interval", s.Name())
			}
			ps.eo = eo
			eo++
			e.eoSinks = append(e.eoSinks, s)
		}
		for i := range e.ports {
			if e.ports[i].name == s.Output {
				e.ports[i].sinks = append(e.ports[i].sinks, ps)
			}
		}
	}
	return e, nil
}

// fail records the first error and stops the run.
func (e *Engine) fail(err error) {
	e.errMu.Lock()
	defer e.errMu.Unlock()
	if e.err != nil {
		return
	}
	e.err = err
	e.hasFailed.Store(true)
	if e.cancel != nil {
		e.cancel()
	}
}

func (e *Engine) failed() bool { return e.hasFailed.Load() }

func (e *Engine) errVal() error {
	e.errMu.Lock()
	defer e.errMu.Unlock()
	return e.err
}

// Run runs the job until ctx is done, the stream is caught up (with
// UntilCaughtUp) or a function fails. It returns the run's summary; the
// error names the worker and the cause when a function failed. A done ctx
// is a normal stop and returns a nil error.
func (e *Engine) Run(ctx context.Context) (Summary, error) {
	if !e.ran.CompareAndSwap(false, true) {
		return Summary{}, errors.New("engine: Run called twice: make a new Engine per run")
	}
	e.start = time.Now()
	nc := e.cfg.Conn
	if nc == nil {
		var err error
		nc, err = nats.Connect(e.cfg.URL, nats.Name("wasmstream "+e.job.Name), nats.MaxReconnects(-1))
		if err != nil {
			return Summary{}, fmt.Errorf("engine: connect to %s: %w: is the NATS server running?", e.cfg.URL, err)
		}
		defer nc.Close()
	}
	e.nc = nc
	if e.job.Checkpoint.Enabled() {
		if err := e.newCoordinator(ctx); err != nil {
			return e.summary(), err
		}
	}
	if err := e.openBackend(ctx); err != nil {
		return e.summary(), err
	}
	sum, err := e.run(ctx)
	if e.ownsState {
		// The workers have stopped: nothing else calls the backend.
		if cerr := e.closeBackend(); cerr != nil && err == nil {
			err = cerr
		}
	}
	return sum, err
}

// run is Run with the backend open.
func (e *Engine) run(ctx context.Context) (Summary, error) {
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	e.cancel = cancel

	nc := e.nc
	if err := e.setup(runCtx, nc); err != nil {
		return e.summary(), err
	}
	if e.cp != nil {
		// Outputs of the restored checkpoint not published yet.
		if err := e.cp.finishRestored(runCtx); err != nil {
			return e.summary(), err
		}
	}

	// Workers.
	var wg sync.WaitGroup
	for i := range e.job.Parallelism {
		w, err := e.newWorker(runCtx, i)
		if err != nil {
			for _, w := range e.workers {
				_ = w.fn.Close(context.WithoutCancel(ctx))
			}
			return e.summary(), err
		}
		e.workers = append(e.workers, w)
	}
	for _, w := range e.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.run(context.WithoutCancel(ctx))
		}()
	}

	// Status reports.
	statusDone := make(chan struct{})
	var statusWG sync.WaitGroup
	if e.cfg.Status != nil {
		every := e.cfg.StatusEvery
		if every <= 0 {
			every = DefaultStatusEvery
		}
		statusWG.Add(1)
		go func() {
			defer statusWG.Done()
			t := time.NewTicker(every)
			defer t.Stop()
			for {
				select {
				case <-t.C:
					e.cfg.Status(e.summary())
				case <-statusDone:
					return
				}
			}
		}()
	}

	src := e.newSource()
	src.ctx = runCtx
	var cpWG sync.WaitGroup
	cpDone := make(chan struct{})
	if e.cp != nil {
		cpWG.Add(1)
		go func() {
			defer cpWG.Done()
			e.cp.loop(runCtx, src, cpDone)
		}()
	}
	ended, srcErr := e.runSource(runCtx, src)
	if srcErr != nil {
		e.fail(srcErr)
	}
	if ended && !e.failed() {
		if err := src.finish(); err != nil && !errors.Is(err, errStopping) {
			e.fail(err)
		}
	}
	if e.cp != nil {
		close(cpDone)
		cpWG.Wait()
		if ended && !e.failed() {
			// A bounded run ends with a checkpoint, so the exactly-once
			// sinks publish everything it produced.
			e.cp.checkpoint(runCtx, src, true)
		}
	}
	src.stop()
	for _, w := range e.workers {
		close(w.in)
	}
	wg.Wait()
	close(statusDone)
	statusWG.Wait()
	if e.stdout != nil {
		if err := e.stdout.flush(); err != nil {
			e.fail(fmt.Errorf("stdout sink: %w", err))
		}
	}
	e.waitAcks()
	sum := e.summary()
	if err := e.errVal(); err != nil {
		return sum, err
	}
	return sum, nil
}

func (e *Engine) waitAcks() {
	wait := e.cfg.AckWait
	if wait <= 0 {
		wait = DefaultAckWait
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-e.pub.PublishAsyncComplete():
	case <-t.C:
		e.fail(fmt.Errorf("engine: %d publishes still unacknowledged after %s: check the sink and dead-letter streams", e.pub.PublishAsyncPending(), wait))
	}
	if e.dlq.core {
		if err := e.nc.Flush(); err != nil {
			e.fail(fmt.Errorf("dead letters: flush: %w", err))
		}
	}
}

// setup prepares the publishing side: the JetStream handle, sink and
// dead-letter streams, the stdout writer and the state backend.
func (e *Engine) setup(ctx context.Context, nc *nats.Conn) error {
	maxPending := e.cfg.MaxPublishPending
	if maxPending <= 0 {
		maxPending = DefaultMaxPublishPending
	}
	pub, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(maxPending),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, m *nats.Msg, err error) {
			e.fail(fmt.Errorf("publish to %s failed: %w", m.Subject, err))
		}))
	if err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	e.pub = pub
	e.stallOpt = jetstream.WithStallWait(time.Minute)

	for i, s := range e.job.Sinks {
		switch s.Type {
		case job.SinkJetStream:
			ok, err := e.ensureCaptured(ctx, s.Subject, s.Create)
			if err != nil {
				return fmt.Errorf("engine: sinks[%d] (%s): %w", i, s.Subject, err)
			}
			if !ok {
				return fmt.Errorf("engine: sinks[%d]: no JetStream stream captures subject %s: create one (nats stream add --subjects %s) or set create: true on the sink", i, s.Subject, s.Subject)
			}
		case job.SinkKV:
			if err := e.ensureBucket(ctx, s); err != nil {
				return fmt.Errorf("engine: sinks[%d] (kv bucket %s): %w", i, s.Bucket, err)
			}
		case job.SinkStdout:
			if e.stdout == nil {
				w := e.cfg.Stdout
				if w == nil {
					w = os.Stdout
				}
				e.stdout = newLineWriter(w)
			}
		}
	}
	e.dlq.subject = e.job.DeadLetter.Subject
	ok, err := e.ensureCaptured(ctx, e.dlq.subject, e.job.DeadLetter.Create)
	if err != nil {
		return fmt.Errorf("engine: dead_letter (%s): %w", e.dlq.subject, err)
	}
	if !ok {
		e.dlq.core = true
		e.logf("warning: no JetStream stream captures the dead-letter subject %s: dead letters are published without being stored (set dead_letter.create: true to keep them)", e.dlq.subject)
	}
	if e.latePolicy == job.LateSideOutput {
		e.lateOut.subject = e.job.LateSubject()
		ok, err := e.ensureCaptured(ctx, e.lateOut.subject, e.job.Late.Create)
		if err != nil {
			return fmt.Errorf("engine: late (%s): %w", e.lateOut.subject, err)
		}
		if !ok {
			e.lateOut.core = true
			// With the publish time as event time, an event is late only if
			// the server's clock went back: no need to warn.
			if e.timeKind != job.EventTimeFromPublish {
				e.logf("warning: no JetStream stream captures the late-event subject %s: late events are published without being stored (set late.create: true to keep them, or late.policy: drop)", e.lateOut.subject)
			}
		}
	}
	return nil
}

// openBackend takes the caller's backend, restores the job's checkpoint,
// or opens the backend the job config names; then it finds its timer
// store.
func (e *Engine) openBackend(ctx context.Context) error {
	e.backend = e.cfg.Backend
	if e.backend != nil {
		e.stateName = fmt.Sprintf("%T", e.backend)
		if e.cp != nil && !e.cfg.NoRestore {
			return errors.New("engine: the job takes checkpoints but Config.Backend is set: a restore needs the engine to open the job's backend (leave Config.Backend nil) or set Config.NoRestore")
		}
	} else {
		sc := statestore.Config{States: e.cfg.States, MaxParallelism: e.job.MaxParallelism, Clock: e.clock.Now}
		restored := false
		if e.cp != nil && !e.cfg.NoRestore {
			var err error
			if restored, err = e.restore(ctx, sc); err != nil {
				return err
			}
		}
		switch st := e.job.State; {
		case restored:
		case st.Backend == job.BackendPebble:
			dir := st.ResolvedDir(e.job.Dir)
			b, err := pebble.Open(dir, sc, e.pebbleOptions())
			if err != nil {
				return fmt.Errorf("engine: state.backend pebble: %w", err)
			}
			e.backend = b
			e.logf("state: pebble in %s", dir)
		default:
			b, err := memory.New(sc)
			if err != nil {
				return fmt.Errorf("engine: state backend: %w", err)
			}
			e.backend = b
		}
		e.ownsState = true
		e.stateName = e.job.State.Backend
	}
	if ts, ok := e.backend.(statestore.TimerStore); ok {
		e.timers = ts
	} else if e.cfg.UsesTimers {
		err := fmt.Errorf("engine: the function registers timers but the state backend (%s) keeps none: use a backend that implements statestore.TimerStore (memory or pebble)", e.stateName)
		if e.ownsState {
			_ = e.backend.Close()
			e.backend, e.ownsState = nil, false
		}
		return err
	}
	if e.cp != nil {
		if err := e.cp.prepare(ctx); err != nil {
			if e.ownsState {
				_ = e.backend.Close()
				e.backend, e.ownsState = nil, false
			}
			return err
		}
	}
	return nil
}

// pebbleOptions are the Pebble options of the job's state section.
func (e *Engine) pebbleOptions() pebble.Options {
	st := e.job.State
	return pebble.Options{
		BlockCacheBytes: int64(st.BlockCacheMB) << 20,
		MemTableBytes:   int64(st.MemTableMB) << 20,
		BloomBitsPerKey: st.BloomBits,
		Compression:     st.Compression,
		CacheBytes:      int64(st.CacheMB) << 20,
		Logf:            e.logf,
	}
}

// closeBackend makes the state durable and closes the backend the engine
// opened.
func (e *Engine) closeBackend() error {
	if err := e.backend.Flush(); err != nil {
		_ = e.backend.Close()
		return fmt.Errorf("engine: state backend %s: flush: %w", e.stateName, err)
	}
	if err := e.backend.Close(); err != nil {
		return fmt.Errorf("engine: state backend %s: close: %w", e.stateName, err)
	}
	return nil
}

// ensureCaptured reports whether a stream captures subj, creating one when
// create is set.
func (e *Engine) ensureCaptured(ctx context.Context, subj string, create bool) (bool, error) {
	_, err := e.pub.StreamNameBySubject(ctx, subj)
	if err == nil {
		return true, nil
	}
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return false, err
	}
	if !create {
		return false, nil
	}
	name := streamNameFor(subj)
	if _, err := e.pub.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{subj}}); err != nil {
		return false, fmt.Errorf("create stream %s for %s: %w", name, subj, err)
	}
	e.logf("created stream %s for subject %s", name, subj)
	return true, nil
}

// streamNameFor derives a stream name from a subject: "freqcap.capped"
// becomes FREQCAP_CAPPED.
func streamNameFor(subj string) string {
	b := []byte(strings.ToUpper(subj))
	for i, c := range b {
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			b[i] = '_'
		}
	}
	return string(b)
}

// summary snapshots the counters.
func (e *Engine) summary() Summary {
	s := Summary{
		Job:          e.job.Name,
		EventsIn:     e.eventsIn.Load(),
		Processed:    make([]int64, e.job.Parallelism),
		Outputs:      make(map[string]int64, len(e.ports)),
		Discarded:    e.discarded.Load(),
		DeadLettered: e.dead.Load(),
		Late:         e.late.Load(),
		TimersFired:  e.fired.Load(),
		Watermark:    e.watermark.Load(),
		Watermarks:   make([]int64, e.job.Parallelism),
		LastSeq:      e.lastSeq.Load(),
		Elapsed:      time.Since(e.start),
	}
	for i := range s.Watermarks {
		s.Watermarks[i] = abi.NoWatermark
	}
	for _, p := range e.ports {
		s.Outputs[p.name] = 0
	}
	for i, w := range e.workers {
		s.Processed[i] = w.processed.Load()
		s.Watermarks[i] = w.wm.Load()
		for p := range e.ports {
			s.Outputs[e.ports[p].name] += w.outputs[p].Load()
		}
	}
	if e.backend != nil {
		s.Backend = e.stateName
		s.State = e.backend.Stats()
	}
	if e.cp != nil {
		cs := e.cp.statsNow()
		s.Checkpoints = &cs
	}
	if secs := s.Elapsed.Seconds(); secs > 0 {
		s.EventsPerSec = float64(s.EventsIn) / secs
	}
	return s
}

func sortedNames(m map[string]int64) []string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	for i := 1; i < len(names); i++ {
		for j := i; j > 0 && names[j] < names[j-1]; j-- {
			names[j], names[j-1] = names[j-1], names[j]
		}
	}
	return names
}

// asideTarget is a subject for events that leave the data path (dead
// letters, late events); core is set when no stream captures it and
// messages are published without an ack.
type asideTarget struct {
	subject string
	core    bool
}

// publish sends m to the target's subject; what names the target in
// errors.
func (e *Engine) publishAside(t *asideTarget, m *nats.Msg, what string) error {
	m.Subject = t.subject
	if t.core {
		if err := e.nc.PublishMsg(m); err != nil {
			return fmt.Errorf("%s to %s: %w", what, t.subject, err)
		}
		return nil
	}
	if _, err := e.pub.PublishMsgAsync(m, e.stallOpt); err != nil {
		return fmt.Errorf("%s to %s: %w", what, t.subject, err)
	}
	return nil
}

// deadLetter publishes payload to the dead-letter subject with the reason
// and origin headers (the source subject only when not empty). orig, when
// not nil, contributes the original headers.
func (e *Engine) deadLetter(payload []byte, reason, subject string, seq uint64, orig nats.Header) error {
	h := make(nats.Header, len(orig)+3)
	for k, v := range orig {
		h[k] = v
	}
	h.Set(HeaderDlqReason, reason)
	if subject != "" {
		h.Set(HeaderSourceSubject, subject)
	}
	h.Set(HeaderSourceSeq, strconv.FormatUint(seq, 10))
	e.dead.Add(1)
	return e.publishAside(&e.dlq, &nats.Msg{Data: payload, Header: h}, "dead letter")
}

// sideOutputLate publishes a late event, with its original headers, to the
// late subject with headers giving its event time, the watermark it missed
// and its origin.
func (e *Engine) sideOutputLate(msg jetstream.Msg, seq uint64, ts, wm int64) error {
	orig := msg.Headers()
	h := make(nats.Header, len(orig)+4)
	for k, v := range orig {
		h[k] = v
	}
	h.Set(HeaderEventTime, strconv.FormatInt(ts, 10))
	h.Set(HeaderWatermark, strconv.FormatInt(wm, 10))
	h.Set(HeaderSourceSubject, msg.Subject())
	h.Set(HeaderSourceSeq, strconv.FormatUint(seq, 10))
	return e.publishAside(&e.lateOut, &nats.Msg{Data: msg.Data(), Header: h}, "late event")
}

// lineWriter serialises stdout sink lines from all workers.
type lineWriter struct {
	mu  sync.Mutex
	w   io.Writer
	buf []byte
	err error
}

func newLineWriter(w io.Writer) *lineWriter { return &lineWriter{w: w} }

func (l *lineWriter) line(output string, key, value []byte) {
	l.mu.Lock()
	l.buf = append(l.buf, output...)
	l.buf = append(l.buf, ' ')
	if len(key) == 0 {
		l.buf = append(l.buf, '-')
	} else {
		l.buf = append(l.buf, key...)
	}
	l.buf = append(l.buf, ' ')
	l.buf = append(l.buf, value...)
	l.buf = append(l.buf, '\n')
	if len(l.buf) >= 64<<10 {
		l.flushLocked()
	}
	l.mu.Unlock()
}

func (l *lineWriter) flushLocked() {
	if len(l.buf) > 0 && l.err == nil {
		_, l.err = l.w.Write(l.buf)
	}
	l.buf = l.buf[:0]
}

func (l *lineWriter) flush() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.flushLocked()
	return l.err
}
