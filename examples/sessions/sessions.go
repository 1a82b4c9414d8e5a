// Package sessions is the session-window example job of wasmstream, in
// plain Go: the job config, an event generator (in order or shuffled within
// a bound) and an oracle that computes the expected sessions directly. The
// plugin is in ./plugin.
//
// Events are JSON objects {"user_id":<int>,"ts":<epoch ms>,"amount":<int>},
// keyed by user_id, with ts as their event time. A user's session ends once
// Gap ms of event time pass without an event: an event less than Gap after
// the session's last event joins it, a later one starts a new session. The
// job emits one record per session, when the watermark passes its end, to
// the main output: key user_id, value {"user_id":..,"start":..,"end":..,
// "events":..,"amount":..} (times of the first and last events, their
// count and the sum of their amounts).
package sessions

import (
	"cmp"
	_ "embed"
	"iter"
	"math/rand/v2"
	"slices"
	"strconv"

	"github.com/wasmstream/wasmstream/examples/internal/eventtime"
	"github.com/wasmstream/wasmstream/examples/internal/gen"
)

// JobYAML is the example's job config: stream CLICKS (subjects
// "clicks.>"), keyed by user_id, event time from ts with a
// max_out_of_orderness of DefaultMaxOutOfOrderness, plugin ./plugin with a
// 30-minute gap, sessions to sessions.closed, late events to
// sessions.late.
//
//go:embed job.yaml
var JobYAML []byte

// Defaults of the plugin config and of the job.
const (
	DefaultGap               int64 = 30 * 60 * 1000 // ms
	DefaultMaxOutOfOrderness int64 = 120_000        // ms, job.yaml's
)

// GenOptions shapes generated events. Zero fields take the defaults.
type GenOptions struct {
	Seed uint64
	// Users is the number of distinct users (default 2000), ids from 1,
	// Zipf-distributed with exponent 1.1: frequent users have long
	// sessions, rare ones sessions of one event.
	Users int
	// StartMs is the first ts (default 1735689600000, 2025-01-01); each
	// event is StepMs (default 15000) later.
	StartMs, StepMs int64
	// Disorder, when more than 0, shuffles the events so that none is
	// more than Disorder ms behind the latest ts before it.
	Disorder int64
}

func (o GenOptions) withDefaults() GenOptions {
	if o.Users <= 0 {
		o.Users = 2000
	}
	if o.StartMs == 0 {
		o.StartMs = gen.DefaultStartMs
	}
	if o.StepMs == 0 {
		o.StepMs = 15_000
	}
	return o
}

// Events yields n events in ts order (it ignores Disorder), deterministic
// for a given options value, with amounts from 0 to 99.
func Events(n int, opts GenOptions) iter.Seq[[]byte] {
	o := opts.withDefaults()
	return gen.Events(n, o.Seed, 0x94d049bb133111eb, func(r *rand.Rand) gen.Event {
		users := rand.NewZipf(r, 1.1, 1, uint64(o.Users-1))
		return func(b []byte, i int) []byte {
			b = gen.AppendInt(b, "user_id", int64(users.Uint64())+1)
			b = gen.AppendInt(b, "ts", o.StartMs+int64(i)*o.StepMs)
			b = gen.AppendInt(b, "amount", r.Int64N(100))
			return append(b, '}')
		}
	})
}

// Generate returns n events, in ts order or, with Disorder, shuffled within
// it.
func Generate(n int, opts GenOptions) [][]byte {
	o := opts.withDefaults()
	return gen.Generate(Events(n, o), n, o.StartMs, o.StepMs, o.Disorder, o.Seed)
}

// Params are the job settings the oracle models; zero fields take the
// defaults.
type Params struct {
	Gap               int64 // ms
	MaxOutOfOrderness int64 // ms
}

// Session is one expected session record.
type Session struct {
	Key   string // user_id
	Value string
}

// Expect computes directly the sessions the job emits for events published
// in this order and run to the end of the stream (a bounded run, which
// ends every session), per user in time order. Late events (ts at or below
// the largest earlier ts minus MaxOutOfOrderness minus 1 ms) are skipped,
// as are events without integer user_id, ts and amount.
func Expect(events [][]byte, p Params) []Session {
	if p.Gap <= 0 {
		p.Gap = DefaultGap
	}
	if p.MaxOutOfOrderness <= 0 {
		p.MaxOutOfOrderness = DefaultMaxOutOfOrderness
	}
	type fields struct {
		UserID *int64 `json:"user_id"`
		TS     *int64 `json:"ts"`
		Amount *int64 `json:"amount"`
	}
	type ev struct{ user, ts, amount int64 }
	var evs []ev
	for _, v := range eventtime.OnTime(events, p.MaxOutOfOrderness, func(v *fields) *int64 { return v.TS }) {
		if v.UserID == nil || v.Amount == nil {
			continue
		}
		evs = append(evs, ev{*v.UserID, *v.TS, *v.Amount})
	}
	slices.SortStableFunc(evs, func(a, b ev) int { return cmp.Or(cmp.Compare(a.user, b.user), cmp.Compare(a.ts, b.ts)) })
	var out []Session
	var start, last, n, sum int64
	emit := func(user int64) {
		u := strconv.FormatInt(user, 10)
		out = append(out, Session{u, `{"user_id":` + u + `,"start":` + strconv.FormatInt(start, 10) + `,"end":` + strconv.FormatInt(last, 10) +
			`,"events":` + strconv.FormatInt(n, 10) + `,"amount":` + strconv.FormatInt(sum, 10) + `}`})
	}
	for i, e := range evs {
		if i > 0 && (evs[i-1].user != e.user || e.ts >= last+p.Gap) {
			emit(evs[i-1].user)
			n = 0
		}
		if n == 0 {
			start, sum = e.ts, 0
		}
		last, n, sum = e.ts, n+1, sum+e.amount
	}
	if len(evs) > 0 {
		emit(evs[len(evs)-1].user)
	}
	return out
}
