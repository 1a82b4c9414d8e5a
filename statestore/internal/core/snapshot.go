package core

import (
	"fmt"
	"slices"

	"github.com/wasmstream/wasmstream/abi"
)

// Cell is one value, list element or map entry as a snapshot of a Store
// without a Disk sees it.
type Cell struct {
	UserKey []byte // map entry; nil otherwise
	Exp     int64  // expiry in ms; 0 = none
	Value   []byte
}

// EachRecord calls fn for every non-empty record of key group kg, by state
// id and then key, with its cells: the value, the list elements in order or
// the map entries sorted by user key. Expired cells not yet cleaned up are
// included with their expiry. The slices fn gets are valid during the call
// only. It is for a Store without a Disk (whose cache is the whole state);
// no call on kg may run concurrently.
func (s *Store) EachRecord(kg uint16, fn func(st int, key []byte, cells []Cell) error) error {
	if s.disk != nil {
		return fmt.Errorf("wasmstream: EachRecord on a store with storage: its cache is not the whole state")
	}
	g := &s.groups[kg]
	var cells []Cell
	for st, t := range g.recs {
		keys := make([]string, 0, len(t))
		for k, r := range t {
			if !r.empty() {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		for _, k := range keys {
			r := t[k]
			cells = s.appendCells(cells[:0], r)
			if err := fn(st, []byte(k), cells); err != nil {
				return err
			}
		}
	}
	return nil
}

// EventTime returns the event time last set for key group kg.
func (s *Store) EventTime(kg uint16) int64 { return s.groups[kg].eventTime }

// RestoreRecord adds the cells of a record read from a snapshot to key group
// kg of a Store without a Disk: the value is set, list elements are
// appended, map entries set. A cell keeps its expiry when state st has a TTL
// and drops it otherwise. No call on kg may run concurrently.
func (s *Store) RestoreRecord(kg uint16, st int, key []byte, cells []Cell) error {
	if s.disk != nil {
		return fmt.Errorf("wasmstream: RestoreRecord on a store with storage")
	}
	if st < 0 || st >= len(s.states) {
		return fmt.Errorf("wasmstream: restoring state id %d: the contract has %d states", st, len(s.states))
	}
	if len(cells) == 0 {
		return nil
	}
	kind := s.states[st].desc.Kind
	g, r, err := s.record(kg, st, key, true)
	if err != nil {
		return err
	}
	b := snap(r)
	t := &s.states[st].ttl
	for _, in := range cells {
		c := &cell{rec: r, v: slices.Clone(in.Value), hi: -1}
		if c.v == nil {
			c.v = []byte{}
		}
		switch kind {
		case abi.KindValue:
			if r.val != nil {
				s.removeCell(g, r, r.val)
			}
			r.val = c
		case abi.KindList:
			c.seq = r.nextSeq
			r.nextSeq++
			r.list = append(r.list, c)
		case abi.KindMap:
			if r.m == nil {
				r.m = map[string]*cell{}
			}
			c.uk = string(in.UserKey)
			if old := r.m[c.uk]; old != nil {
				s.removeCell(g, r, old)
			}
			r.m[c.uk] = c
		}
		r.content += cellBytes(kind, c)
		if t.ms != 0 && in.Exp != 0 {
			c.exp = in.Exp
			g.heaps[t.domain].push(c)
		}
	}
	g.cur = nil
	cnt := &s.stats[st]
	if b.empty && !r.empty() {
		cnt.keys.Add(1)
	}
	cnt.bytes.Add(r.statBytes() - b.bytes)
	return nil
}

// States returns the store's state descriptions, by state id.
func (s *Store) States() []abi.StateDesc {
	out := make([]abi.StateDesc, len(s.states))
	for i := range s.states {
		out[i] = s.states[i].desc
	}
	return out
}
