// Package fatigue is the notification-fatigue example job of wasmstream, in
// plain Go: the job config, an event generator (in order or shuffled within
// a bound) and an oracle that computes the expected records directly. The
// plugin is in ./plugin.
//
// Events are JSON objects {"user_id":<int>,"notification_id":<int>,
// "ts":<epoch ms>}, keyed by user_id, with ts as their event time. A user
// gets at most Limit notifications in any 24 hours: notifications are
// decided in event-time order (by notification_id within a millisecond), a
// notification allowed at s counting against those in [s, s+24h). Allowed
// ones go to the main output, the others to the side output "suppressed"
// with a reason and the time the next one would be allowed.
package fatigue

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

// JobYAML is the example's job config: stream NOTIFY (subjects
// "notify.>"), keyed by user_id, event time from ts with a
// max_out_of_orderness of DefaultMaxOutOfOrderness, plugin ./plugin with
// limit 3, allowed notifications to fatigue.sent, suppressed ones to
// fatigue.suppressed, late events to fatigue.late.
//
//go:embed job.yaml
var JobYAML []byte

// Window is the rolling budget period, in ms: 24 hours.
const Window int64 = 24 * 3600 * 1000

// Defaults of the plugin config and of the job.
const (
	DefaultLimit                   = 3
	DefaultMaxOutOfOrderness int64 = 30_000 // ms, job.yaml's
)

// GenOptions shapes generated events. Zero fields take the defaults.
type GenOptions struct {
	Seed uint64
	// Users is the number of distinct users (default 1000), ids from 1,
	// Zipf-distributed with exponent 1.2.
	Users int
	// StartMs is the first ts (default 1735689600000, 2025-01-01); each
	// event is StepMs (default 10000) later.
	StartMs, StepMs int64
	// Disorder, when more than 0, shuffles the events so that none is
	// more than Disorder ms behind the latest ts before it.
	Disorder int64
}

func (o GenOptions) withDefaults() GenOptions {
	if o.Users <= 0 {
		o.Users = 1000
	}
	if o.StartMs == 0 {
		o.StartMs = gen.DefaultStartMs
	}
	if o.StepMs == 0 {
		o.StepMs = 10_000
	}
	return o
}

// Events yields n events in ts order (it ignores Disorder), deterministic
// for a given options value; notification i has id i+1.
func Events(n int, opts GenOptions) iter.Seq[[]byte] {
	o := opts.withDefaults()
	return gen.Events(n, o.Seed, 0x2545f4914f6cdd1d, func(r *rand.Rand) gen.Event {
		users := rand.NewZipf(r, 1.2, 1, uint64(o.Users-1))
		return func(b []byte, i int) []byte {
			b = gen.AppendInt(b, "user_id", int64(users.Uint64())+1)
			b = gen.AppendInt(b, "notification_id", int64(i)+1)
			b = gen.AppendInt(b, "ts", o.StartMs+int64(i)*o.StepMs)
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
	Limit             int
	MaxOutOfOrderness int64 // ms
}

// Record is one record the job emits.
type Record struct {
	Output string // "main" or "suppressed"
	Key    string // user_id
	Value  string
}

// Expect computes directly the records the job emits for events published
// in this order, per user in event-time order. Late events (ts at or below
// the largest earlier ts minus MaxOutOfOrderness minus 1 ms) are skipped,
// as are events without integer user_id, notification_id and ts; a
// repeated (user_id, notification_id, ts) is decided once.
func Expect(events [][]byte, p Params) []Record {
	if p.Limit <= 0 {
		p.Limit = DefaultLimit
	}
	if p.MaxOutOfOrderness <= 0 {
		p.MaxOutOfOrderness = DefaultMaxOutOfOrderness
	}
	type fields struct {
		UserID *int64 `json:"user_id"`
		ID     *int64 `json:"notification_id"`
		TS     *int64 `json:"ts"`
	}
	type note struct{ user, id, ts int64 }
	var notes []note
	seen := map[note]bool{}
	for _, v := range eventtime.OnTime(events, p.MaxOutOfOrderness, func(v *fields) *int64 { return v.TS }) {
		if v.UserID == nil || v.ID == nil {
			continue
		}
		n := note{*v.UserID, *v.ID, *v.TS}
		if !seen[n] {
			seen[n] = true
			notes = append(notes, n)
		}
	}
	slices.SortFunc(notes, func(a, b note) int {
		return cmp.Or(cmp.Compare(a.user, b.user), cmp.Compare(a.ts, b.ts), cmp.Compare(uint64(a.id), uint64(b.id)))
	})
	reason := "limit of " + strconv.Itoa(p.Limit) + " notifications in 24h reached"
	var out []Record
	var sent []int64 // the current user's allowed times
	for i, n := range notes {
		if i == 0 || notes[i-1].user != n.user {
			sent = sent[:0]
		}
		live := 0
		for _, s := range sent {
			if s > n.ts-Window {
				live++
			}
		}
		key := strconv.FormatInt(n.user, 10)
		v := `{"user_id":` + key + `,"notification_id":` + strconv.FormatInt(n.id, 10) + `,"ts":` + strconv.FormatInt(n.ts, 10)
		if live >= p.Limit {
			oldest := sent[len(sent)-p.Limit]
			out = append(out, Record{"suppressed", key, v + `,"reason":"` + reason + `","next_allowed":` + strconv.FormatInt(oldest+Window, 10) + "}"})
			continue
		}
		out = append(out, Record{"main", key, v + "}"})
		sent = append(sent, n.ts)
	}
	return out
}
