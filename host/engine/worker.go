package engine

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/wasmstream/wasmstream/host/job"
	"github.com/wasmstream/wasmstream/host/process"
)

// worker owns one function instance and processes the batches of its key
// groups in order.
type worker struct {
	e    *Engine
	id   int
	fn   process.Function
	in   chan *batch // batches to process
	free chan *batch // processed batches, for the source to refill

	processed atomic.Int64
	outputs   []atomic.Int64 // per port
	col       collector
}

var logLevels = [...]string{"trace", "debug", "info", "warn", "error"}

func (e *Engine) newWorker(ctx context.Context, id int) (*worker, error) {
	w := &worker{
		e:       e,
		id:      id,
		in:      make(chan *batch, batchesPerWorker),
		free:    make(chan *batch, batchesPerWorker),
		outputs: make([]atomic.Int64, len(e.ports)),
	}
	w.col.w = w
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
		Now:         func() int64 { return time.Now().UnixMilli() },
		Log: func(level int, msg string) {
			name := "log"
			if level >= 0 && level < len(logLevels) {
				name = logLevels[level]
			}
			e.logf("worker %d: %s: %s", id, name, msg)
		},
	}
	if err := fn.Open(ctx, env); err != nil {
		_ = fn.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("worker %d: open function: %w", id, err)
	}
	w.fn = fn
	return w, nil
}

// run processes batches until in is closed, then closes the function. After
// any failure in the job it only recycles batches.
func (w *worker) run(ctx context.Context) {
	defer func() {
		if err := w.fn.Close(ctx); err != nil {
			w.e.fail(fmt.Errorf("worker %d: close function: %w", w.id, err))
		}
	}()
	for b := range w.in {
		if !w.e.failed() {
			w.process(ctx, b)
		}
		b.reset()
		w.free <- b
	}
}

func (w *worker) process(ctx context.Context, b *batch) {
	events := b.events[:b.n]
	w.col.err = nil
	err := w.fn.ProcessBatch(ctx, events, &w.col)
	if err == nil {
		err = w.col.err
	}
	w.processed.Add(int64(len(events)))
	if err != nil {
		w.e.fail(fmt.Errorf("worker %d: %w", w.id, err))
	}
}

// collector receives one worker's emitted records and rejections.
type collector struct {
	w   *worker
	err error // first problem of the current batch
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
		switch s.Type {
		case job.SinkStdout:
			e.stdout.line(p.name, key, value)
		case job.SinkJetStream:
			m := &nats.Msg{Subject: s.Subject, Data: append([]byte(nil), value...)}
			if key != nil {
				m.Header = nats.Header{HeaderKey: []string{string(key)}}
			}
			if _, err := e.pub.PublishMsgAsync(m, e.stallOpt); err != nil && c.err == nil {
				c.err = fmt.Errorf("sink %s (output %s): publish: %w", s.Subject, p.name, err)
			}
		}
	}
}

// Reject implements process.Collector.
func (c *collector) Reject(ev *process.Event, reason string) {
	if reason == "" {
		reason = "rejected by the function (no reason given)"
	}
	if err := c.w.e.deadLetter(append([]byte(nil), ev.Value...), reason, string(ev.Subject), ev.Seq, nil); err != nil && c.err == nil {
		c.err = err
	}
}

var _ process.Collector = (*collector)(nil)
