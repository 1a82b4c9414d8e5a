package freqcap

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// GenOptions shapes generated events. Zero fields take the defaults.
type GenOptions struct {
	Seed uint64
	// Users and Ads are the number of distinct users and ads (default
	// 100000 and 1000). Ids run from 1.
	Users, Ads int
	// UserSkew and AdSkew are the Zipf exponents s > 1 (default 1.1 and
	// 1.3): larger is more skewed toward low ids.
	UserSkew, AdSkew float64
	// StartMs is the first log_time (default 1735689600000, 2025-01-01);
	// each event is StepMs (default 1) later.
	StartMs, StepMs int64
}

func (o GenOptions) withDefaults() GenOptions {
	if o.Users <= 0 {
		o.Users = 100_000
	}
	if o.Ads <= 0 {
		o.Ads = 1_000
	}
	if o.UserSkew <= 1 {
		o.UserSkew = 1.1
	}
	if o.AdSkew <= 1 {
		o.AdSkew = 1.3
	}
	if o.StartMs == 0 {
		o.StartMs = 1_735_689_600_000
	}
	if o.StepMs == 0 {
		o.StepMs = 1
	}
	return o
}

// Events yields n events, deterministic for a given options value. Each
// yielded slice is fresh and may be kept.
func Events(n int, opts GenOptions) iter.Seq[[]byte] {
	o := opts.withDefaults()
	return func(yield func([]byte) bool) {
		r := rand.New(rand.NewPCG(o.Seed, o.Seed^0x9e3779b97f4a7c15))
		users := rand.NewZipf(r, o.UserSkew, 1, uint64(o.Users-1))
		ads := rand.NewZipf(r, o.AdSkew, 1, uint64(o.Ads-1))
		for i := range n {
			b := make([]byte, 0, 64)
			b = append(b, `{"user_no":`...)
			b = strconv.AppendUint(b, users.Uint64()+1, 10)
			b = append(b, `,"da_id":`...)
			b = strconv.AppendUint(b, ads.Uint64()+1, 10)
			b = append(b, `,"log_time":`...)
			b = strconv.AppendInt(b, o.StartMs+int64(i)*o.StepMs, 10)
			b = append(b, '}')
			if !yield(b) {
				return
			}
		}
	}
}

// Generate returns n events, deterministic for a given options value.
func Generate(n int, opts GenOptions) [][]byte {
	out := make([][]byte, 0, n)
	for e := range Events(n, opts) {
		out = append(out, e)
	}
	return out
}

// Oracle computes the expected capped pairs directly: the (user_no, da_id)
// pairs whose view count reaches limit, each once. Events without integer
// user_no and da_id are skipped, as the job dead-letters them.
func Oracle(events [][]byte, limit int) map[[2]int64]bool {
	counts := map[[2]int64]int{}
	capped := map[[2]int64]bool{}
	for _, e := range events {
		var v struct {
			UserNo *int64 `json:"user_no"`
			DaID   *int64 `json:"da_id"`
		}
		if json.Unmarshal(e, &v) != nil || v.UserNo == nil || v.DaID == nil {
			continue
		}
		k := [2]int64{*v.UserNo, *v.DaID}
		counts[k]++
		if counts[k] == limit {
			capped[k] = true
		}
	}
	return capped
}

// Publish publishes events to subject with asynchronous publishing, keeping
// a bounded window of unacknowledged messages, and returns once every
// message is acknowledged. progress, when not nil, is called with the number
// of acknowledged messages every 10000 messages and at the end.
func Publish(ctx context.Context, js jetstream.JetStream, subject string, events [][]byte, progress func(acked int)) error {
	const window = 4096
	stall := jetstream.WithStallWait(time.Minute)
	futures := make([]jetstream.PubAckFuture, 0, window)
	acked := 0
	wait := func(f jetstream.PubAckFuture) error {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("publish to %s: %w", subject, err)
		case <-ctx.Done():
			return ctx.Err()
		}
		acked++
		if progress != nil && acked%10000 == 0 {
			progress(acked)
		}
		return nil
	}
	head := 0
	for _, e := range events {
		if len(futures)-head >= window {
			if err := wait(futures[head]); err != nil {
				return err
			}
			futures[head] = nil
			head++
			if head == window {
				futures = append(futures[:0], futures[head:]...)
				head = 0
			}
		}
		f, err := js.PublishAsync(subject, e, stall)
		if err != nil {
			return fmt.Errorf("publish to %s: %w", subject, err)
		}
		futures = append(futures, f)
	}
	for _, f := range futures[head:] {
		if err := wait(f); err != nil {
			return err
		}
	}
	if progress != nil && acked%10000 != 0 {
		progress(acked)
	}
	if acked != len(events) {
		return errors.New("publish: not every message was acknowledged")
	}
	return nil
}
