package freqcap

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/wasmstream/wasmstream/examples/internal/eventtime"
	"github.com/wasmstream/wasmstream/examples/internal/gen"
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
	// Disorder, when more than 0, shuffles the events out of log_time
	// order: each is delayed by up to Disorder ms (pseudo-randomly, from
	// Seed) and they come in order of log_time plus delay, so none is more
	// than Disorder ms behind the latest log_time before it. A job whose
	// max_out_of_orderness is at least Disorder finds none late.
	Disorder int64
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
		o.StartMs = gen.DefaultStartMs
	}
	if o.StepMs == 0 {
		o.StepMs = 1
	}
	return o
}

// Events yields n events in log_time order (it ignores Disorder),
// deterministic for a given options value. Each yielded slice is fresh and
// may be kept.
func Events(n int, opts GenOptions) iter.Seq[[]byte] {
	o := opts.withDefaults()
	return gen.Events(n, o.Seed, 0x9e3779b97f4a7c15, func(r *rand.Rand) gen.Event {
		users := rand.NewZipf(r, o.UserSkew, 1, uint64(o.Users-1))
		ads := rand.NewZipf(r, o.AdSkew, 1, uint64(o.Ads-1))
		return func(b []byte, i int) []byte {
			b = gen.AppendInt(b, "user_no", int64(users.Uint64())+1)
			b = gen.AppendInt(b, "da_id", int64(ads.Uint64())+1)
			b = gen.AppendInt(b, "log_time", o.StartMs+int64(i)*o.StepMs)
			return append(b, '}')
		}
	})
}

// Generate returns n events, deterministic for a given options value, in
// log_time order or, with Disorder, shuffled within it.
func Generate(n int, opts GenOptions) [][]byte {
	o := opts.withDefaults()
	return gen.Generate(Events(n, o), n, o.StartMs, o.StepMs, o.Disorder, o.Seed)
}

// Params are the job settings the oracle models; zero fields take the
// defaults (DefaultCap, DefaultWindow, DefaultMaxOutOfOrderness).
type Params struct {
	Cap               int
	Window            int64 // ms
	MaxOutOfOrderness int64 // ms
}

func (p Params) withDefaults() Params {
	if p.Cap <= 0 {
		p.Cap = DefaultCap
	}
	if p.Window <= 0 {
		p.Window = DefaultWindow
	}
	if p.MaxOutOfOrderness <= 0 {
		p.MaxOutOfOrderness = DefaultMaxOutOfOrderness
	}
	return p
}

// Record is one record the job emits.
type Record struct {
	Output string // "capped" or "released"
	Key    string // "<user_no>.<da_id>"
	Value  string
}

// Expect computes directly the records the job emits for events published
// in this order and run to the end of the stream (a bounded run, which
// closes every window), per user in event-time order. It models the job: an
// event is late, and skipped, when its log_time is at or below the
// watermark (the largest earlier log_time minus MaxOutOfOrderness minus
// 1 ms); a view counts during [log_time, log_time+Window); at one
// millisecond expiries apply before views; capped is emitted when a
// count rises to Cap, released when it falls to Cap-1. Events without
// integer user_no, da_id and log_time are skipped, as the job dead-letters
// them.
func Expect(events [][]byte, p Params) []Record {
	p = p.withDefaults()
	type change struct {
		user, t, ad int64
		kind        byte
		seq         int
	}
	type fields struct {
		UserNo  *int64 `json:"user_no"`
		DaID    *int64 `json:"da_id"`
		LogTime *int64 `json:"log_time"`
	}
	changes := make([]change, 0, 2*len(events))
	for i, v := range eventtime.OnTime(events, p.MaxOutOfOrderness, func(v *fields) *int64 { return v.LogTime }) {
		if v.UserNo == nil || v.DaID == nil {
			continue
		}
		changes = append(changes,
			change{*v.UserNo, *v.LogTime, *v.DaID, kindView, i},
			change{*v.UserNo, *v.LogTime + p.Window, *v.DaID, kindExpire, i})
	}
	// The order the timers fire in: per user by time, then payload (kind,
	// ad, sequence).
	slices.SortFunc(changes, func(a, b change) int {
		return cmp.Or(cmp.Compare(a.user, b.user), cmp.Compare(a.t, b.t), cmp.Compare(a.kind, b.kind),
			cmp.Compare(uint64(a.ad), uint64(b.ad)), cmp.Compare(a.seq, b.seq))
	})
	counts := map[[2]int64]int64{}
	var out []Record
	limit := int64(p.Cap)
	for _, c := range changes {
		k := [2]int64{c.user, c.ad}
		user := strconv.AppendInt(nil, c.user, 10)
		key := fmt.Sprintf("%d.%d", c.user, c.ad)
		if c.kind == kindView {
			counts[k]++
			if counts[k] == limit {
				out = append(out, Record{"capped", key, string(AppendCapped(nil, user, c.ad, limit))})
			}
			continue
		}
		counts[k]--
		if counts[k] == limit-1 {
			out = append(out, Record{"released", key, string(AppendReleased(nil, user, c.ad, limit-1, c.t))})
		}
		if counts[k] == 0 {
			delete(counts, k)
		}
	}
	return out
}

// Oracle returns the (user_no, da_id) pairs that Expect caps at least once
// with the given cap and the default window and max_out_of_orderness (those
// of job.yaml). For a stream spanning less than the window, as Generate's
// defaults give, each such pair is capped exactly once.
func Oracle(events [][]byte, limit int) map[[2]int64]bool {
	capped := map[[2]int64]bool{}
	for _, r := range Expect(events, Params{Cap: limit}) {
		if r.Output != "capped" {
			continue
		}
		var v struct{ UserNo, DaID int64 }
		if err := json.Unmarshal([]byte(r.Value), &struct {
			UserNo *int64 `json:"user_no"`
			DaID   *int64 `json:"da_id"`
		}{&v.UserNo, &v.DaID}); err == nil {
			capped[[2]int64{v.UserNo, v.DaID}] = true
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
