package engine

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wasmstream/wasmstream/abi"
	"github.com/wasmstream/wasmstream/checkpoint"
	"github.com/wasmstream/wasmstream/host/job"
	"github.com/wasmstream/wasmstream/internal/faultpoint"
	"github.com/wasmstream/wasmstream/statestore"
	"github.com/wasmstream/wasmstream/statestore/memory"
	"github.com/wasmstream/wasmstream/statestore/pebble"
)

// MarkerBucket is the NATS KV bucket holding the committed-epoch marker of
// every exactly-once sink, under the key KVKey("<job>.<sink name>"): the id
// of the last checkpoint whose staged records the sink has published.
const MarkerBucket = "wasmstream_sinks"

// HeaderMsgID is the JetStream de-duplication header exactly-once sinks set.
const HeaderMsgID = "Nats-Msg-Id"

// statePart is the checkpoint part that holds the state snapshot.
const statePart = "state"

// stagedPart is the checkpoint part that holds the staged records of
// exactly-once sinks.
const stagedPart = "sinks"

// stagedMagic starts a staged-records file. The file is, after the magic,
// a sequence of records, each
//
//	keylen  uvarint: 0 for a record without a key, else the key's length+1
//	key
//	vallen  uvarint
//	value
const stagedMagic = "WSSTAGE1"

// pauseWindow is how many checkpoints' pauses the percentiles cover.
const pauseWindow = 1024

// Publishing a complete checkpoint's exactly-once records is retried until
// it succeeds: the pause between attempts starts at publishRetryMin and
// doubles up to publishRetryMax, and a warning is logged on the first
// failure and then at most every publishWarnEvery.
const (
	publishRetryMin  = 100 * time.Millisecond
	publishRetryMax  = 5 * time.Second
	publishWarnEvery = 30 * time.Second
)

// OpenCheckpoints opens the checkpoint store the job's checkpoint section
// names: a directory (relative to the config file) or, with nc, a NATS
// Object Store bucket. logf receives its warnings.
func OpenCheckpoints(ctx context.Context, j *job.Config, nc *nats.Conn, logf func(string, ...any)) (*checkpoint.Store, error) {
	cp := j.Checkpoint
	var st checkpoint.Storage
	switch cp.Storage.Type {
	case job.StorageObjectStore:
		if nc == nil {
			return nil, fmt.Errorf("checkpoint.storage: object store bucket %s needs a NATS connection", cp.Storage.Bucket)
		}
		js, err := jetstream.New(nc)
		if err != nil {
			return nil, err
		}
		if st, err = checkpoint.OpenObjectStorage(ctx, js, cp.Storage.Bucket); err != nil {
			return nil, fmt.Errorf("checkpoint.storage: %w", err)
		}
	default:
		ds, err := checkpoint.NewDirStorage(cp.Storage.ResolvedPath(j.Dir))
		if err != nil {
			return nil, fmt.Errorf("checkpoint.storage.path: %w", err)
		}
		st = ds
	}
	return checkpoint.NewStore(st, j.Name, checkpoint.Options{Retain: cp.Retain, Logf: logf})
}

// ----- barriers, at the worker

// barrier is one checkpoint's barrier as the workers see it.
type barrier struct {
	id    uint64
	seq   uint64 // the source sequence S the barrier follows
	wm    int64  // the source watermark at the barrier
	wmSeq uint64
	start time.Time
	snap  statestore.Snapshot // each worker captures its key groups
	acks  chan workerAck      // buffered: one per worker
	abort chan struct{}       // closed when the checkpoint is given up
}

// workerAck is a worker's answer to a barrier: its capture is done.
type workerAck struct {
	worker  int
	arrived time.Time
	done    time.Time     // when the capture was done
	pause   time.Duration // the longest the capture stopped processing at once
	err     error
}

// workerCapture is a worker's capture of its key groups in progress.
type workerCapture struct {
	b   *barrier
	c   statestore.Capture
	ack workerAck
}

// Capture steps: a worker captures captureStep records at a time, for up
// to captureSlice before it looks at its input again.
const (
	captureStep  = 128
	captureSlice = time.Millisecond
)

// stageBuf holds staged records in the staged-records encoding.
type stageBuf struct {
	data []byte
	n    int
}

func (s *stageBuf) add(key, value []byte) {
	if key == nil {
		s.data = append(s.data, 0)
	} else {
		s.data = binary.AppendUvarint(s.data, uint64(len(key))+1)
		s.data = append(s.data, key...)
	}
	s.data = binary.AppendUvarint(s.data, uint64(len(value)))
	s.data = append(s.data, value...)
	s.n++
}

func (s *stageBuf) append(o stageBuf) {
	s.data = append(s.data, o.data...)
	s.n += o.n
}

// stagedRecord is one decoded staged record.
type stagedRecord struct {
	key   []byte // nil: none
	value []byte
}

// decodeStaged decodes n records (n < 0: as many as data holds).
func decodeStaged(data []byte) ([]stagedRecord, error) {
	var out []stagedRecord
	for len(data) > 0 {
		kl, k := binary.Uvarint(data)
		if k <= 0 || kl > uint64(len(data)-k)+1 {
			return nil, errors.New("bad key length")
		}
		data = data[k:]
		var r stagedRecord
		if kl > 0 {
			r.key = data[: kl-1 : kl-1]
			data = data[kl-1:]
		}
		vl, k := binary.Uvarint(data)
		if k <= 0 || vl > uint64(len(data)-k) {
			return nil, errors.New("bad value length")
		}
		data = data[k:]
		r.value = data[:vl:vl]
		data = data[vl:]
		out = append(out, r)
	}
	return out, nil
}

// sealedEpoch is a worker's staged records of one epoch, per exactly-once
// sink, sealed at the epoch's barrier.
type sealedEpoch struct {
	id   uint64
	bufs []stageBuf
}

// atBarrier handles barrier b after the batch it came with: the worker's
// staged records of the epoch are sealed and the capture of its key groups
// begins; the worker steps it between batches (stepCapture).
func (w *worker) atBarrier(b *barrier) {
	ack := workerAck{worker: w.id, arrived: time.Now()}
	faultpoint.Hit("checkpoint.after-barrier")
	w.sealMu.Lock()
	w.sealed = append(w.sealed, sealedEpoch{id: b.id, bufs: w.stage})
	w.sealMu.Unlock()
	w.stage = make([]stageBuf, len(w.e.eoSinks))
	if w.e.failed() {
		ack.err = errors.New("the job failed")
		b.acks <- ack
		return
	}
	c, err := b.snap.Capture(w.allKGs)
	ack.pause = time.Since(ack.arrived)
	if err != nil {
		ack.err = err
		b.acks <- ack
		return
	}
	w.capture = &workerCapture{b: b, c: c, ack: ack}
}

// stepCapture steps the capture in progress for up to captureSlice, and
// acknowledges the barrier when the capture is done.
func (w *worker) stepCapture() {
	wc := w.capture
	if w.e.failed() {
		w.abandonCapture()
		return
	}
	// Start the slice with a fresh time slice of the scheduler, so that
	// it is not preempted halfway for having run long.
	runtime.Gosched()
	start := time.Now()
	for {
		done, err := wc.c.Step(captureStep)
		now := time.Now()
		if err != nil || done {
			wc.ack.pause = max(wc.ack.pause, now.Sub(start))
			wc.ack.done, wc.ack.err = now, err
			w.capture = nil
			wc.b.acks <- wc.ack
			return
		}
		if now.Sub(start) >= captureSlice {
			wc.ack.pause = max(wc.ack.pause, now.Sub(start))
			return
		}
	}
}

// finishCapture steps the capture in progress, if any, until it is done or
// abandoned.
func (w *worker) finishCapture() {
	for w.capture != nil {
		select {
		case <-w.capture.b.abort:
			w.abandonCapture()
		default:
			w.stepCapture()
		}
	}
}

// abandonCapture gives the capture in progress up: its checkpoint was
// aborted, or the job failed.
func (w *worker) abandonCapture() {
	wc := w.capture
	w.capture = nil
	wc.c.Abandon()
	select {
	case <-wc.b.abort:
	default:
		wc.ack.err = errors.New("the capture was abandoned: the job failed")
		wc.ack.done = time.Now()
		wc.b.acks <- wc.ack
	}
}

// takeSealed removes and returns the worker's sealed records of the epochs
// up to id, merged per sink.
func (w *worker) takeSealed(id uint64) []stageBuf {
	out := make([]stageBuf, len(w.e.eoSinks))
	w.sealMu.Lock()
	defer w.sealMu.Unlock()
	keep := w.sealed[:0]
	for _, s := range w.sealed {
		if s.id > id {
			keep = append(keep, s)
			continue
		}
		for k := range out {
			out[k].append(s.bufs[k])
		}
	}
	clear(w.sealed[len(keep):])
	w.sealed = keep
	return out
}

// ----- the coordinator

// CheckpointStats summarises the checkpoints of a run.
type CheckpointStats struct {
	// Restored is the id of the checkpoint the run started from, 0 when
	// none.
	Restored uint64
	// Completed and Failed count the run's checkpoints.
	Completed int64
	Failed    int64
	// Last is the newest completed checkpoint: id, source sequence,
	// duration (barrier to committed metadata), bytes of state files,
	// alignment time (first to last worker reaching the barrier; no
	// worker waits for the others), capture time (the longest a worker
	// took from the barrier until its key groups were captured, while it
	// went on processing) and processing pause.
	LastID        uint64
	LastSequence  uint64
	LastDuration  time.Duration
	LastSize      int64
	LastAlignment time.Duration
	LastCapture   time.Duration
	LastPause     time.Duration
	// PauseP50 and PauseP99 are percentiles of the processing pause of
	// the last 1024 checkpoints: the longest time a worker stopped
	// processing at once for the checkpoint (the start of its capture at
	// the barrier, or one slice of capture steps between two batches).
	PauseP50 time.Duration
	PauseP99 time.Duration
}

func (s CheckpointStats) String() string {
	var b strings.Builder
	if s.Restored > 0 {
		fmt.Fprintf(&b, "restored checkpoint %d, ", s.Restored)
	}
	fmt.Fprintf(&b, "checkpoints %d", s.Completed)
	if s.Failed > 0 {
		fmt.Fprintf(&b, " (%d failed)", s.Failed)
	}
	if s.LastID > 0 {
		fmt.Fprintf(&b, ", last %d in %s, %d bytes, alignment %s, capture %s, pause p50 %s p99 %s", s.LastID, s.LastDuration.Round(time.Microsecond), s.LastSize, s.LastAlignment.Round(time.Microsecond), s.LastCapture.Round(time.Microsecond), s.PauseP50.Round(time.Microsecond), s.PauseP99.Round(time.Microsecond))
	}
	return b.String()
}

// coordinator takes the job's checkpoints and publishes the outputs of the
// exactly-once sinks once their checkpoint is complete.
type coordinator struct {
	e        *Engine
	store    *checkpoint.Store
	interval time.Duration
	timeout  time.Duration
	warnf    func(string, ...any)

	// set by openBackend
	snap     statestore.Snapshotter
	restored *checkpoint.Metadata

	// exactly-once publishing
	eoPub   jetstream.JetStream
	markers jetstream.KeyValue
	carry   [][]stageBuf // per worker: staged records of aborted checkpoints
	// unpublished is a complete checkpoint whose records the job stopped
	// publishing: no later checkpoint may be taken, or a restart would
	// restore that one and never publish these records.
	unpublished uint64

	mu     sync.Mutex
	stats  CheckpointStats
	pauses []time.Duration
}

func (e *Engine) newCoordinator(ctx context.Context) error {
	cp := e.job.Checkpoint
	c := &coordinator{
		e:        e,
		store:    e.cfg.Checkpoints,
		interval: cp.Interval.D(),
		timeout:  cp.Timeout.D(),
		warnf:    e.warnf,
	}
	if c.timeout <= 0 {
		c.timeout = job.DefaultCheckpointTimeout
	}
	if c.store == nil {
		st, err := OpenCheckpoints(ctx, e.job, e.nc, e.warnf)
		if err != nil {
			return fmt.Errorf("engine: %w", err)
		}
		c.store = st
	}
	e.cp = c
	return nil
}

// warnf logs a warning: to Config.Warnf, or Config.Logf.
func (e *Engine) warnf(format string, args ...any) {
	if e.cfg.Warnf != nil {
		e.cfg.Warnf(format, args...)
		return
	}
	e.logf(format, args...)
}

// stateNames returns the states of a contract as "name:kind".
func stateNames(c abi.Contract) []string { return statestore.StateNames(c.States) }

// restore opens the backend from the checkpoint to restore, if any: the
// newest complete one, or Config.RestoreFrom. It reports whether it did.
func (e *Engine) restore(ctx context.Context, sc statestore.Config) (bool, error) {
	c := e.cp
	kind := e.job.State.Backend
	try := func(m *checkpoint.Metadata) error {
		if err := statestore.CheckStates(stateNames(m.Contract), statestore.StateNames(e.cfg.States)); err != nil {
			return fmt.Errorf("engine: checkpoint %d of job %s does not fit the plugin (checkpoint plugin %s, now %s): %w; run a plugin whose states extend the checkpoint's, or start afresh by moving the checkpoints (%s) away", m.ID, e.job.Name, shortHash(m.PluginHash), shortHash(e.cfg.PluginHash), err, c.store.Storage())
		}
		if m.Backend != kind {
			return fmt.Errorf("engine: checkpoint %d holds %s state, the job's state.backend is %s: set state.backend: %s to restore it", m.ID, m.Backend, kind, m.Backend)
		}
		switch kind {
		case job.BackendPebble:
			if len(m.Parts) != 1 {
				return fmt.Errorf("%w: checkpoint %d: a pebble checkpoint has one state part, it has %d", checkpoint.ErrCorrupt, m.ID, len(m.Parts))
			}
			st := e.job.State
			b, stats, err := pebble.Restore(ctx, st.ResolvedDir(e.job.Dir), sc, e.pebbleOptions(), m.Parts[0].Snapshot, c.store.Source(m, m.Parts[0].Name))
			if err != nil {
				return err
			}
			e.logf("checkpoint %d: restored pebble state: %d files, %d linked locally, %d downloaded (%d bytes)", m.ID, stats.Files, stats.Linked, stats.Downloaded, stats.DownloadedBytes)
			e.backend = b
		default:
			b, err := memory.New(sc)
			if err != nil {
				return err
			}
			for _, p := range m.Parts {
				if err := b.Restore(ctx, p.Snapshot, c.store.Source(m, p.Name)); err != nil {
					return err
				}
			}
			e.backend = b
		}
		return nil
	}
	var m *checkpoint.Metadata
	var err error
	if id := e.cfg.RestoreFrom; id > 0 {
		m, err = c.store.Get(ctx, id)
		if err == nil {
			err = c.store.Verify(ctx, m, checkpoint.VerifySizes)
		}
		if err == nil {
			err = try(m)
		}
		if err != nil {
			return false, fmt.Errorf("engine: restoring checkpoint %d: %w", id, err)
		}
	} else {
		m, err = c.store.RestoreLatest(ctx, try)
		if errors.Is(err, checkpoint.ErrNoCheckpoint) {
			e.logf("checkpoint: none to restore (%v): starting per source.start", err)
			return false, nil
		}
		if err != nil {
			return false, err
		}
	}
	c.restored = m
	c.stats.Restored = m.ID
	if m.Sequence > 0 {
		e.resumeSeq = m.Sequence + 1
	}
	e.restoredWM, e.restoredSeq = m.Watermark, m.Sequence
	e.watermark.Store(m.Watermark)
	e.logf("checkpoint %d restored: resuming %s at sequence %d, watermark %d", m.ID, m.Stream, m.Sequence+1, m.Watermark)
	return true, nil
}

func shortHash(h string) string {
	h = strings.TrimPrefix(h, "sha256:")
	if len(h) > 12 {
		h = h[:12]
	}
	if h == "" {
		return "unknown"
	}
	return h
}

// prepare finds how the backend is snapshotted and opens the publishing
// side of the exactly-once sinks.
func (c *coordinator) prepare(ctx context.Context) error {
	e := c.e
	snap, ok := e.backend.(statestore.Snapshotter)
	if !ok {
		return fmt.Errorf("engine: the job takes checkpoints but the state backend (%s) cannot be snapshotted: use memory or pebble", e.stateName)
	}
	c.snap = snap
	c.carry = make([][]stageBuf, e.job.Parallelism)
	if len(e.eoSinks) == 0 {
		return nil
	}
	pub, err := jetstream.New(e.nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		return err
	}
	c.eoPub = pub
	kv, err := pub.KeyValue(ctx, MarkerBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = pub.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: MarkerBucket, Description: "wasmstream: committed epoch of each exactly-once sink"})
	}
	if err != nil {
		return fmt.Errorf("engine: KV bucket %s (exactly-once sink markers): %w", MarkerBucket, err)
	}
	c.markers = kv
	return nil
}

// loop takes a checkpoint every interval until done is closed or ctx is
// done.
func (c *coordinator) loop(ctx context.Context, src *source, done <-chan struct{}) {
	t := time.NewTicker(c.interval)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-ctx.Done():
			return
		case <-t.C:
			if c.e.failed() {
				return
			}
			c.checkpoint(ctx, src, false)
		}
	}
}

// checkpoint takes one checkpoint: barrier, snapshot, staged outputs,
// commit, then publishes the exactly-once outputs of the epoch. A failure
// aborts the checkpoint and the job goes on; for the final checkpoint of
// a bounded run (final) it fails the job.
func (c *coordinator) checkpoint(ctx context.Context, src *source, final bool) {
	e := c.e
	if c.unpublished != 0 {
		return
	}
	// The NATS calls up to the commit (the checkpoint store's, with an
	// object store bucket) share this deadline; a checkpoint that misses
	// it is aborted and the next one retries.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout)
	defer cancel()
	fail := func(p *checkpoint.Pending, err error) {
		if p != nil {
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout)
			if aerr := p.Abort(actx); aerr != nil {
				c.warnf("warning: checkpoint %d: deleting its files: %v", p.ID(), aerr)
			}
			cancel()
		}
		c.mu.Lock()
		c.stats.Failed++
		c.mu.Unlock()
		if final {
			e.fail(fmt.Errorf("engine: final checkpoint: %w", err))
			return
		}
		c.warnf("warning: %v; the job goes on and the next checkpoint retries", err)
	}
	p, err := c.store.Begin(wctx)
	if err != nil {
		fail(nil, fmt.Errorf("checkpoint: %w", err))
		return
	}
	id := p.ID()
	par := len(e.workers)
	snap, err := c.snap.Snapshot()
	if err != nil {
		fail(p, fmt.Errorf("checkpoint %d: state snapshot: %w", id, err))
		return
	}
	b := &barrier{
		id: id, snap: snap,
		acks:  make(chan workerAck, par),
		abort: make(chan struct{}),
	}
	if err := src.injectBarrier(b); err != nil {
		_ = snap.Release()
		_ = p.Abort(context.WithoutCancel(ctx))
		if !errors.Is(err, errStopping) {
			fail(nil, fmt.Errorf("checkpoint %d: %w", id, err))
		}
		return
	}
	acks := make([]workerAck, 0, par)
	timeout := time.NewTimer(c.timeout)
	defer timeout.Stop()
	for len(acks) < par {
		select {
		case a := <-b.acks:
			acks = append(acks, a)
		case <-timeout.C:
			close(b.abort)
			_ = snap.Release()
			fail(p, fmt.Errorf("checkpoint %d: %d of %d workers captured their state within checkpoint.timeout %s: raise the timeout or find what holds the workers", id, len(acks), par, c.timeout))
			return
		}
	}
	first, last := acks[0].arrived, acks[0].arrived
	var pause, capture time.Duration
	var ackErr error
	for _, a := range acks {
		first, last = minTime(first, a.arrived), maxTime(last, a.arrived)
		pause = max(pause, a.pause)
		if !a.done.IsZero() {
			capture = max(capture, a.done.Sub(a.arrived))
		}
		if a.err != nil && ackErr == nil {
			ackErr = fmt.Errorf("worker %d: %w", a.worker, a.err)
		}
	}
	if ackErr != nil {
		_ = snap.Release()
		fail(p, fmt.Errorf("checkpoint %d: %w", id, ackErr))
		return
	}

	// The asynchronous part: state files, staged records, metadata.
	m := &checkpoint.Metadata{
		Stream:         e.job.Source.Stream,
		Sequence:       b.seq,
		Watermark:      b.wm,
		Created:        b.start,
		PluginHash:     e.cfg.PluginHash,
		Contract:       e.cfg.Contract,
		MaxParallelism: e.job.MaxParallelism,
		Backend:        e.job.State.Backend,
	}
	if e.cfg.Contract.States == nil {
		m.Contract.States = e.cfg.States
	}
	h, err := snap.Write(wctx, p.Target(statePart))
	_ = snap.Release()
	if err != nil {
		fail(p, fmt.Errorf("checkpoint %d: writing the state: %w", id, err))
		return
	}
	m.Parts = append(m.Parts, checkpoint.Part{Name: statePart, Snapshot: h})
	staged := make([][]stageBuf, par)
	for w, wk := range e.workers {
		staged[w] = c.carry[w]
		if staged[w] == nil {
			staged[w] = make([]stageBuf, len(e.eoSinks))
		}
		for k, buf := range wk.takeSealed(id) {
			staged[w][k].append(buf)
		}
		c.carry[w] = nil
	}
	keep := func() { copy(c.carry, staged) }
	sinks, err := c.writeStaged(wctx, p, staged)
	if err != nil {
		keep()
		fail(p, fmt.Errorf("checkpoint %d: writing staged records: %w", id, err))
		return
	}
	m.Sinks = sinks
	faultpoint.Hit("checkpoint.after-snapshot")
	if err := c.store.Commit(wctx, p, m); err != nil {
		keep()
		fail(p, fmt.Errorf("checkpoint %d: %w", id, err))
		return
	}
	faultpoint.Hit("checkpoint.after-commit")
	c.mu.Lock()
	c.stats.Completed++
	c.stats.LastID = id
	c.stats.LastSequence = m.Sequence
	c.stats.LastDuration = m.Duration
	c.stats.LastSize = m.Size()
	c.stats.LastAlignment = last.Sub(first)
	c.stats.LastCapture = capture
	c.stats.LastPause = pause
	c.pauses = append(c.pauses, pause)
	if len(c.pauses) > pauseWindow {
		c.pauses = c.pauses[len(c.pauses)-pauseWindow:]
	}
	c.mu.Unlock()
	e.logf("checkpoint %d complete: sequence %d, %d bytes of state, %s, pause %s, capture %s, alignment %s", id, m.Sequence, m.Size(), m.Duration.Round(time.Microsecond), pause, capture, last.Sub(first))

	// The checkpoint is complete: publish the epoch's staged records.
	for k := range e.eoSinks {
		var files []stagedFile
		for w := range staged {
			var base uint64
			for j := 0; j < k; j++ {
				base += uint64(staged[w][j].n)
			}
			recs, err := decodeStaged(staged[w][k].data)
			if err != nil {
				e.fail(fmt.Errorf("engine: checkpoint %d: staged records of worker %d: %w", id, w, err))
				return
			}
			files = append(files, stagedFile{Worker: w, First: base, Records: len(recs), recs: recs})
		}
		published, err := c.publishRetry(ctx, k, id, files)
		if err != nil {
			e.fail(fmt.Errorf("engine: checkpoint %d is complete, publishing its records to sink %s failed (a restart publishes them): %w", id, e.eoSinks[k].Name(), err))
			return
		}
		if !published {
			c.unpublished = id
			c.warnf("warning: checkpoint %d is complete but the job stopped before its records were published to sink %s: a restart publishes them", id, e.eoSinks[k].Name())
			return
		}
	}
}

// publishRetry publishes the staged records of sink k for the complete
// checkpoint epoch, retrying with backoff until they are published, an
// error that retrying cannot fix (publishError) occurs, or ctx is done.
// Each attempt has its own deadline, checkpoint.timeout. The first attempt
// runs to its end even when ctx is done, as publishing always did when a
// job stopped; a retry ends with ctx. A retry sends only the records
// JetStream has not acknowledged yet. It reports whether the records are
// published; false with a nil error means ctx was done first.
func (c *coordinator) publishRetry(ctx context.Context, k int, epoch uint64, files []stagedFile) (bool, error) {
	name := c.e.eoSinks[k].Name()
	var st epochPub
	pause := publishRetryMin
	var failedAt, warnedAt time.Time
	for attempt := 1; ; attempt++ {
		actx := ctx
		if attempt == 1 {
			actx = context.WithoutCancel(ctx)
		}
		actx, cancel := context.WithTimeout(actx, c.timeout)
		err := c.publish(actx, k, epoch, files, &st)
		cancel()
		if err == nil {
			if attempt > 1 {
				c.e.logf("checkpoint %d: its records are published to sink %s, at attempt %d, %s after the first failure", epoch, name, attempt, time.Since(failedAt).Round(time.Millisecond))
			}
			return true, nil
		}
		if _, ok := errors.AsType[publishError](err); ok {
			return false, err
		}
		if ctx.Err() != nil {
			return false, nil
		}
		now := time.Now()
		if attempt == 1 {
			failedAt = now
		}
		switch {
		case attempt == 1:
			warnedAt = now
			c.warnf("warning: checkpoint %d is complete, publishing its records to sink %s failed: %v; retrying until it succeeds (is the NATS server reachable?); the next checkpoint waits, processing goes on", epoch, name, err)
		case now.Sub(warnedAt) >= publishWarnEvery:
			warnedAt = now
			c.warnf("warning: checkpoint %d: publishing its records to sink %s still fails after %d attempts over %s: %v; retrying", epoch, name, attempt, now.Sub(failedAt).Round(time.Second), err)
		}
		t := time.NewTimer(pause)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return false, nil
		}
		pause = min(2*pause, publishRetryMax)
	}
}

// publishError is an error publishing a checkpoint's records that
// retrying cannot fix.
type publishError struct{ err error }

func (e publishError) Error() string { return e.err.Error() }
func (e publishError) Unwrap() error { return e.err }

// epochPub is how far publishing the records of one epoch to one sink
// has got in this process, across attempts: which records JetStream has
// acknowledged, and the acknowledgements an earlier attempt stopped
// waiting for.
type epochPub struct {
	acked   []bool
	pending []pendingAck
}

type pendingAck struct {
	i int // the record's index among the epoch's records of the sink
	f jetstream.PubAckFuture
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// stagedSink is what Metadata.Sinks holds for an exactly-once sink: the
// epoch (the checkpoint id) and, per worker with records, the file of its
// staged records.
type stagedSink struct {
	Epoch uint64       `json:"epoch"`
	Files []stagedFile `json:"files,omitempty"`
}

// stagedFile is one worker's staged records for a sink. The record i of
// the file is published with the message id "<job>/<epoch>/<worker>/<First+i>".
type stagedFile struct {
	Worker  int                   `json:"worker"`
	First   uint64                `json:"first"`
	Records int                   `json:"records"`
	File    statestore.FileHandle `json:"file"`

	recs []stagedRecord
}

// writeStaged writes each worker's staged records per exactly-once sink
// to the checkpoint and returns the Metadata.Sinks entries.
func (c *coordinator) writeStaged(ctx context.Context, p *checkpoint.Pending, staged [][]stageBuf) (map[string]json.RawMessage, error) {
	e := c.e
	if len(e.eoSinks) == 0 {
		return nil, nil
	}
	out := map[string]json.RawMessage{}
	t := p.Target(stagedPart)
	for k, s := range e.eoSinks {
		ss := stagedSink{Epoch: p.ID()}
		for w := range staged {
			var first uint64
			for j := 0; j < k; j++ {
				first += uint64(staged[w][j].n)
			}
			buf := staged[w][k]
			if buf.n == 0 {
				continue
			}
			r := io.MultiReader(strings.NewReader(stagedMagic), bytes.NewReader(buf.data))
			fh, err := t.Write(ctx, fmt.Sprintf("sink%d-w%d.stg", k, w), false, r)
			if err != nil {
				return nil, err
			}
			ss.Files = append(ss.Files, stagedFile{Worker: w, First: first, Records: buf.n, File: fh})
		}
		raw, err := json.Marshal(ss)
		if err != nil {
			return nil, err
		}
		out[s.Name()] = raw
	}
	return out, nil
}

// markerKey is the KV key of sink's committed-epoch marker.
func (c *coordinator) markerKey(s job.Sink) string {
	return KVKey([]byte(c.e.job.Name + "." + s.Name()))
}

// marker returns the sink's committed epoch and the marker's revision (0
// when it has none).
func (c *coordinator) marker(ctx context.Context, s job.Sink) (uint64, uint64, error) {
	ent, err := c.markers.Get(ctx, c.markerKey(s))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("reading the committed-epoch marker %s of bucket %s: %w", c.markerKey(s), MarkerBucket, err)
	}
	epoch, err := strconv.ParseUint(string(ent.Value()), 10, 64)
	if err != nil {
		return 0, 0, publishError{fmt.Errorf("the committed-epoch marker %s of bucket %s holds %q, not a checkpoint id: delete it if the sink's outputs are all published", c.markerKey(s), MarkerBucket, ent.Value())}
	}
	return epoch, ent.Revision(), nil
}

// advanceMarker sets the sink's committed epoch to epoch with
// compare-and-set, unless it is already there or later.
func (c *coordinator) advanceMarker(ctx context.Context, s job.Sink, epoch uint64) error {
	key := c.markerKey(s)
	val := []byte(strconv.FormatUint(epoch, 10))
	for range 10 {
		cur, rev, err := c.marker(ctx, s)
		if err != nil {
			return err
		}
		if cur >= epoch {
			return nil
		}
		if rev == 0 {
			_, err = c.markers.Create(ctx, key, val)
		} else {
			_, err = c.markers.Update(ctx, key, val, rev)
		}
		if err == nil {
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !strings.Contains(err.Error(), "wrong last sequence") {
			return fmt.Errorf("writing the committed-epoch marker %s of bucket %s: %w", key, MarkerBucket, err)
		}
	}
	return publishError{fmt.Errorf("the committed-epoch marker %s of bucket %s keeps changing: is another process running job %s?", key, MarkerBucket, c.e.job.Name)}
}

// publish publishes the staged records of sink k for checkpoint epoch,
// unless its marker says they are published, then advances the marker.
// st, when not nil, carries what earlier attempts achieved: records
// JetStream acknowledged are not sent again.
func (c *coordinator) publish(ctx context.Context, k int, epoch uint64, files []stagedFile, st *epochPub) error {
	s := c.e.eoSinks[k]
	cur, _, err := c.marker(ctx, s)
	if err != nil {
		return err
	}
	if cur >= epoch {
		return nil
	}
	type rec struct {
		i  int
		id string
		r  stagedRecord
	}
	var all []rec
	for _, f := range files {
		for i, r := range f.recs {
			all = append(all, rec{len(all), fmt.Sprintf("%s/%d/%d/%d", c.e.job.Name, epoch, f.Worker, f.First+uint64(i)), r})
		}
	}
	if st == nil {
		st = &epochPub{}
	}
	if st.acked == nil {
		st.acked = make([]bool, len(all))
	}
	// Acknowledgements that arrived after an earlier attempt gave up; the
	// records of the others are sent again, with the same message id.
	for _, p := range st.pending {
		select {
		case <-p.f.Ok():
			st.acked[p.i] = true
		default:
		}
	}
	st.pending = nil
	todo := make([]rec, 0, len(all))
	for _, r := range all {
		if !st.acked[r.i] {
			todo = append(todo, r)
		}
	}
	send := func(recs []rec) error {
		futs := make([]pendingAck, 0, min(len(recs), 4096))
		wait := func() error {
			for n, p := range futs {
				select {
				case <-p.f.Ok():
					st.acked[p.i] = true
				case err := <-p.f.Err():
					st.pending = append(st.pending, futs[n+1:]...)
					return fmt.Errorf("publish %s: %w", p.f.Msg().Header.Get(HeaderMsgID), err)
				case <-ctx.Done():
					st.pending = append(st.pending, futs[n:]...)
					return fmt.Errorf("publish %s: no acknowledgement: %w", p.f.Msg().Header.Get(HeaderMsgID), ctx.Err())
				}
			}
			futs = futs[:0]
			return nil
		}
		for _, r := range recs {
			m := &nats.Msg{Subject: s.Subject, Data: r.r.value, Header: nats.Header{HeaderMsgID: []string{r.id}}}
			if s.Type == job.SinkKV {
				m.Subject = "$KV." + s.Bucket + "." + KVKey(r.r.key)
			} else if r.r.key != nil {
				m.Header.Set(HeaderKey, string(r.r.key))
			}
			f, err := c.eoPub.PublishMsgAsync(m)
			if err != nil {
				st.pending = append(st.pending, futs...)
				return fmt.Errorf("publish %s: %w", r.id, err)
			}
			futs = append(futs, pendingAck{r.i, f})
			if len(futs) == cap(futs) {
				if err := wait(); err != nil {
					return err
				}
			}
		}
		return wait()
	}
	half := (len(todo) + 1) / 2
	if err := send(todo[:half]); err != nil {
		return err
	}
	faultpoint.Hit("sink.mid-publish")
	if err := send(todo[half:]); err != nil {
		return err
	}
	faultpoint.Hit("sink.after-publish")
	return c.advanceMarker(ctx, s, epoch)
}

// finishRestored publishes the staged records of the restored checkpoint
// that its sinks' markers do not count as published.
func (c *coordinator) finishRestored(ctx context.Context) error {
	m := c.restored
	if m == nil {
		return nil
	}
	known := map[string]bool{}
	for k, s := range c.e.eoSinks {
		known[s.Name()] = true
		raw, ok := m.Sinks[s.Name()]
		if !ok {
			continue
		}
		var ss stagedSink
		if err := json.Unmarshal(raw, &ss); err != nil {
			return fmt.Errorf("engine: checkpoint %d: sink %s: %w: %v", m.ID, s.Name(), checkpoint.ErrCorrupt, err)
		}
		cur, _, err := c.marker(ctx, s)
		if err != nil {
			return fmt.Errorf("engine: %w", err)
		}
		if cur > ss.Epoch {
			c.warnf("warning: sink %s has published the records of checkpoint %d, later than the restored checkpoint %d: the records of the events after sequence %d that it published will be published again", s.Name(), cur, m.ID, m.Sequence)
		}
		if cur >= ss.Epoch {
			continue
		}
		src := c.store.Source(m, stagedPart)
		for i := range ss.Files {
			f := &ss.Files[i]
			rc, err := src.Open(ctx, f.File)
			if err != nil {
				return fmt.Errorf("engine: checkpoint %d: staged records of sink %s: %w", m.ID, s.Name(), err)
			}
			data, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				return fmt.Errorf("engine: checkpoint %d: staged records of sink %s: %w", m.ID, s.Name(), err)
			}
			if !bytes.HasPrefix(data, []byte(stagedMagic)) {
				return fmt.Errorf("engine: checkpoint %d: %s: %w: not a staged-records file", m.ID, f.File.Name, checkpoint.ErrCorrupt)
			}
			if f.recs, err = decodeStaged(data[len(stagedMagic):]); err != nil || len(f.recs) != f.Records {
				return fmt.Errorf("engine: checkpoint %d: %s: %w: %d records decoded of %d (%v)", m.ID, f.File.Name, checkpoint.ErrCorrupt, len(f.recs), f.Records, err)
			}
		}
		if err := c.publish(ctx, k, ss.Epoch, ss.Files, nil); err != nil {
			return fmt.Errorf("engine: publishing the records of checkpoint %d to sink %s: %w", m.ID, s.Name(), err)
		}
		c.e.logf("checkpoint %d: published its staged records to sink %s", m.ID, s.Name())
	}
	for name := range m.Sinks {
		if !known[name] {
			c.warnf("warning: checkpoint %d holds staged records for sink %s, which the job no longer has as an exactly_once sink: they are not published", m.ID, name)
		}
	}
	return nil
}

// statsNow returns the checkpoint counters with the pause percentiles.
func (c *coordinator) statsNow() CheckpointStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	if n := len(c.pauses); n > 0 {
		p := slices.Clone(c.pauses)
		slices.Sort(p)
		s.PauseP50 = p[(n-1)*50/100]
		s.PauseP99 = p[(n-1)*99/100]
	}
	return s
}

// KVKey turns a record key into a NATS KV key, which allows only letters,
// digits and "-_/=." with no empty "."-separated token. Letters, digits,
// '-', '_' and '/' are kept; '.' is kept between two other characters
// unless it follows another '.'; every other byte, '=' included, becomes
// "=XX" (its value in upper-case hex). So distinct keys stay distinct. A
// record without a key (or an empty one) gets the key "=".
func KVKey(key []byte) string {
	if len(key) == 0 {
		return "="
	}
	const hex = "0123456789ABCDEF"
	b := make([]byte, 0, len(key))
	for i, ch := range key {
		switch {
		case ch >= 'a' && ch <= 'z', ch >= 'A' && ch <= 'Z', ch >= '0' && ch <= '9', ch == '-', ch == '_', ch == '/':
			b = append(b, ch)
		case ch == '.' && i > 0 && i < len(key)-1 && b[len(b)-1] != '.':
			b = append(b, ch)
		default:
			b = append(b, '=', hex[ch>>4], hex[ch&15])
		}
	}
	return string(b)
}

// ensureBucket checks that the KV bucket of sink s exists, creating it
// with create: true.
func (e *Engine) ensureBucket(ctx context.Context, s job.Sink) error {
	_, err := e.pub.KeyValue(ctx, s.Bucket)
	if err == nil {
		return nil
	}
	if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return err
	}
	if !s.Create {
		return fmt.Errorf("no KV bucket %s: create it (nats kv add %s) or set create: true on the sink", s.Bucket, s.Bucket)
	}
	if _, err := e.pub.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: s.Bucket}); err != nil {
		return fmt.Errorf("create KV bucket %s: %w", s.Bucket, err)
	}
	e.logf("created KV bucket %s", s.Bucket)
	return nil
}
