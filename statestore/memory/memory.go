// Package memory is the in-memory state backend: Go maps per key group and
// state. It is the fastest backend and the reference for the conformance
// suite; its state is lost with the process unless a checkpoint saves it.
package memory

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"sync/atomic"

	"github.com/wasmstream/wasmstream/abi"
	"github.com/wasmstream/wasmstream/statestore"
)

// Backend is the in-memory statestore.Backend.
type Backend struct {
	states []abi.StateDesc
	groups []group
	keys   []atomic.Int64 // per state
	bytes  []atomic.Int64 // per state
}

type group struct {
	values []map[string][]byte
	lists  []map[string][][]byte
	maps   []map[string]map[string][]byte
}

var _ statestore.Backend = (*Backend)(nil)

// New returns an empty backend for cfg.
func New(cfg statestore.Config) (*Backend, error) {
	if cfg.MaxParallelism < 1 || cfg.MaxParallelism > 1<<15 {
		return nil, fmt.Errorf("wasmstream: max parallelism %d out of range 1..32768", cfg.MaxParallelism)
	}
	b := &Backend{
		states: cfg.States,
		groups: make([]group, cfg.MaxParallelism),
		keys:   make([]atomic.Int64, len(cfg.States)),
		bytes:  make([]atomic.Int64, len(cfg.States)),
	}
	for i := range b.groups {
		g := &b.groups[i]
		g.values = make([]map[string][]byte, len(cfg.States))
		g.lists = make([]map[string][][]byte, len(cfg.States))
		g.maps = make([]map[string]map[string][]byte, len(cfg.States))
		for st, d := range cfg.States {
			switch d.Kind {
			case abi.KindValue:
				g.values[st] = map[string][]byte{}
			case abi.KindList:
				g.lists[st] = map[string][][]byte{}
			case abi.KindMap:
				g.maps[st] = map[string]map[string][]byte{}
			}
		}
	}
	return b, nil
}

func (b *Backend) badState(st int, want abi.StateKind) error {
	if st < 0 || st >= len(b.states) {
		return fmt.Errorf("%w: state id %d (the contract has %d states)", statestore.ErrBadState, st, len(b.states))
	}
	return fmt.Errorf("%w: state %q is a %s state, not %s", statestore.ErrBadState, b.states[st].Name, b.states[st].Kind, want)
}

func (b *Backend) values(kg uint16, st int) (map[string][]byte, error) {
	if st >= 0 && st < len(b.states) {
		if m := b.groups[kg].values[st]; m != nil {
			return m, nil
		}
	}
	return nil, b.badState(st, abi.KindValue)
}

func (b *Backend) lists(kg uint16, st int) (map[string][][]byte, error) {
	if st >= 0 && st < len(b.states) {
		if m := b.groups[kg].lists[st]; m != nil {
			return m, nil
		}
	}
	return nil, b.badState(st, abi.KindList)
}

func (b *Backend) maps(kg uint16, st int) (map[string]map[string][]byte, error) {
	if st >= 0 && st < len(b.states) {
		if m := b.groups[kg].maps[st]; m != nil {
			return m, nil
		}
	}
	return nil, b.badState(st, abi.KindMap)
}

// Get implements statestore.Backend.
func (b *Backend) Get(kg uint16, st int, key []byte) ([]byte, bool, error) {
	m, err := b.values(kg, st)
	if err != nil {
		return nil, false, err
	}
	v, ok := m[string(key)]
	return v, ok, nil
}

// Put implements statestore.Backend.
func (b *Backend) Put(kg uint16, st int, key, value []byte) error {
	m, err := b.values(kg, st)
	if err != nil {
		return err
	}
	old, ok := m[string(key)]
	if ok && cap(old) >= len(value) {
		m[string(key)] = append(old[:0], value...)
		b.bytes[st].Add(int64(len(value) - len(old)))
		return nil
	}
	m[string(key)] = slices.Clone(value)
	if ok {
		b.bytes[st].Add(int64(len(value) - len(old)))
	} else {
		b.keys[st].Add(1)
		b.bytes[st].Add(int64(len(key) + len(value)))
	}
	return nil
}

// Delete implements statestore.Backend.
func (b *Backend) Delete(kg uint16, st int, key []byte) error {
	m, err := b.values(kg, st)
	if err != nil {
		return err
	}
	if old, ok := m[string(key)]; ok {
		delete(m, string(key))
		b.keys[st].Add(-1)
		b.bytes[st].Add(-int64(len(key) + len(old)))
	}
	return nil
}

// number returns the 8-byte slot for key in m, creating a zero one.
func (b *Backend) number(m map[string][]byte, st int, key []byte, extra int) ([]byte, bool, error) {
	v, ok := m[string(key)]
	if !ok {
		v = make([]byte, 8)
		m[string(key)] = v
		b.bytes[st].Add(int64(len(key) + 8 + extra))
		return v, true, nil
	}
	if len(v) != 8 {
		return nil, false, fmt.Errorf("%w: state %q holds %d bytes", statestore.ErrNotNumber, b.states[st].Name, len(v))
	}
	return v, false, nil
}

// AddInt64 implements statestore.Backend.
func (b *Backend) AddInt64(kg uint16, st int, key []byte, delta int64) (int64, error) {
	m, err := b.values(kg, st)
	if err != nil {
		return 0, err
	}
	v, created, err := b.number(m, st, key, 0)
	if err != nil {
		return 0, err
	}
	if created {
		b.keys[st].Add(1)
	}
	n := int64(binary.LittleEndian.Uint64(v)) + delta
	binary.LittleEndian.PutUint64(v, uint64(n))
	return n, nil
}

// AddFloat64 implements statestore.Backend.
func (b *Backend) AddFloat64(kg uint16, st int, key []byte, delta float64) (float64, error) {
	m, err := b.values(kg, st)
	if err != nil {
		return 0, err
	}
	v, created, err := b.number(m, st, key, 0)
	if err != nil {
		return 0, err
	}
	if created {
		b.keys[st].Add(1)
	}
	n := math.Float64frombits(binary.LittleEndian.Uint64(v)) + delta
	binary.LittleEndian.PutUint64(v, math.Float64bits(n))
	return n, nil
}

// ListAppendTo implements statestore.Backend.
func (b *Backend) ListAppendTo(dst []byte, kg uint16, st int, key []byte) ([]byte, error) {
	m, err := b.lists(kg, st)
	if err != nil {
		return dst, err
	}
	for _, item := range m[string(key)] {
		dst = abi.AppendItem(dst, item)
	}
	return dst, nil
}

// ListAdd implements statestore.Backend.
func (b *Backend) ListAdd(kg uint16, st int, key, item []byte) error {
	m, err := b.lists(kg, st)
	if err != nil {
		return err
	}
	l, ok := m[string(key)]
	if !ok {
		b.keys[st].Add(1)
		b.bytes[st].Add(int64(len(key)))
	}
	m[string(key)] = append(l, slices.Clone(item))
	b.bytes[st].Add(int64(len(item)))
	return nil
}

// ListAddAll implements statestore.Backend.
func (b *Backend) ListAddAll(kg uint16, st int, key, encoded []byte) error {
	m, err := b.lists(kg, st)
	if err != nil {
		return err
	}
	if _, err := abi.CountItems(encoded); err != nil {
		return err
	}
	l, exists := m[string(key)]
	added := 0
	for rest := encoded; ; {
		item, r, ok, _ := abi.NextItem(rest)
		if !ok {
			break
		}
		rest = r
		l = append(l, slices.Clone(item))
		added += len(item)
	}
	if len(l) == 0 {
		return nil
	}
	if !exists {
		b.keys[st].Add(1)
		b.bytes[st].Add(int64(len(key)))
	}
	m[string(key)] = l
	b.bytes[st].Add(int64(added))
	return nil
}

// ListReplace implements statestore.Backend.
func (b *Backend) ListReplace(kg uint16, st int, key, encoded []byte) error {
	if _, err := abi.CountItems(encoded); err != nil {
		return err
	}
	if err := b.ListClear(kg, st, key); err != nil {
		return err
	}
	return b.ListAddAll(kg, st, key, encoded)
}

// ListClear implements statestore.Backend.
func (b *Backend) ListClear(kg uint16, st int, key []byte) error {
	m, err := b.lists(kg, st)
	if err != nil {
		return err
	}
	if l, ok := m[string(key)]; ok {
		n := len(key)
		for _, item := range l {
			n += len(item)
		}
		delete(m, string(key))
		b.keys[st].Add(-1)
		b.bytes[st].Add(-int64(n))
	}
	return nil
}

// MapGet implements statestore.Backend.
func (b *Backend) MapGet(kg uint16, st int, key, userKey []byte) ([]byte, bool, error) {
	m, err := b.maps(kg, st)
	if err != nil {
		return nil, false, err
	}
	v, ok := m[string(key)][string(userKey)]
	return v, ok, nil
}

func (b *Backend) userMap(m map[string]map[string][]byte, st int, key []byte) map[string][]byte {
	um := m[string(key)]
	if um == nil {
		um = map[string][]byte{}
		m[string(key)] = um
		b.keys[st].Add(1)
		b.bytes[st].Add(int64(len(key)))
	}
	return um
}

// MapPut implements statestore.Backend.
func (b *Backend) MapPut(kg uint16, st int, key, userKey, value []byte) error {
	m, err := b.maps(kg, st)
	if err != nil {
		return err
	}
	um := b.userMap(m, st, key)
	old, ok := um[string(userKey)]
	if ok && cap(old) >= len(value) {
		um[string(userKey)] = append(old[:0], value...)
		b.bytes[st].Add(int64(len(value) - len(old)))
		return nil
	}
	um[string(userKey)] = slices.Clone(value)
	if ok {
		b.bytes[st].Add(int64(len(value) - len(old)))
	} else {
		b.bytes[st].Add(int64(len(userKey) + len(value)))
	}
	return nil
}

// MapDelete implements statestore.Backend.
func (b *Backend) MapDelete(kg uint16, st int, key, userKey []byte) error {
	m, err := b.maps(kg, st)
	if err != nil {
		return err
	}
	um := m[string(key)]
	old, ok := um[string(userKey)]
	if !ok {
		return nil
	}
	delete(um, string(userKey))
	b.bytes[st].Add(-int64(len(userKey) + len(old)))
	if len(um) == 0 {
		delete(m, string(key))
		b.keys[st].Add(-1)
		b.bytes[st].Add(-int64(len(key)))
	}
	return nil
}

// MapContains implements statestore.Backend.
func (b *Backend) MapContains(kg uint16, st int, key, userKey []byte) (bool, error) {
	m, err := b.maps(kg, st)
	if err != nil {
		return false, err
	}
	_, ok := m[string(key)][string(userKey)]
	return ok, nil
}

// MapAddInt64 implements statestore.Backend.
func (b *Backend) MapAddInt64(kg uint16, st int, key, userKey []byte, delta int64) (int64, error) {
	m, err := b.maps(kg, st)
	if err != nil {
		return 0, err
	}
	v, _, err := b.number(b.userMap(m, st, key), st, userKey, 0)
	if err != nil {
		return 0, err
	}
	n := int64(binary.LittleEndian.Uint64(v)) + delta
	binary.LittleEndian.PutUint64(v, uint64(n))
	return n, nil
}

// MapAddFloat64 implements statestore.Backend.
func (b *Backend) MapAddFloat64(kg uint16, st int, key, userKey []byte, delta float64) (float64, error) {
	m, err := b.maps(kg, st)
	if err != nil {
		return 0, err
	}
	v, _, err := b.number(b.userMap(m, st, key), st, userKey, 0)
	if err != nil {
		return 0, err
	}
	n := math.Float64frombits(binary.LittleEndian.Uint64(v)) + delta
	binary.LittleEndian.PutUint64(v, math.Float64bits(n))
	return n, nil
}

// MapAppendTo implements statestore.Backend.
func (b *Backend) MapAppendTo(dst []byte, kg uint16, st int, key []byte, what int) ([]byte, error) {
	m, err := b.maps(kg, st)
	if err != nil {
		return dst, err
	}
	um := m[string(key)]
	if len(um) == 0 {
		return dst, nil
	}
	keys := make([]string, 0, len(um))
	for k := range um {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		switch what {
		case abi.IterKeys:
			dst = abi.AppendItem(dst, []byte(k))
		case abi.IterValues:
			dst = abi.AppendItem(dst, um[k])
		default:
			dst = abi.AppendItem(dst, []byte(k))
			dst = abi.AppendItem(dst, um[k])
		}
	}
	return dst, nil
}

// MapIsEmpty implements statestore.Backend.
func (b *Backend) MapIsEmpty(kg uint16, st int, key []byte) (bool, error) {
	m, err := b.maps(kg, st)
	if err != nil {
		return false, err
	}
	return len(m[string(key)]) == 0, nil
}

// MapClear implements statestore.Backend.
func (b *Backend) MapClear(kg uint16, st int, key []byte) error {
	m, err := b.maps(kg, st)
	if err != nil {
		return err
	}
	um, ok := m[string(key)]
	if !ok {
		return nil
	}
	n := len(key)
	for k, v := range um {
		n += len(k) + len(v)
	}
	delete(m, string(key))
	b.keys[st].Add(-1)
	b.bytes[st].Add(-int64(n))
	return nil
}

// Stats implements statestore.Backend.
func (b *Backend) Stats() []statestore.StateStats {
	out := make([]statestore.StateStats, len(b.states))
	for i, d := range b.states {
		out[i] = statestore.StateStats{Name: d.Name, Keys: b.keys[i].Load(), Bytes: b.bytes[i].Load()}
	}
	return out
}

// Close implements statestore.Backend.
func (b *Backend) Close() error { return nil }
