package engine

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/wasmstream/wasmstream/abi"
	"github.com/wasmstream/wasmstream/host/job"
	"github.com/wasmstream/wasmstream/host/process"
	"github.com/wasmstream/wasmstream/statestore"
)

// timerBatchSize bounds how many fired timers one OnTimers call receives.
const timerBatchSize = 256

// noTimer is a worker's next timer time when it has none.
const noTimer = math.MaxInt64

// TTL cleanup: after each batch, and every cleanupEvery while no batch
// comes, a worker removes up to cleanupLimit expired entries from each of
// its key groups (statestore.Backend.CleanupExpired), so the work follows
// what expires and a batch never waits for a large backlog.
const (
	cleanupLimit = 64
	cleanupEvery = time.Second
)

// worker owns one function instance and processes the batches of its key
// groups in order. It also fires the timers of its key groups: event-time
// timers after a batch raised its watermark, processing-time timers between
// batches and when the clock reaches them; never while ProcessBatch runs.
type worker struct {
	e    *Engine
	id   int
	fn   process.Function
	in   chan *batch // batches to process
	free chan *batch // processed batches, for the source to refill

	processed atomic.Int64
	outputs   []atomic.Int64 // per port
	col       collector

	// wm is the watermark of the last batch, wmSeq the sequence of the
	// event that set it. Only the worker writes them.
	wm    atomic.Int64
	wmSeq uint64

	// Timers; tfn is nil when the function has no OnTimers or the backend
	// keeps no timers.
	tfn       process.TimerFunction
	timers    *timerTracker
	kgs       []uint16 // the worker's key groups, with timers or TTL
	nextEvent int64    // no event-time timer is earlier; noTimer when none
	nextProc  int64    // no processing-time timer is earlier
	firing    int      // domain being fired, or -1
	firingTo  int64    // the firing's upper bound
	heap      kgHeap
	fired     []process.Event
	farena    arena
	// the pending wait for the clock to reach nextProc
	waitCh   <-chan struct{}
	waitStop func()
	waitAt   int64

	// Checkpoints: allKGs are the worker's key groups; stage holds the
	// records of the current epoch per exactly-once sink; sealed the
	// epochs sealed at barriers, until a checkpoint takes them.
	allKGs []uint16
	stage  []stageBuf
	sealMu sync.Mutex
	sealed []sealedEpoch
	// capture is the state capture of a checkpoint in progress.
	capture *workerCapture
}

var logLevels = [...]string{"trace", "debug", "info", "warn", "error"}

func (e *Engine) newWorker(ctx context.Context, id int) (*worker, error) {
	w := &worker{
		e:         e,
		id:        id,
		in:        make(chan *batch, batchesPerWorker),
		free:      make(chan *batch, batchesPerWorker),
		outputs:   make([]atomic.Int64, len(e.ports)),
		nextEvent: noTimer,
		nextProc:  noTimer,
		firing:    -1,
	}
	w.wm.Store(abi.NoWatermark)
	w.col.w = w
	w.col.timer = -1
	for range batchesPerWorker {
		w.free <- newBatch(e.job.Batch.Size, e.nf)
	}
	fn, err := e.cfg.NewFunction(id)
	if err != nil {
		return nil, fmt.Errorf("worker %d: create function: %w", id, err)
	}
	cfg := e.cfg.PluginConfig
	if cfg == nil {
		cfg = e.job.Plugin.Config
	}
	names := make([]string, len(e.cfg.Fields))
	for i, f := range e.cfg.Fields {
		names[i] = f.Name
	}
	env := process.Env{
		Job:         e.job.Name,
		Worker:      id,
		Parallelism: e.job.Parallelism,
		Config:      cfg,
		Fields:      names,
		State:       e.backend,
		Now:         e.clock.Now,
		Log: func(level int, msg string) {
			name := "log"
			if level >= 0 && level < len(logLevels) {
				name = logLevels[level]
			}
			e.logf("worker %d: %s: %s", id, name, msg)
		},
		Watermark: w.wm.Load,
	}
	if e.timers != nil {
		w.timers = &timerTracker{TimerStore: e.timers, w: w}
		env.Timers = w.timers
		if tf, ok := fn.(process.TimerFunction); ok {
			w.tfn = tf
		}
	} else if _, ok := fn.(process.TimerFunction); ok {
		_ = fn.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("worker %d: the function handles timers (process.TimerFunction) but the state backend (%s) keeps none: use a backend that implements statestore.TimerStore (memory or pebble)", id, e.stateName)
	}
	maxPar := e.job.MaxParallelism
	for kg := range maxPar {
		if statestore.WorkerOf(uint16(kg), maxPar, e.job.Parallelism) == id {
			w.allKGs = append(w.allKGs, uint16(kg))
		}
	}
	if w.tfn != nil || e.hasTTL {
		w.kgs = w.allKGs
	}
	w.stage = make([]stageBuf, len(e.eoSinks))
	if e.restoredWM != abi.NoWatermark {
		w.setWatermark(e.restoredWM, e.restoredSeq)
	}
	if err := fn.Open(ctx, env); err != nil {
		_ = fn.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("worker %d: open function: %w", id, err)
	}
	w.fn = fn
	if w.tfn != nil {
		// Timers restored with the state, or registered at open.
		var err error
		if w.nextEvent, err = w.earliest(abi.TimeDomainEvent); err == nil {
			w.nextProc, err = w.earliest(abi.TimeDomainProcessing)
		}
		if err != nil {
			_ = fn.Close(context.WithoutCancel(ctx))
			return nil, fmt.Errorf("worker %d: timers: %w", id, err)
		}
	}
	return w, nil
}

// run processes batches until in is closed, then closes the function. After
// any failure in the job it only recycles batches.
func (w *worker) run(ctx context.Context) {
	defer func() {
		if w.waitStop != nil {
			w.waitStop()
		}
		if err := w.fn.Close(ctx); err != nil {
			w.e.fail(fmt.Errorf("worker %d: close function: %w", w.id, err))
		}
	}()
	var tick <-chan time.Time
	if w.e.hasTTL {
		t := time.NewTicker(cleanupEvery)
		defer t.Stop()
		tick = t.C
	}
	for {
		if wc := w.capture; wc != nil {
			// Capture steps go between batches, and on while no batch
			// waits.
			select {
			case b, ok := <-w.in:
				if !w.onBatch(ctx, b, ok) {
					return
				}
			case <-wc.b.abort:
				w.abandonCapture()
			default:
				w.stepCapture()
			}
			continue
		}
		select {
		case b, ok := <-w.in:
			if !w.onBatch(ctx, b, ok) {
				return
			}
		case <-w.clockWait():
			w.waitCh, w.waitAt = nil, noTimer
			if !w.e.failed() {
				w.fireProcessing(ctx)
			}
		case <-tick:
			if !w.e.failed() {
				w.cleanup()
			}
		}
	}
}

// onBatch handles batch b from the input, ok false when the input is
// closed; it reports whether the worker goes on.
func (w *worker) onBatch(ctx context.Context, b *batch, ok bool) bool {
	if !ok {
		w.finishCapture()
		return false
	}
	if !w.e.failed() {
		w.process(ctx, b)
		w.cleanup()
	}
	if w.capture != nil {
		w.stepCapture()
	}
	if b.barrier != nil {
		w.finishCapture()
		w.atBarrier(b.barrier)
	}
	b.reset()
	w.free <- b
	return true
}

// cleanup removes up to cleanupLimit expired state entries from each of the
// worker's key groups, when a state has a TTL.
func (w *worker) cleanup() {
	if !w.e.hasTTL {
		return
	}
	for _, kg := range w.kgs {
		if _, err := w.e.backend.CleanupExpired(kg, cleanupLimit); err != nil {
			w.e.fail(fmt.Errorf("worker %d: state TTL cleanup of key group %d: %w", w.id, kg, err))
			return
		}
	}
}

// clockWait returns a channel closed when the clock reaches the next
// processing-time timer, or nil when there is none.
func (w *worker) clockWait() <-chan struct{} {
	if w.tfn == nil || w.nextProc == noTimer {
		return nil
	}
	if w.waitCh == nil || w.waitAt != w.nextProc {
		if w.waitStop != nil {
			w.waitStop()
		}
		w.waitCh, w.waitStop = w.e.clock.After(w.nextProc)
		w.waitAt = w.nextProc
	}
	return w.waitCh
}

// process runs one batch: its events, then the watermark it carries and
// the timers that makes due.
func (w *worker) process(ctx context.Context, b *batch) {
	events := b.events[:b.n]
	if len(events) > 0 {
		w.col.err = nil
		err := w.fn.ProcessBatch(ctx, events, &w.col)
		if err == nil {
			err = w.col.err
		}
		w.processed.Add(int64(len(events)))
		if err != nil {
			w.e.fail(fmt.Errorf("worker %d: %w", w.id, err))
			return
		}
	}
	if b.wm > w.wm.Load() {
		w.setWatermark(b.wm, b.wmSeq)
	}
	if w.tfn == nil {
		return
	}
	if wm := w.wm.Load(); w.nextEvent <= wm {
		if err := w.fire(ctx, abi.TimeDomainEvent, wm, w.wmSeq); err != nil {
			w.e.fail(fmt.Errorf("worker %d: event-time timers: %w", w.id, err))
			return
		}
	}
	w.fireProcessing(ctx)
}

// fireProcessing fires the processing-time timers the clock has reached.
func (w *worker) fireProcessing(ctx context.Context) {
	if w.nextProc == noTimer {
		return
	}
	if now := w.e.clock.Now(); w.nextProc <= now {
		if err := w.fire(ctx, abi.TimeDomainProcessing, now, 0); err != nil {
			w.e.fail(fmt.Errorf("worker %d: processing-time timers: %w", w.id, err))
		}
	}
}

// fire hands the worker's timers of domain with a time ≤ upTo to OnTimers,
// in batches of at most timerBatchSize, merged across the worker's key
// groups in time order. Timers registered meanwhile that are due fire too.
// seq is the Seq of the fired timers.
func (w *worker) fire(ctx context.Context, domain int, upTo int64, seq uint64) error {
	ts := w.e.timers
	h := &w.heap
	h.items = h.items[:0]
	for _, kg := range w.kgs {
		t, ok, err := ts.NextTimer(kg, domain)
		if err != nil {
			return err
		}
		if ok && t <= upTo {
			h.push(kgTime{t, kg})
		}
	}
	w.firing, w.firingTo = domain, upTo
	defer func() { w.firing = -1 }()
	add := func(t statestore.Timer) {
		w.fired = append(w.fired, process.Event{
			Seq:   seq,
			Time:  t.Time,
			Key:   w.farena.copy(t.Key),
			Value: w.farena.copy(t.Payload),
		})
	}
	for len(h.items) > 0 {
		w.fired = w.fired[:0]
		w.farena.reset()
		for len(w.fired) < timerBatchSize && len(h.items) > 0 {
			top := h.pop()
			bound := upTo
			if len(h.items) > 0 && h.items[0].t < bound {
				// Stop where the next key group's timers begin.
				bound = h.items[0].t
			}
			n0 := len(w.fired)
			if _, err := ts.PopTimers(top.kg, domain, bound, timerBatchSize-len(w.fired), add); err != nil {
				return err
			}
			for i := n0; i < len(w.fired); i++ {
				w.fired[i].KeyGroup = top.kg
			}
			t, ok, err := ts.NextTimer(top.kg, domain)
			if err != nil {
				return err
			}
			if ok && t <= upTo {
				h.push(kgTime{t, top.kg})
			}
		}
		if len(w.fired) == 0 {
			continue
		}
		w.col.err, w.col.timer = nil, domain
		err := w.tfn.OnTimers(ctx, domain, w.fired, &w.col)
		w.col.timer = -1
		if err == nil {
			err = w.col.err
		}
		w.e.fired.Add(int64(len(w.fired)))
		if err != nil {
			return err
		}
	}
	clear(w.fired)
	next, err := w.earliest(domain)
	if err != nil {
		return err
	}
	if domain == abi.TimeDomainEvent {
		w.nextEvent = next
	} else {
		w.nextProc = next
	}
	return nil
}

// earliest returns the time of the worker's earliest timer of domain, or
// noTimer.
func (w *worker) earliest(domain int) (int64, error) {
	next := int64(noTimer)
	for _, kg := range w.kgs {
		t, ok, err := w.e.timers.NextTimer(kg, domain)
		if err != nil {
			return 0, err
		}
		if ok && t < next {
			next = t
		}
	}
	return next, nil
}

// noteTimer records a timer the function registered, so the worker knows
// when to fire next.
func (w *worker) noteTimer(kg uint16, domain int, t int64) {
	switch domain {
	case abi.TimeDomainEvent:
		w.nextEvent = min(w.nextEvent, t)
	case abi.TimeDomainProcessing:
		w.nextProc = min(w.nextProc, t)
	}
	if domain == w.firing && t <= w.firingTo {
		w.heap.push(kgTime{t, kg})
	}
}

// timerTracker is the TimerStore a worker hands its function: the
// backend's, noting registrations so the worker knows its next timer
// without scanning its key groups after every batch.
type timerTracker struct {
	statestore.TimerStore
	w *worker
}

// RegisterTimer implements statestore.TimerStore.
func (t *timerTracker) RegisterTimer(kg uint16, tm statestore.Timer) (bool, error) {
	added, err := t.TimerStore.RegisterTimer(kg, tm)
	if added && t.w.tfn != nil {
		t.w.noteTimer(kg, tm.Domain, tm.Time)
	}
	return added, err
}

// kgTime is a key group's earliest due timer, as far as the worker knows.
type kgTime struct {
	t  int64
	kg uint16
}

// kgHeap is a min-heap of kgTime by time. A key group may appear more than
// once, or with a time earlier than its real next timer: firing checks.
type kgHeap struct{ items []kgTime }

func (h *kgHeap) push(x kgTime) {
	h.items = append(h.items, x)
	i := len(h.items) - 1
	for i > 0 {
		p := (i - 1) / 2
		if h.items[p].t <= h.items[i].t {
			break
		}
		h.items[p], h.items[i] = h.items[i], h.items[p]
		i = p
	}
}

func (h *kgHeap) pop() kgTime {
	top := h.items[0]
	n := len(h.items) - 1
	h.items[0] = h.items[n]
	h.items = h.items[:n]
	i := 0
	for {
		l, r, m := 2*i+1, 2*i+2, i
		if l < n && h.items[l].t < h.items[m].t {
			m = l
		}
		if r < n && h.items[r].t < h.items[m].t {
			m = r
		}
		if m == i {
			return top
		}
		h.items[i], h.items[m] = h.items[m], h.items[i]
		i = m
	}
}

// collector receives one worker's emitted records and rejections.
type collector struct {
	w     *worker
	err   error // first problem of the current batch
	timer int   // domain of the timers being handled, or -1 for events
}

// Emit implements process.Collector.
func (c *collector) Emit(port int, seq uint64, key, value []byte) {
	e := c.w.e
	if port < 0 || port >= len(e.ports) {
		if c.err == nil {
			c.err = fmt.Errorf("function emitted to output port %d, but its contract declares ports 0..%d (main and %d side outputs)", port, len(e.ports)-1, len(e.ports)-1)
		}
		return
	}
	c.w.outputs[port].Add(1)
	p := &e.ports[port]
	if len(p.sinks) == 0 {
		e.discarded.Add(1)
		return
	}
	for i := range p.sinks {
		s := &p.sinks[i]
		if s.eo >= 0 {
			c.w.stage[s.eo].add(key, value)
			continue
		}
		switch s.Type {
		case job.SinkStdout:
			e.stdout.line(p.name, key, value)
		case job.SinkJetStream, job.SinkKV:
			m := &nats.Msg{Subject: s.Subject, Data: append([]byte(nil), value...)}
			if s.Type == job.SinkKV {
				m.Subject = s.kvPrefix + KVKey(key)
			} else if key != nil {
				m.Header = nats.Header{HeaderKey: []string{string(key)}}
			}
			if _, err := e.pub.PublishMsgAsync(m, e.stallOpt); err != nil && c.err == nil {
				c.err = fmt.Errorf("sink %s (output %s): publish: %w", s.Name(), p.name, err)
			}
		}
	}
}

// Reject implements process.Collector. A rejected event goes to the
// dead-letter subject with its payload. A rejected timer has no source
// event: its dead letter carries the timer's payload, with its key in
// Wasmstream-Key, its domain and time in Wasmstream-Timer-Domain and
// Wasmstream-Timer-Time, and the sequence of the event whose watermark
// fired it (0 for processing time) in Wasmstream-Source-Seq.
func (c *collector) Reject(ev *process.Event, reason string) {
	if reason == "" {
		reason = "rejected by the function (no reason given)"
	}
	var err error
	if c.timer >= 0 {
		domain := "event"
		if c.timer == abi.TimeDomainProcessing {
			domain = "processing"
		}
		h := nats.Header{}
		h.Set(HeaderKey, string(ev.Key))
		h.Set(HeaderTimerDomain, domain)
		h.Set(HeaderTimerTime, strconv.FormatInt(ev.Time, 10))
		err = c.w.e.deadLetter(append([]byte(nil), ev.Value...), reason, "", ev.Seq, h)
	} else {
		err = c.w.e.deadLetter(append([]byte(nil), ev.Value...), reason, string(ev.Subject), ev.Seq, nil)
	}
	if err != nil && c.err == nil {
		c.err = err
	}
}

var (
	_ process.Collector     = (*collector)(nil)
	_ statestore.TimerStore = (*timerTracker)(nil)
)

// setWatermark advances the worker's watermark to wm, set by the event with
// sequence seq. With TTL states, the backend learns it for the worker's key
// groups: event-time TTL is cleaned up by the watermark.
func (w *worker) setWatermark(wm int64, seq uint64) {
	w.wm.Store(wm)
	w.wmSeq = seq
	if w.e.hasTTL {
		for _, kg := range w.allKGs {
			w.e.backend.SetWatermark(kg, wm)
		}
	}
}
