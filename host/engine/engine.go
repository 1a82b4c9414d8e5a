package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wasmstream/wasmstream/abi"
	"github.com/wasmstream/wasmstream/host/job"
	"github.com/wasmstream/wasmstream/host/jsonscan"
	"github.com/wasmstream/wasmstream/host/process"
	"github.com/wasmstream/wasmstream/statestore"
	"github.com/wasmstream/wasmstream/statestore/memory"
)

// Header names the engine sets on what it publishes.
const (
	HeaderKey           = "Wasmstream-Key"
	HeaderDlqReason     = "Wasmstream-Dlq-Reason"
	HeaderSourceSubject = "Wasmstream-Source-Subject"
	HeaderSourceSeq     = "Wasmstream-Source-Seq"
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
	// States are the function's states, for the memory backend the engine
	// creates when Backend is nil.
	States []abi.StateDesc
	// Backend is the keyed state backend; the caller owns it. When nil the
	// engine creates an in-memory backend for States and closes it.
	Backend statestore.Backend

	// NewFunction makes the function instance of one worker. It is called
	// once per worker when Run starts.
	NewFunction func(worker int) (process.Function, error)
	// PluginConfig is handed to the function at open; nil means
	// Job.Plugin.Config.
	PluginConfig map[string]string

	// Logf receives the engine's log lines; nil discards them.
	Logf func(format string, args ...any)
	// Status, when set, is called every StatusEvery (default 5s) with the
	// current counters.
	Status      func(Status)
	StatusEvery time.Duration
	// UntilCaughtUp makes Run return once it has processed every event the
	// stream held (per the subject filter) when Run started.
	UntilCaughtUp bool

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
	// State is the backend's per-state key and byte counts.
	State []statestore.StateStats
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
	for _, st := range s.State {
		fmt.Fprintf(&b, ", state %s %d keys %d bytes", st.Name, st.Keys, st.Bytes)
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
	paths []string // scanner paths: fields, then key paths, then timestamp
	nf    int      // plugin fields
	keyAt int      // first key slot
	tsAt  int      // timestamp slot or -1
	ports []port
	ran   atomic.Bool

	// run state
	start     time.Time
	eventsIn  atomic.Int64
	lastSeq   atomic.Uint64
	dead      atomic.Int64
	discarded atomic.Int64
	backend   statestore.Backend
	workers   []*worker
	pub       jetstream.JetStream
	nc        *nats.Conn
	dlq       dlqTarget
	stdout    *lineWriter
	stallOpt  jetstream.PublishOpt

	errMu     sync.Mutex
	err       error
	hasFailed atomic.Bool
	cancel    context.CancelFunc
}

// port is one output of the function and where its records go.
type port struct {
	name  string
	sinks []job.Sink
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
	e := &Engine{cfg: cfg, job: j, logf: cfg.Logf, tsAt: -1}
	if e.logf == nil {
		e.logf = func(string, ...any) {}
	}
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
	if j.Timestamp != "" {
		e.tsAt = len(e.paths)
		e.paths = append(e.paths, j.Timestamp)
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
	for _, s := range j.Sinks {
		for i := range e.ports {
			if e.ports[i].name == s.Output {
				e.ports[i].sinks = append(e.ports[i].sinks, s)
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
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	e.cancel = cancel

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
	if err := e.setup(runCtx, nc); err != nil {
		return e.summary(), err
	}
	if e.cfg.Backend == nil {
		defer e.backend.Close()
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

	srcErr := e.runSource(runCtx)
	if srcErr != nil {
		e.fail(srcErr)
	}
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

	e.backend = e.cfg.Backend
	if e.backend == nil {
		b, err := memory.New(statestore.Config{States: e.cfg.States, MaxParallelism: e.job.MaxParallelism})
		if err != nil {
			return fmt.Errorf("engine: state backend: %w", err)
		}
		e.backend = b
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
		LastSeq:      e.lastSeq.Load(),
		Elapsed:      time.Since(e.start),
	}
	for _, p := range e.ports {
		s.Outputs[p.name] = 0
	}
	for i, w := range e.workers {
		s.Processed[i] = w.processed.Load()
		for p := range e.ports {
			s.Outputs[e.ports[p].name] += w.outputs[p].Load()
		}
	}
	if e.backend != nil {
		s.State = e.backend.Stats()
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

// dlqTarget is the dead-letter subject; core is set when no stream captures
// it and dead letters are published without an ack.
type dlqTarget struct {
	subject string
	core    bool
}

// deadLetter publishes payload to the dead-letter subject with the reason
// and origin headers. orig, when not nil, contributes the original headers.
func (e *Engine) deadLetter(payload []byte, reason, subject string, seq uint64, orig nats.Header) error {
	h := make(nats.Header, len(orig)+3)
	for k, v := range orig {
		h[k] = v
	}
	h.Set(HeaderDlqReason, reason)
	h.Set(HeaderSourceSubject, subject)
	h.Set(HeaderSourceSeq, fmt.Sprint(seq))
	m := &nats.Msg{Subject: e.dlq.subject, Data: payload, Header: h}
	e.dead.Add(1)
	if e.dlq.core {
		if err := e.nc.PublishMsg(m); err != nil {
			return fmt.Errorf("dead letter to %s: %w", e.dlq.subject, err)
		}
		return nil
	}
	if _, err := e.pub.PublishMsgAsync(m, e.stallOpt); err != nil {
		return fmt.Errorf("dead letter to %s: %w", e.dlq.subject, err)
	}
	return nil
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
