package freqcap

import (
	"context"
	_ "embed"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/wasmstream/wasmstream/abi"
	"github.com/wasmstream/wasmstream/host/process"
	"github.com/wasmstream/wasmstream/statestore"
)

// JobYAML is the example's job config: stream FREQCAP (subjects "views.>"),
// keyed by user_no, plugin ./plugin with cap 3, output capped to the
// JetStream subject freqcap.capped.
//
//go:embed job.yaml
var JobYAML []byte

// DefaultCap is the cap used when the config does not set "cap".
const DefaultCap = 3

// Ports and state ids of the contract.
const (
	CappedPort = 1 // side output "capped"
	ViewsState = 0 // map state "views"
)

// Contract returns the contract the freqcap plugin declares.
func Contract() abi.Contract {
	return abi.Contract{
		ABI:     abi.Version,
		Name:    "freqcap",
		States:  []abi.StateDesc{{Name: "views", Kind: abi.KindMap}},
		Outputs: []string{"capped"},
		Fields:  []abi.FieldDesc{{Name: "da_id"}},
	}
}

// Native is the freqcap process function in Go, behaving exactly as the
// Wasm plugin: same state layout, outputs and rejections.
type Native struct {
	cap        int64
	daSlot     int
	state      statestore.Backend
	ukey       [8]byte
	key, value []byte
}

var _ process.Function = (*Native)(nil)

// NewNative returns a Native function; Open configures it.
func NewNative() *Native { return &Native{} }

// Open implements process.Function. Config "cap" (a decimal integer ≥ 1,
// default 3) sets the cap.
func (n *Native) Open(_ context.Context, env process.Env) error {
	n.cap = DefaultCap
	if s, ok := env.Config["cap"]; ok {
		v, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return fmt.Errorf("config cap=%q: want a decimal integer", s)
		}
		if v < 1 {
			return fmt.Errorf("config cap=%d: want a positive number of views", v)
		}
		n.cap = v
	}
	n.daSlot = slices.Index(env.Fields, "da_id")
	if n.daSlot < 0 {
		return fmt.Errorf("freqcap: the host extracts no field da_id (fields %v): declare the contract's fields", env.Fields)
	}
	if env.State == nil {
		return fmt.Errorf("freqcap: no state backend")
	}
	n.state = env.State
	return nil
}

// ProcessBatch implements process.Function.
func (n *Native) ProcessBatch(_ context.Context, events []process.Event, out process.Collector) error {
	for i := range events {
		ev := &events[i]
		f := ev.Fields[n.daSlot]
		da, ok := fieldInt(f)
		if !ok {
			out.Reject(ev, "da_id is "+f.Kind.String()+", want an integer")
			continue
		}
		binary.LittleEndian.PutUint64(n.ukey[:], uint64(da))
		c, err := n.state.MapAddInt64(ev.KeyGroup, ViewsState, ev.Key, n.ukey[:], 1)
		if err != nil {
			return fmt.Errorf("freqcap: views state: %w", err)
		}
		if c != n.cap {
			continue
		}
		n.key = append(n.key[:0], ev.Key...)
		n.key = append(n.key, '.')
		n.key = strconv.AppendInt(n.key, da, 10)
		n.value = AppendCapped(n.value[:0], ev.Key, da, n.cap)
		out.Emit(CappedPort, ev.Seq, n.key, n.value)
	}
	return nil
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

// fieldInt converts a field to an int64 as the plugin SDK does: JSON
// integers, integral floats in range and decimal strings.
func fieldInt(f abi.Field) (int64, bool) {
	switch f.Kind {
	case abi.FieldInt:
		return f.Int(), true
	case abi.FieldFloat:
		x := f.Float()
		if x != math.Trunc(x) || x < -(1<<63) || x >= 1<<63 {
			return 0, false
		}
		return int64(x), true
	case abi.FieldString:
		b := f.Str
		neg := len(b) > 0 && b[0] == '-'
		if neg {
			b = b[1:]
		}
		if len(b) == 0 || len(b) > 19 {
			return 0, false
		}
		var u uint64
		for _, c := range b {
			if c < '0' || c > '9' {
				return 0, false
			}
			u = u*10 + uint64(c-'0')
		}
		if neg {
			if u > 1<<63 {
				return 0, false
			}
			return -int64(u), true
		}
		if u > math.MaxInt64 {
			return 0, false
		}
		return int64(u), true
	}
	return 0, false
}
