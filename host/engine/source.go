package engine

import (
	"context"
	"errors"
	"fmt"
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
}

// runSource reads until ctx is done, the stream is caught up (with
// UntilCaughtUp) or reading fails.
func (e *Engine) runSource(ctx context.Context) error {
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
	if until {
		switch {
		case policy == job.StartNew:
			e.logf("source: start: new with until-caught-up reads nothing that is already in the stream")
			return nil
		case info.State.Msgs == 0:
			e.logf("source: stream %s is empty: nothing to catch up", src.Stream)
			return nil
		case policy == job.StartSequence && startSeq > lastSeq:
			e.logf("source: start sequence %d is after the stream's last sequence %d: nothing to catch up", startSeq, lastSeq)
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

	s := e.newSource()
	s.ctx = ctx
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
		if err != nil {
			return err
		}
		if until && (a.seq >= lastSeq || a.pending == 0) {
			return nil
		}
	}
}

func (e *Engine) newSource() *source {
	sc, _ := jsonscan.Compile(e.paths) // checked in New
	return &source{
		e:      e,
		cur:    make([]*batch, len(e.workers)),
		sc:     sc,
		slots:  make([]abi.Field, len(e.paths)),
		scan:   len(e.paths) > 0,
		size:   e.job.Batch.Size,
		maxPar: e.job.MaxParallelism,
		par:    e.job.Parallelism,
	}
}

// lingerLoop sends partial batches that have waited about the linger time.
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
			s.mu.Unlock()
		}
	}
}

// send hands worker w's current batch over. s.mu is held.
func (s *source) send(w int) {
	b := s.cur[w]
	s.cur[w] = nil
	s.e.workers[w].in <- b
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
	e.eventsIn.Add(1)
	e.lastSeq.Store(a.seq)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.route(msg, a); err != nil {
		return a, err
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
	ts := a.tsNanos / 1e6
	if s.e.tsAt >= 0 {
		f := s.slots[s.e.tsAt]
		switch f.Kind {
		case abi.FieldInt:
			ts = f.Int()
		case abi.FieldFloat:
			ts = int64(f.Float())
		default:
			return s.reject(msg, a, "timestamp field "+e.job.Timestamp+" is "+f.Kind.String()+", want epoch milliseconds")
		}
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
