package engine

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wasmstream/wasmstream/abi"
	"github.com/wasmstream/wasmstream/host/job"
	"github.com/wasmstream/wasmstream/host/jsonscan"
	"github.com/wasmstream/wasmstream/statestore"
)

// errStopping ends the source when the run stops while it waits for a
// worker.
var errStopping = errors.New("engine: stopping")

// pullBuffer is how many messages the consumer keeps buffered in the client.
const pullBuffer = 1024

// source reads the stream and fills the workers' batches.
type source struct {
	e      *Engine
	ctx    context.Context // done when the run stops
	mu     sync.Mutex      // guards cur and the batches in it (the linger ticker flushes)
	cur    []*batch        // batch being filled, per worker; nil when none
	sc     *jsonscan.Scanner
	slots  []abi.Field
	keyBuf []byte
	scan   bool // whether events need a JSON pass
	size   int
	maxPar int
	par    int

	// Event time and watermarks (guarded by mu).
	maxTs    int64   // largest event time seen
	wm       int64   // current watermark, abi.NoWatermark before the first
	wmSeq    uint64  // sequence of the event that set wm
	bound    int64   // max out-of-orderness + 1, ms
	sentWM   []int64 // per worker: the watermark its last batch carried
	idle     int64   // idle timeout in ms, 0 = off
	arrived  int64   // clock time of the last event, when idle > 0
	untilSeq uint64  // last sequence to process, 0 = no end

	// routed is the sequence of the last event handled (routed into a
	// batch, dead-lettered or set aside as late): a barrier injected now
	// follows it. stopped is set once the workers' inputs may close.
	routed  uint64
	stopped bool
}

// errPastEnd ends the source at the first event after Config.UntilSeq.
var errPastEnd = errors.New("engine: past the end sequence")

// runSource reads until ctx is done, the stream is caught up (with
// UntilCaughtUp), the end sequence is reached (UntilSeq) or reading fails.
// It reports whether a bounded run reached its end.
func (e *Engine) runSource(ctx context.Context, s *source) (ended bool, err error) {
	err = e.readSource(ctx, s, &ended)
	return ended, err
}

// readSource is runSource's loop; it sets *ended when a bounded run
// reaches its end.
func (e *Engine) readSource(ctx context.Context, s *source, ended *bool) error {
	js, err := jetstream.New(e.nc)
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	src := e.job.Source
	stream, err := js.Stream(ctx, src.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) && src.Create {
		stream, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: src.Stream, Subjects: src.Subjects})
		if err == nil {
			e.logf("created stream %s for subjects %s", src.Stream, strings.Join(src.Subjects, ", "))
		}
	}
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("source.stream: stream %s not found: create it or set source.create: true", src.Stream)
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("source.stream %s: %w", src.Stream, err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("source.stream %s: info: %w", src.Stream, err)
	}
	lastSeq := info.State.LastSeq
	policy, startSeq := src.StartAt()
	if e.resumeSeq > 0 {
		// Restored from a checkpoint: resume after its sequence.
		policy, startSeq = job.StartSequence, e.resumeSeq
	}
	occ := jetstream.OrderedConsumerConfig{FilterSubjects: src.Subjects}
	switch policy {
	case job.StartFirst:
		occ.DeliverPolicy = jetstream.DeliverAllPolicy
	case job.StartNew:
		occ.DeliverPolicy = jetstream.DeliverNewPolicy
	case job.StartSequence:
		occ.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		occ.OptStartSeq = startSeq
	}
	until := e.cfg.UntilCaughtUp
	untilSeq := e.cfg.UntilSeq
	if untilSeq > 0 && policy == job.StartSequence && startSeq > untilSeq {
		e.logf("source: start sequence %d is after the end sequence %d: nothing to process", startSeq, untilSeq)
		*ended = true
		return nil
	}
	if until {
		switch {
		case policy == job.StartNew:
			e.logf("source: start: new with until-caught-up reads nothing that is already in the stream")
			*ended = true
			return nil
		case info.State.Msgs == 0:
			e.logf("source: stream %s is empty: nothing to catch up", src.Stream)
			*ended = true
			return nil
		case policy == job.StartSequence && startSeq > lastSeq:
			e.logf("source: start sequence %d is after the stream's last sequence %d: nothing to catch up", startSeq, lastSeq)
			*ended = true
			return nil
		}
	}
	cons, err := stream.OrderedConsumer(ctx, occ)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("source: ordered consumer on %s: %w", src.Stream, err)
	}
	var it jetstream.MessagesContext
	for attempt := 0; ; attempt++ {
		it, err = cons.Messages(jetstream.PullMaxMessages(pullBuffer))
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		if !errors.Is(err, jetstream.ErrNoHeartbeat) || attempt >= 10 {
			return fmt.Errorf("source: consume %s: %w", src.Stream, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	defer it.Stop()
	if until {
		ci, err := cons.Info(ctx)
		if err == nil && ci.NumPending == 0 && ci.Delivered.Consumer == 0 {
			e.logf("source: no events in %s match subjects %v: nothing to catch up", src.Stream, src.Subjects)
			*ended = true
			return nil
		}
	}
	stopped := make(chan struct{})
	defer close(stopped)
	go func() {
		select {
		case <-ctx.Done():
			it.Stop()
		case <-stopped:
		}
	}()

	s.ctx = ctx
	s.untilSeq = untilSeq
	lingerDone := make(chan struct{})
	var lingerWG sync.WaitGroup
	lingerWG.Add(1)
	go func() {
		defer lingerWG.Done()
		s.lingerLoop(lingerDone)
	}()
	defer func() {
		close(lingerDone)
		lingerWG.Wait()
		s.mu.Lock()
		s.flushAll()
		s.mu.Unlock()
	}()

	for {
		msg, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, jetstream.ErrNoHeartbeat) || errors.Is(err, nats.ErrTimeout) {
				e.logf("source: %v: retrying", err)
				continue
			}
			return fmt.Errorf("source: reading %s: %w", src.Stream, err)
		}
		a, err := s.handle(msg)
		if errors.Is(err, errStopping) {
			return nil
		}
		if errors.Is(err, errPastEnd) {
			*ended = true
			return nil
		}
		if err != nil {
			return err
		}
		if until && (a.seq >= lastSeq || a.pending == 0) ||
			untilSeq > 0 && (a.seq >= untilSeq || a.pending == 0 && lastSeq >= untilSeq) {
			*ended = true
			return nil
		}
	}
}

func (e *Engine) newSource() *source {
	sc, _ := jsonscan.Compile(e.paths) // checked in New
	s := &source{
		e:      e,
		cur:    make([]*batch, len(e.workers)),
		sc:     sc,
		slots:  make([]abi.Field, len(e.paths)),
		scan:   len(e.paths) > 0,
		size:   e.job.Batch.Size,
		maxPar: e.job.MaxParallelism,
		par:    e.job.Parallelism,
		maxTs:  math.MinInt64,
		wm:     abi.NoWatermark,
		bound:  e.bound + 1,
		sentWM: make([]int64, len(e.workers)),
		idle:   e.idle,
	}
	for i := range s.sentWM {
		s.sentWM[i] = abi.NoWatermark
	}
	if e.restoredWM != abi.NoWatermark {
		s.wm, s.wmSeq = e.restoredWM, e.restoredSeq
		for i := range s.sentWM {
			s.sentWM[i] = s.wm
		}
	}
	if e.resumeSeq > 0 {
		s.routed = e.resumeSeq - 1
	}
	if s.idle > 0 {
		s.arrived = e.clock.Now()
	}
	return s
}

// lingerLoop sends partial batches that have waited about the linger time,
// advances the watermark of an idle source, and sends the watermark to
// workers that have not received it.
func (s *source) lingerLoop(done <-chan struct{}) {
	tick := s.e.job.Batch.Linger.D() / 2
	if tick < time.Millisecond {
		tick = time.Millisecond
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			s.mu.Lock()
			for w, b := range s.cur {
				if b == nil || b.n == 0 {
					continue
				}
				if b.marked {
					s.send(w)
				} else {
					b.marked = true
				}
			}
			if s.idle > 0 {
				if now := s.e.clock.Now(); now-s.arrived >= s.idle {
					s.advance(satSub(now, s.bound), s.e.lastSeq.Load())
				}
			}
			_ = s.markers(false)
			s.mu.Unlock()
		}
	}
}

// send hands worker w's current batch over, carrying the current
// watermark: every event for w read before it is in this batch or an
// earlier one. s.mu is held.
func (s *source) send(w int) {
	b := s.cur[w]
	s.cur[w] = nil
	b.wm, b.wmSeq = s.wm, s.wmSeq
	s.sentWM[w] = s.wm
	s.e.watermark.Store(s.wm)
	s.e.workers[w].in <- b
}

// markers sends the current watermark to every worker whose last batch
// carried an older one, as an empty batch. A worker with a partial batch
// pending gets the watermark with that batch. Without block, a worker with
// no free batch is skipped (the next linger tick tries again); with block,
// markers waits for one and partial batches are sent at once. s.mu is
// held.
func (s *source) markers(block bool) error {
	for w := range s.cur {
		if s.sentWM[w] >= s.wm {
			continue
		}
		if s.cur[w] != nil {
			if block {
				s.send(w)
			}
			continue
		}
		free := s.e.workers[w].free
		var b *batch
		if block {
			select {
			case b = <-free:
			case <-s.ctx.Done():
				return errStopping
			}
		} else {
			select {
			case b = <-free:
			default:
				continue
			}
		}
		s.cur[w] = b
		s.send(w)
	}
	return nil
}

// injectBarrier sends barrier b to every worker after the events read so
// far: it hands over each worker's partial batch, or an empty one, carrying
// the barrier and the current watermark, blocking for a free batch. It sets
// b's sequence and watermark. It fails with errStopping when the run stops
// first.
func (s *source) injectBarrier(b *barrier) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return errStopping
	}
	b.seq, b.wm, b.wmSeq = s.routed, s.wm, s.wmSeq
	b.start = time.Now()
	for w := range s.cur {
		if s.cur[w] == nil {
			select {
			case s.cur[w] = <-s.e.workers[w].free:
			case <-s.ctx.Done():
				if w == 0 {
					return errStopping
				}
				// Some workers have the barrier: the others must get it,
				// or the checkpoint waits for them in vain.
				s.cur[w] = <-s.e.workers[w].free
			}
		}
		s.cur[w].barrier = b
		s.send(w)
	}
	return nil
}

// stop makes later barriers fail: the workers' inputs are about to close.
func (s *source) stop() {
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
}

// advance raises the watermark to wm, set by the event with sequence seq;
// the watermark never goes back. s.mu is held.
func (s *source) advance(wm int64, seq uint64) {
	if wm > s.wm {
		s.wm, s.wmSeq = wm, seq
	}
}

// finish ends a bounded run: it raises the watermark to the maximum and
// hands it to every worker after all events read, so every remaining
// event-time timer fires.
func (s *source) finish() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advance(math.MaxInt64, s.e.lastSeq.Load())
	return s.markers(true)
}

// satSub returns a-b for b ≥ 0, saturating at the smallest int64.
func satSub(a, b int64) int64 {
	if a < math.MinInt64+b {
		return math.MinInt64
	}
	return a - b
}

// flushAll sends every non-empty batch. s.mu is held.
func (s *source) flushAll() {
	for w, b := range s.cur {
		if b != nil && b.n > 0 {
			s.send(w)
		}
	}
}

// bytesOf views a string's bytes without copying; the result must not be
// modified.
func bytesOf(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// handle routes one message into its worker's batch, or dead-letters it.
func (s *source) handle(msg jetstream.Msg) (ackInfo, error) {
	e := s.e
	a, ok := parseAck(msg.Reply())
	if !ok {
		md, err := msg.Metadata()
		if err != nil {
			return a, fmt.Errorf("source: message without JetStream metadata (reply %q): %w", msg.Reply(), err)
		}
		a = ackInfo{seq: md.Sequence.Stream, tsNanos: md.Timestamp.UnixNano(), pending: md.NumPending}
	}
	if s.untilSeq > 0 && a.seq > s.untilSeq {
		return a, errPastEnd
	}
	e.eventsIn.Add(1)
	e.lastSeq.Store(a.seq)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.route(msg, a); err != nil {
		return a, err
	}
	s.routed = a.seq
	if s.idle > 0 {
		s.arrived = e.clock.Now()
	}
	if a.pending == 0 {
		s.flushAll()
	}
	return a, nil
}

// route appends one message to its worker's batch, or dead-letters it.
// s.mu is held.
func (s *source) route(msg jetstream.Msg, a ackInfo) error {
	e := s.e
	data := msg.Data()
	subject := msg.Subject()
	if s.scan {
		if err := s.sc.Scan(data, s.slots); err != nil {
			return s.reject(msg, a, err.Error())
		}
	}
	ts, problem := s.eventTime(msg, a)
	if problem != "" {
		return s.reject(msg, a, problem)
	}
	if s.wm != abi.NoWatermark && isLate(ts, s.wm) {
		e.late.Add(1)
		switch e.latePolicy {
		case job.LateDrop:
			return nil
		case job.LateSideOutput:
			return e.sideOutputLate(msg, a.seq, ts, s.wm)
		}
	} else if ts > s.maxTs {
		s.maxTs = ts
		s.advance(satSub(ts, s.bound), a.seq)
	}

	// The key, as bytes valid until the event is in a batch.
	var key []byte
	keyInData := false // key is data[ks:ke]
	var ks, ke int
	k := &e.job.Key
	switch {
	case k.Field != "":
		kb, problem := s.sc.Key(s.e.keyAt)
		if problem != "" {
			return s.reject(msg, a, "key field "+k.Field+" "+problem)
		}
		key = kb
		if st, en, inScratch, ok := s.sc.Span(s.e.keyAt); ok && !inScratch {
			keyInData, ks, ke = true, st, en
		}
	case len(k.Fields) > 0:
		s.keyBuf = s.keyBuf[:0]
		for i, f := range k.Fields {
			kb, problem := s.sc.Key(s.e.keyAt + i)
			if problem != "" {
				return s.reject(msg, a, "key field "+f+" "+problem)
			}
			if i > 0 {
				s.keyBuf = append(s.keyBuf, k.Separator...)
			}
			s.keyBuf = append(s.keyBuf, kb...)
		}
		key = s.keyBuf
	case k.SubjectToken > 0:
		tok, ok := subjectToken(subject, k.SubjectToken)
		if !ok {
			return s.reject(msg, a, fmt.Sprintf("subject %s has no token %d for the key", subject, k.SubjectToken))
		}
		key = bytesOf(tok)
	case k.Header != "":
		v := msg.Headers().Get(k.Header)
		if v == "" {
			return s.reject(msg, a, "key header "+k.Header+" is missing")
		}
		key = bytesOf(v)
	}

	kg := statestore.KeyGroup(key, s.maxPar)
	w := statestore.WorkerOf(kg, s.maxPar, s.par)
	b := s.cur[w]
	if b == nil {
		select {
		case b = <-e.workers[w].free:
		case <-s.ctx.Done():
			// The run is stopping while the worker is busy; the event
			// stays in the stream.
			return errStopping
		}
		s.cur[w] = b
	}
	v := b.arena.copy(data)
	if keyInData {
		key = v[ks:ke:ke]
	} else {
		key = b.arena.copy(key)
	}
	nf := e.nf
	fs := b.fields[b.n*nf : (b.n+1)*nf : (b.n+1)*nf]
	for i := range fs {
		f := s.slots[i]
		if f.Kind == abi.FieldString || f.Kind == abi.FieldRaw {
			if st, en, inScratch, _ := s.sc.Span(i); inScratch {
				f.Str = b.arena.copy(f.Str)
			} else {
				f.Str = v[st:en:en]
			}
		}
		fs[i] = f
	}
	ev := &b.events[b.n]
	ev.Seq = a.seq
	ev.Time = ts
	ev.KeyGroup = kg
	ev.Key = key
	ev.Value = v
	ev.Subject = b.arena.copyString(subject)
	ev.Fields = fs
	b.n++
	if b.n == s.size {
		s.send(w)
	}
	return nil
}

// isLate reports whether an event with time ts is late under watermark
// wm. As in Flink, a watermark wm says no more events with a time ≤ wm are
// expected, and event-time timers at wm have fired, so an event at wm is
// late.
func isLate(ts, wm int64) bool { return ts <= wm }

// eventTime returns the event time of a scanned message, or the reason it
// has none.
func (s *source) eventTime(msg jetstream.Msg, a ackInfo) (int64, string) {
	e := s.e
	switch e.timeKind {
	case job.EventTimeFromField:
		f := s.slots[e.tsAt]
		switch {
		case (f.Kind == abi.FieldInt || f.Kind == abi.FieldFloat) && e.timeFormat != job.FormatRFC3339:
			if f.Kind == abi.FieldInt {
				return f.Int(), ""
			}
			return int64(f.Float()), ""
		case f.Kind == abi.FieldString && e.timeFormat != job.FormatEpochMs:
			if t, ok := parseRFC3339(f.Str); ok {
				return t, ""
			}
			return 0, fmt.Sprintf("event time field %s: %q is not an RFC 3339 time such as 2025-01-02T15:04:05.123Z", e.timeName, f.Str)
		}
		return 0, "event time field " + e.timeName + " is " + f.Kind.String() + ", want " + formatWant(e.timeFormat)
	case job.EventTimeFromHeader:
		v := msg.Headers().Get(e.timeName)
		if v == "" {
			return 0, "event time header " + e.timeName + " is missing"
		}
		if e.timeFormat != job.FormatRFC3339 {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				return n, ""
			}
		}
		if e.timeFormat != job.FormatEpochMs {
			if t, ok := parseRFC3339(bytesOf(v)); ok {
				return t, ""
			}
		}
		return 0, fmt.Sprintf("event time header %s: %q is not %s", e.timeName, v, formatWant(e.timeFormat))
	}
	return a.tsNanos / 1e6, ""
}

// formatWant describes what an event-time format accepts.
func formatWant(format string) string {
	switch format {
	case job.FormatEpochMs:
		return "epoch milliseconds"
	case job.FormatRFC3339:
		return "an RFC 3339 time"
	}
	return "epoch milliseconds or an RFC 3339 time"
}

// parseRFC3339 parses an RFC 3339 time to ms since the Unix epoch.
func parseRFC3339(b []byte) (int64, bool) {
	t, err := time.Parse(time.RFC3339, unsafe.String(unsafe.SliceData(b), len(b)))
	if err != nil {
		return 0, false
	}
	return t.UnixMilli(), true
}

// reject dead-letters a message the source cannot route. s.mu is held.
func (s *source) reject(msg jetstream.Msg, a ackInfo, reason string) error {
	return s.e.deadLetter(msg.Data(), reason, msg.Subject(), a.seq, msg.Headers())
}

// subjectToken returns the 1-based token n of subj.
func subjectToken(subj string, n int) (string, bool) {
	for i := 1; ; i++ {
		tok, rest, more := strings.Cut(subj, ".")
		if i == n {
			return tok, tok != ""
		}
		if !more {
			return "", false
		}
		subj = rest
	}
}
