package engine

import (
	"context"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wasmstream/wasmstream/examples/freqcap"
	"github.com/wasmstream/wasmstream/host/process"
)

// BenchmarkFreqcapNative measures source→worker throughput of the freqcap
// job with the native function: b.N events are published first (not
// timed), then the engine runs until caught up.
func BenchmarkFreqcapNative(b *testing.B) {
	for _, par := range []int{1, 2} {
		b.Run(fmt.Sprintf("parallelism=%d", par), func(b *testing.B) {
			e := newEnv(b)
			createStream(b, e, "FREQCAP", "views.>")
			n := max(b.N, 1000)
			events := freqcap.Generate(n, freqcap.GenOptions{Seed: 3})
			if err := freqcap.Publish(testCtx(b), e.js, "views.all", events, nil); err != nil {
				b.Fatal(err)
			}
			c := freqcapJob(b, par)
			cfg := freqcapConfig(b, e, c)
			cfg.Logf = nil
			eng, err := New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			sum, err := eng.Run(testCtx(b))
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			if sum.TotalProcessed() != int64(n) {
				b.Fatalf("processed %d of %d", sum.TotalProcessed(), n)
			}
			b.ReportMetric(sum.EventsPerSec, "events/s")
		})
	}
}

// BenchmarkParseAck compares the engine's reply-subject parser with
// jetstream.Msg.Metadata on a real message.
func BenchmarkParseAck(b *testing.B) {
	e := newEnv(b)
	createStream(b, e, "S", "s.>")
	if _, err := e.js.Publish(testCtx(b), "s.1", []byte("x")); err != nil {
		b.Fatal(err)
	}
	cons, err := e.js.OrderedConsumer(testCtx(b), "S", jetstream.OrderedConsumerConfig{})
	if err != nil {
		b.Fatal(err)
	}
	msg, err := cons.Next()
	if err != nil {
		b.Fatal(err)
	}
	b.Run("parseAck", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := parseAck(msg.Reply()); !ok {
				b.Fatal("not parsed")
			}
		}
	})
	b.Run("Metadata", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := msg.Metadata(); err != nil {
				b.Fatal(err)
			}
		}
	})
	_ = nats.ErrTimeout
}

// synthMsg is a JetStream message as the consumer delivers it, for measuring
// the source's routing without the network.
type synthMsg struct {
	jetstream.Msg
	data    []byte
	subject string
	reply   string
}

func (m *synthMsg) Data() []byte         { return m.data }
func (m *synthMsg) Subject() string      { return m.subject }
func (m *synthMsg) Reply() string        { return m.reply }
func (m *synthMsg) Headers() nats.Header { return nil }

// BenchmarkSourceRoute measures the per-event cost of routing (reply
// parsing, field and key extraction, key group, batch append) with two
// workers that only recycle batches. It must not allocate.
func BenchmarkSourceRoute(b *testing.B) {
	c := freqcapJob(b, 2)
	cfg := Config{URL: "nats://unused", Job: c, Fields: freqcap.Contract().Fields, Outputs: freqcap.Contract().Outputs,
		NewFunction: func(int) (process.Function, error) { return nil, nil }}
	e, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	for i := range 2 {
		w := &worker{e: e, id: i, in: make(chan *batch, batchesPerWorker), free: make(chan *batch, batchesPerWorker)}
		for range batchesPerWorker {
			w.free <- newBatch(c.Batch.Size, e.nf)
		}
		e.workers = append(e.workers, w)
		go func() {
			for bt := range w.in {
				bt.reset()
				w.free <- bt
			}
		}()
	}
	s := e.newSource()
	s.ctx = context.Background()
	events := freqcap.Generate(4096, freqcap.GenOptions{Seed: 5})
	msgs := make([]*synthMsg, len(events))
	for i, ev := range events {
		msgs[i] = &synthMsg{data: ev, subject: "views.all",
			reply: fmt.Sprintf("$JS.ACK._.HASH.FREQCAP.c_1.1.%d.%d.1735689600000000000.%d.TOKEN", i+1, i+1, 1000000)}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := s.handle(msgs[i%len(msgs)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.StopTimer()
	for _, w := range e.workers {
		close(w.in)
	}
}

// BenchmarkRawConsume is the ceiling for BenchmarkFreqcapNative: the same
// ordered consumer reading the same stream and parsing reply subjects, with
// no processing.
func BenchmarkRawConsume(b *testing.B) {
	e := newEnv(b)
	createStream(b, e, "FREQCAP", "views.>")
	n := max(b.N, 1000)
	if err := freqcap.Publish(testCtx(b), e.js, "views.all", freqcap.Generate(n, freqcap.GenOptions{Seed: 3}), nil); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	cons, _ := e.js.OrderedConsumer(testCtx(b), "FREQCAP", jetstream.OrderedConsumerConfig{})
	it, _ := cons.Messages(jetstream.PullMaxMessages(pullBuffer))
	for i := 0; i < n; i++ {
		m, err := it.Next()
		if err != nil {
			b.Fatal(err)
		}
		parseAck(m.Reply())
	}
	it.Stop()
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "msgs/s")
}
