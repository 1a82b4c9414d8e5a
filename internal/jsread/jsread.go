// Package jsread reads back what a job wrote to a JetStream subject: the demo
// prints it and the end-to-end tests compare it with their oracles.
package jsread

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Record is one stored message.
type Record struct {
	Seq     uint64
	Subject string
	Key     string // the Wasmstream-Key header, if any
	Header  map[string][]string
	Data    []byte
}

// All returns every message the stream capturing subject holds on that
// subject, in stream order. A subject no stream captures yields no records.
func All(ctx context.Context, js jetstream.JetStream, subject string) ([]Record, error) {
	name, err := js.StreamNameBySubject(ctx, subject)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("find the stream of %s: %w", subject, err)
	}
	s, err := js.Stream(ctx, name)
	if err != nil {
		return nil, err
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		return nil, err
	}
	want := info.State.Subjects[subject]
	if want == 0 {
		return nil, nil
	}
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		return nil, err
	}
	out := make([]Record, 0, want)
	for uint64(len(out)) < want {
		// Ask for no more than is left: a fetch returns once it has its
		// count, or after the wait.
		batch, err := c.Fetch(int(min(want-uint64(len(out)), 4096)), jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return out, err
		}
		n := 0
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				return out, err
			}
			out = append(out, Record{Seq: md.Sequence.Stream, Subject: m.Subject(), Key: m.Headers().Get("Wasmstream-Key"), Header: m.Headers(), Data: m.Data()})
		}
		if err := batch.Error(); err != nil {
			return out, err
		}
		if n == 0 {
			if err := ctx.Err(); err != nil {
				return out, err
			}
		}
	}
	return out, nil
}
