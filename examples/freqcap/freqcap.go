package freqcap

import (
	"context"
	_ "embed"
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/wasmstream/wasmstream/abi"
	"github.com/wasmstream/wasmstream/host/process"
	"github.com/wasmstream/wasmstream/statestore"
)

// JobYAML is the example's job config: stream FREQCAP (subjects "views.>"),
// keyed by user_no, event time from log_time with a max_out_of_orderness of
// DefaultMaxOutOfOrderness, plugin ./plugin with cap 3 and a 5-day window,
// outputs capped and released to the JetStream subjects freqcap.capped and
// freqcap.released, late events to freqcap.late.
//
//go:embed job.yaml
var JobYAML []byte

// Defaults of the plugin config and of the job.
const (
	// DefaultCap is the cap used when the config does not set "cap".
	DefaultCap = 3
	// DefaultWindow is the window in ms used when the config does not set
	// "window_ms": 5 days.
	DefaultWindow int64 = 5 * 24 * 3600 * 1000
	// DefaultMaxOutOfOrderness is job.yaml's event_time.max_out_of_orderness
	// in ms.
	DefaultMaxOutOfOrderness int64 = 60_000
)

// Ports and state ids of the contract.
const (
	CappedPort   = 1 // side output "capped"
	ReleasedPort = 2 // side output "released"
	ViewsState   = 0 // map state "views"
)

// Timer payload layout, as the plugin writes it: kind, da_id (8 bytes
// big-endian), event sequence (8 bytes big-endian).
const (
	kindExpire  = 0
	kindView    = 1
	payloadSize = 17
)

// Contract returns the contract the freqcap plugin declares.
func Contract() abi.Contract {
	return abi.Contract{
		ABI:     abi.Version,
		Name:    "freqcap",
		States:  []abi.StateDesc{{Name: "views", Kind: abi.KindMap}},
		Outputs: []string{"capped", "released"},
		Fields:  []abi.FieldDesc{{Name: "da_id"}},
	}
}

// Native is the freqcap process function in Go, behaving exactly as the
// Wasm plugin: same state layout, timers, outputs and rejections. It needs
// the worker's timer store (process.Env.Timers).
type Native struct {
	cap, window int64
	daSlot      int
	state       statestore.Backend
	timers      statestore.TimerStore
	ukey        [8]byte
	payload     [payloadSize]byte
	key, value  []byte
}

var _ process.TimerFunction = (*Native)(nil)

// NewNative returns a Native function; Open configures it.
func NewNative() *Native { return &Native{} }

// Open implements process.Function. Config "cap" (a decimal integer ≥ 1,
// default 3) sets the cap, "window_ms" (≥ 1, default 5 days) the window.
func (n *Native) Open(_ context.Context, env process.Env) error {
	var err error
	if n.cap, err = configInt(env.Config, "cap", DefaultCap); err != nil {
		return err
	}
	if n.cap < 1 {
		return fmt.Errorf("config cap=%d: want a positive number of views", n.cap)
	}
	if n.window, err = configInt(env.Config, "window_ms", DefaultWindow); err != nil {
		return err
	}
	if n.window < 1 {
		return fmt.Errorf("config window_ms=%d: want a positive number of milliseconds", n.window)
	}
	n.daSlot = slices.Index(env.Fields, "da_id")
	if n.daSlot < 0 {
		return fmt.Errorf("freqcap: the host extracts no field da_id (fields %v): declare the contract's fields", env.Fields)
	}
	if env.State == nil {
		return fmt.Errorf("freqcap: no state backend")
	}
	if env.Timers == nil {
		return fmt.Errorf("freqcap: no timer store: the state backend must keep timers")
	}
	n.state, n.timers = env.State, env.Timers
	return nil
}

func configInt(cfg map[string]string, key string, def int64) (int64, error) {
	s, ok := cfg[key]
	if !ok {
		return def, nil
	}
	v, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("config %s=%q: want a decimal integer", key, s)
	}
	return v, nil
}

// ProcessBatch implements process.Function: each view registers a timer at
// its time that adds it and one at its time plus the window that removes
// it.
func (n *Native) ProcessBatch(_ context.Context, events []process.Event, out process.Collector) error {
	for i := range events {
		ev := &events[i]
		f := ev.Fields[n.daSlot]
		da, ok := f.AsInt()
		if !ok {
			out.Reject(ev, "da_id is "+f.Kind.String()+", want an integer")
			continue
		}
		p := n.payload[:]
		binary.BigEndian.PutUint64(p[1:9], uint64(da))
		binary.BigEndian.PutUint64(p[9:], ev.Seq)
		p[0] = kindView
		if _, err := n.timers.RegisterTimer(ev.KeyGroup, statestore.Timer{Domain: abi.TimeDomainEvent, Time: ev.Time, Key: ev.Key, Payload: p}); err != nil {
			return fmt.Errorf("freqcap: timers: %w", err)
		}
		p[0] = kindExpire
		if _, err := n.timers.RegisterTimer(ev.KeyGroup, statestore.Timer{Domain: abi.TimeDomainEvent, Time: ev.Time + n.window, Key: ev.Key, Payload: p}); err != nil {
			return fmt.Errorf("freqcap: timers: %w", err)
		}
	}
	return nil
}

// OnTimers implements process.TimerFunction: a view's timer adds it to the
// count, its expiry removes it; the transitions across the cap are
// emitted.
func (n *Native) OnTimers(_ context.Context, domain int, timers []process.Event, out process.Collector) error {
	for i := range timers {
		t := &timers[i]
		if domain != abi.TimeDomainEvent || len(t.Value) != payloadSize {
			return fmt.Errorf("freqcap: unexpected timer (domain %d, payload of %d bytes)", domain, len(t.Value))
		}
		da := int64(binary.BigEndian.Uint64(t.Value[1:9]))
		binary.LittleEndian.PutUint64(n.ukey[:], uint64(da))
		n.state.SetEventTime(t.KeyGroup, t.Time)
		delta := int64(1)
		if t.Value[0] == kindExpire {
			delta = -1
		}
		c, err := n.state.MapAddInt64(t.KeyGroup, ViewsState, t.Key, n.ukey[:], delta)
		if err != nil {
			return fmt.Errorf("freqcap: views state: %w", err)
		}
		switch {
		case delta > 0 && c == n.cap:
			n.record(t.Key, da)
			n.value = AppendCapped(n.value[:0], t.Key, da, n.cap)
			out.Emit(CappedPort, t.Seq, n.key, n.value)
		case delta < 0 && c == n.cap-1:
			n.record(t.Key, da)
			n.value = AppendReleased(n.value[:0], t.Key, da, c, t.Time)
			out.Emit(ReleasedPort, t.Seq, n.key, n.value)
		}
		if c == 0 {
			if err := n.state.MapDelete(t.KeyGroup, ViewsState, t.Key, n.ukey[:]); err != nil {
				return fmt.Errorf("freqcap: views state: %w", err)
			}
		}
	}
	return nil
}

func (n *Native) record(user []byte, da int64) {
	n.key = append(n.key[:0], user...)
	n.key = append(n.key, '.')
	n.key = strconv.AppendInt(n.key, da, 10)
}

// Close implements process.Function.
func (n *Native) Close(context.Context) error { return nil }

// AppendCapped appends the capped record's value for a user key, ad and cap.
func AppendCapped(dst, user []byte, da, cap int64) []byte {
	dst = append(dst, `{"user_no":`...)
	dst = append(dst, user...)
	dst = append(dst, `,"da_id":`...)
	dst = strconv.AppendInt(dst, da, 10)
	dst = append(dst, `,"count":`...)
	dst = strconv.AppendInt(dst, cap, 10)
	return append(dst, '}')
}

// AppendReleased appends the released record's value for a user key, ad,
// count (the cap minus one) and time.
func AppendReleased(dst, user []byte, da, count, time int64) []byte {
	dst = AppendCapped(dst, user, da, count)
	dst = append(dst[:len(dst)-1], `,"time":`...)
	dst = strconv.AppendInt(dst, time, 10)
	return append(dst, '}')
}
