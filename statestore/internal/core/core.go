// Package core is the state engine shared by the memory and Pebble backends:
// value, list and map records per key group and state, TTL with an expiry
// index, and, when a Disk is attached, a bounded write-back cache in front of
// it. The memory backend is a Store without a Disk; the Pebble backend is a
// Store whose Disk is a Pebble database. Both therefore behave the same,
// which the conformance suite (statestore/statestoretest) checks.
//
// # Records and cells
//
// A record is what one key holds in one state: a value, a list or a map.
// Its cells are the value, the list elements or the map entries; each cell
// carries its expiry time (0 = none). With a Disk a record is loaded whole on
// first use, so every operation on a cached record runs at memory speed, and
// changed cells are written back in batches: when the key group's share of
// the cache budget is exceeded (then least recently used clean records are
// evicted), on Flush and on Close.
//
// # Expiry index
//
// Cells with an expiry are kept in per key group heaps ordered by expiry, one
// per time domain (processing, event). Cells written to the Disk are also in
// its expiry index, so records that were evicted still expire: CleanupExpired
// reads the Disk's index up to the current time, loads the records it names
// and removes their expired cells through the heaps.
package core

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"sync/atomic"

	"github.com/wasmstream/wasmstream/abi"
	"github.com/wasmstream/wasmstream/statestore"
)

// Time domains, the index of a key group's expiry heap.
const (
	DomainProcessing = 0
	DomainEvent      = 1
)

// Disk is durable storage under a Store. Keys are (key group, state, key,
// suffix): the suffix is empty for a value, the user key of a map entry, or
// the 8-byte big-endian sequence number of a list element. Values are encoded
// with AppendValue.
type Disk interface {
	// Load calls fn for each stored cell of the record (kg, st, key), for
	// lists and maps in suffix order. suffix and raw are valid during fn.
	Load(kg uint16, st int, key []byte, fn func(suffix, raw []byte) error) error
	// ScanExpired calls fn for the expiry index entries of key group kg in
	// time domain d with an expiry at or before now, earliest first, until
	// fn returns false. It returns the expiry of the first entry it did not
	// pass to fn, or math.MaxInt64 when there is none.
	ScanExpired(kg uint16, d int, now int64, fn func(exp int64, st int, key, suffix []byte) bool) (int64, error)
	NewBatch() Batch
	// SaveStats durably records the per-state key and byte counts and
	// syncs everything committed before.
	SaveStats(keys, bytes []int64) error
}

// Batch is a set of writes committed atomically.
type Batch interface {
	Set(kg uint16, st int, key, suffix, raw []byte)
	Delete(kg uint16, st int, key, suffix []byte)
	SetIndex(kg uint16, d int, exp int64, st int, key, suffix []byte)
	DeleteIndex(kg uint16, d int, exp int64, st int, key, suffix []byte)
	Commit() error
}

// Options configure a Store.
type Options struct {
	Config statestore.Config
	// Disk, when set, stores the state; nil keeps it in memory only.
	Disk Disk
	// CacheBytes bounds the memory the cached records of a Store with a
	// Disk take, shared evenly among key groups.
	CacheBytes int64
	// Keys and Bytes are the per-state counts of what the Disk holds.
	Keys, Bytes []int64
}

// ttl is a state's resolved TTL; ms == 0 means none.
type ttl struct {
	ms            int64
	onRead        bool
	returnExpired bool
	domain        int
}

type stateInfo struct {
	desc abi.StateDesc
	ttl  ttl
}

type counters struct {
	keys, bytes, hits, misses, expired, visited atomic.Int64
}

// Store implements statestore.Backend except Close, which the backends add.
type Store struct {
	states []stateInfo
	groups []group
	disk   Disk
	clock  func() int64
	budget int64 // per key group
	stats  []counters

	epochs   atomic.Uint32 // the last capture epoch handed out
	released atomic.Uint32 // writes held for captures up to it are released
}

type group struct {
	eventTime int64                // the current event's time: reads and writes
	watermark int64                // cleanup of event-time TTL
	recs      []map[string]*record // per state, made on first use
	heaps     [2]expHeap
	lru       record // sentinel of the LRU ring, most recent first
	size      int64
	dirty     []*record
	diskNext  [2]int64 // earliest Disk index expiry not yet handled; -1 unknown
	cur       *record  // the record of the call in progress

	// A capture in progress (see capture.go).
	cap       *Capture
	capNext   func() (*record, bool) // without a Disk: the records to capture
	capStop   func()
	frozen    []*record // with a Disk: the records dirty at the barrier
	frozenPos int
	holdEpoch uint32 // with a Disk: writes are held until this epoch is released
	holdLimit int64  // while writes are held: the size at which to evict again
}

type record struct {
	key     string
	st      int
	val     *cell
	list    []*cell
	m       map[string]*cell
	dels    []*cell // removed cells stored on the Disk
	nextSeq uint64
	dirty   bool
	// capEpoch is the epoch of the last capture that took this record or
	// does not need it.
	capEpoch uint32
	content  int64 // statestore.StateStats bytes without the key
	size     int64 // cache bytes
	prev     *record
	next     *record
}

type cell struct {
	rec     *record
	uk      string // map entry
	seq     uint64 // list element
	v       []byte
	exp     int64 // expiry in ms; 0 = none
	diskExp int64 // expiry of the stored version
	onDisk  bool
	dirty   bool
	hi      int // index in the expiry heap, -1 if none
}

// New returns a Store.
func New(o Options) (*Store, error) {
	cfg := o.Config
	if cfg.MaxParallelism < 1 || cfg.MaxParallelism > 1<<15 {
		return nil, fmt.Errorf("wasmstream: max parallelism %d out of range 1..32768", cfg.MaxParallelism)
	}
	s := &Store{
		states: make([]stateInfo, len(cfg.States)),
		groups: make([]group, cfg.MaxParallelism),
		disk:   o.Disk,
		clock:  cfg.Now,
		stats:  make([]counters, len(cfg.States)),
	}
	for i, d := range cfg.States {
		s.states[i].desc = d
		if t := d.TTL; t != nil && t.Millis > 0 {
			s.states[i].ttl = ttl{
				ms:            t.Millis,
				onRead:        t.Update == abi.TTLOnReadAndWrite,
				returnExpired: t.Visibility == abi.TTLReturnExpiredIfNotCleanedUp,
			}
			if t.Domain == abi.TimeEvent {
				s.states[i].ttl.domain = DomainEvent
			}
		}
		if i < len(o.Keys) {
			s.stats[i].keys.Store(o.Keys[i])
		}
		if i < len(o.Bytes) {
			s.stats[i].bytes.Store(o.Bytes[i])
		}
	}
	if s.disk != nil {
		s.budget = max(o.CacheBytes/int64(cfg.MaxParallelism), 4096)
	}
	for i := range s.groups {
		g := &s.groups[i]
		g.lru.next, g.lru.prev = &g.lru, &g.lru
		g.diskNext = [2]int64{-1, -1}
		g.watermark = math.MinInt64
	}
	return s, nil
}

// HasDisk reports whether the store has storage under it.
func (s *Store) HasDisk() bool { return s.disk != nil }

// ----- value encoding

const flagExpiry = 1

// AppendValue appends the stored form of a cell: a flags byte, the expiry
// (8 bytes big-endian) when flags has bit 0, then the payload.
func AppendValue(dst []byte, exp int64, v []byte) []byte {
	if exp != 0 {
		dst = append(dst, flagExpiry)
		dst = binary.BigEndian.AppendUint64(dst, uint64(exp))
	} else {
		dst = append(dst, 0)
	}
	return append(dst, v...)
}

// DecodeValue splits a stored cell into its expiry (0 = none) and payload.
func DecodeValue(raw []byte) (exp int64, v []byte, err error) {
	if len(raw) == 0 {
		return 0, nil, fmt.Errorf("wasmstream: stored state value is empty: the state directory is damaged")
	}
	switch raw[0] {
	case 0:
		return 0, raw[1:], nil
	case flagExpiry:
		if len(raw) < 9 {
			return 0, nil, fmt.Errorf("wasmstream: stored state value of %d bytes is too short for its expiry: the state directory is damaged", len(raw))
		}
		return int64(binary.BigEndian.Uint64(raw[1:9])), raw[9:], nil
	default:
		return 0, nil, fmt.Errorf("wasmstream: stored state value has unknown flags %#x: it was written by a newer wasmstream", raw[0])
	}
}

// ----- state and record lookup

func (s *Store) badState(st int, want abi.StateKind) error {
	if st < 0 || st >= len(s.states) {
		return fmt.Errorf("%w: state id %d (the contract has %d states)", statestore.ErrBadState, st, len(s.states))
	}
	d := s.states[st].desc
	return fmt.Errorf("%w: state %q is a %s state, not %s", statestore.ErrBadState, d.Name, d.Kind, want)
}

func (s *Store) check(st int, want abi.StateKind) error {
	if st < 0 || st >= len(s.states) || s.states[st].desc.Kind != want {
		return s.badState(st, want)
	}
	return nil
}

// recordOf checks that state st is of kind want, then returns its record
// as record does.
func (s *Store) recordOf(kg uint16, st int, want abi.StateKind, key []byte, create bool) (*group, *record, error) {
	if err := s.check(st, want); err != nil {
		return nil, nil, err
	}
	return s.record(kg, st, key, create)
}

// record returns the record of (kg, st, key), loading it from the Disk on a
// cache miss. Without a Disk an absent record is made only when create is
// set; with one every looked up record is cached, empty or not.
func (s *Store) record(kg uint16, st int, key []byte, create bool) (*group, *record, error) {
	g := &s.groups[kg]
	if g.recs == nil {
		g.recs = make([]map[string]*record, len(s.states))
	}
	t := g.recs[st]
	if t == nil {
		t = map[string]*record{}
		g.recs[st] = t
	}
	if r := t[string(key)]; r != nil {
		if s.disk != nil {
			s.stats[st].hits.Add(1)
			g.touch(r)
		}
		if g.cap != nil && r.capEpoch != g.cap.epoch {
			if err := s.cow(kg, g, r); err != nil {
				return g, nil, err
			}
		}
		g.cur = r
		return g, r, nil
	}
	if s.disk == nil {
		if !create {
			return g, nil, nil
		}
		r := &record{key: string(key), st: st}
		if g.cap != nil {
			r.capEpoch = g.cap.epoch
		}
		t[r.key] = r
		g.cur = r
		return g, r, nil
	}
	s.stats[st].misses.Add(1)
	r, err := s.load(g, kg, st, key)
	if err != nil {
		return g, nil, err
	}
	if g.cap != nil {
		// Loaded clean: the Disk holds it as it was at the barrier.
		r.capEpoch = g.cap.epoch
	}
	t[r.key] = r
	g.pushFront(r)
	g.cur = r
	return g, r, nil
}

func (s *Store) load(g *group, kg uint16, st int, key []byte) (*record, error) {
	r := &record{key: string(key), st: st}
	kind := s.states[st].desc.Kind
	hasTTL := s.states[st].ttl.ms != 0
	err := s.disk.Load(kg, st, key, func(suffix, raw []byte) error {
		exp, v, err := DecodeValue(raw)
		if err != nil {
			return fmt.Errorf("state %q: %w", s.states[st].desc.Name, err)
		}
		c := &cell{rec: r, v: slices.Clone(v), diskExp: exp, onDisk: true, hi: -1}
		if hasTTL {
			c.exp = exp
		}
		switch kind {
		case abi.KindValue:
			r.val = c
		case abi.KindList:
			if len(suffix) != 8 {
				return fmt.Errorf("state %q: list element key suffix of %d bytes, want 8: the state directory is damaged", s.states[st].desc.Name, len(suffix))
			}
			c.seq = binary.BigEndian.Uint64(suffix)
			r.list = append(r.list, c)
			r.nextSeq = c.seq + 1
		case abi.KindMap:
			if r.m == nil {
				r.m = map[string]*cell{}
			}
			c.uk = string(suffix)
			r.m[c.uk] = c
		}
		r.content += cellBytes(kind, c)
		if c.exp != 0 {
			g.heaps[s.states[st].ttl.domain].push(c)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if kind == abi.KindMap && r.m == nil {
		r.m = map[string]*cell{}
	}
	g.resize(r)
	return r, nil
}

func cellBytes(kind abi.StateKind, c *cell) int64 {
	if kind == abi.KindMap {
		return int64(len(c.uk) + len(c.v))
	}
	return int64(len(c.v))
}

// eachCell calls f for the value, each list element and each map entry
// of r.
func (r *record) eachCell(f func(*cell)) {
	if r.val != nil {
		f(r.val)
	}
	for _, c := range r.list {
		f(c)
	}
	for _, c := range r.m {
		f(c)
	}
}

// resize updates the cache size of r, and g's, after r changed.
func (g *group) resize(r *record) {
	sz := r.cacheSize()
	g.size += sz - r.size
	r.size = sz
}

func (r *record) empty() bool { return r.val == nil && len(r.list) == 0 && len(r.m) == 0 }

func (r *record) statBytes() int64 {
	if r.empty() {
		return 0
	}
	return int64(len(r.key)) + r.content
}

// Heap costs of cached records, measured with Go 1.26 on amd64: the record
// struct and its slot in the key group's map, a cell and its slot in a
// slice or map, and the fixed part of a small Go map. cacheSize must not
// undercount, or the cache budget (cache_mb) holds far more than it says.
const (
	recordOverhead  = 192 // record (144 B size class) + map slot and growth slack
	cellOverhead    = 112 // cell (96 B) + its slot
	mapOverhead     = 208 // map header + first group of a small map
	mapSlotOverhead = 32  // per-entry slot and growth slack in a map
)

func (r *record) cacheSize() int64 {
	n := recordOverhead + int64(len(r.key)) + r.content
	if r.val != nil {
		n += cellOverhead
	}
	n += cellOverhead * int64(len(r.list)+len(r.dels))
	if r.m != nil {
		n += mapOverhead + (cellOverhead+mapSlotOverhead)*int64(len(r.m))
	}
	return n
}

// ----- per call bookkeeping

// before is what end compares a record against.
type before struct {
	empty bool
	bytes int64
}

func snap(r *record) before { return before{r.empty(), r.statBytes()} }

// end finishes a call on record r: it updates the statistics, drops an empty
// record without a Disk, runs the incremental expiry cleanup and keeps the
// key group within its cache budget.
func (s *Store) end(kg uint16, g *group, r *record, b before) error {
	c := &s.stats[r.st]
	if e := r.empty(); e != b.empty {
		if e {
			c.keys.Add(-1)
		} else {
			c.keys.Add(1)
		}
	}
	if nb := r.statBytes(); nb != b.bytes {
		c.bytes.Add(nb - b.bytes)
	}
	if s.disk == nil {
		if r.empty() {
			delete(g.recs[r.st], r.key)
		}
	} else {
		g.resize(r)
	}
	if len(g.heaps[0]) > 0 || len(g.heaps[1]) > 0 {
		if _, err := s.cleanupHeaps(kg, g, incrementalCleanup, g.eventCleanup()); err != nil {
			return err
		}
	}
	if s.disk != nil && g.size > s.budget {
		return s.shrink(kg, g)
	}
	return nil
}

// incrementalCleanup is how many expired cells each call removes from its
// key group at most, as Flink's incremental cleanup does on state access.
const incrementalCleanup = 2

func (s *Store) markDirty(g *group, r *record, c *cell) {
	if s.disk == nil {
		return
	}
	if c != nil {
		c.dirty = true
	}
	if !r.dirty {
		r.dirty = true
		if g.cap != nil {
			// Clean at the barrier, or written by the capture: its
			// change belongs to the next epoch.
			r.capEpoch = g.cap.epoch
		}
		g.dirty = append(g.dirty, r)
	}
}

// now returns the current time of state st's TTL domain.
func (s *Store) now(g *group, st int) int64 {
	if s.states[st].ttl.domain == DomainEvent {
		return g.eventTime
	}
	return s.clock()
}

// written sets the expiry of a cell just written.
func (s *Store) written(g *group, c *cell, st int, now int64) {
	t := &s.states[st].ttl
	if t.ms == 0 {
		return
	}
	g.heaps[t.domain].set(c, now+t.ms)
}

// expired reports whether c's TTL has run out.
func (s *Store) expired(g *group, c *cell, st int) bool {
	return s.states[st].ttl.ms != 0 && c.exp != 0 && c.exp <= s.now(g, st)
}

// read applies the TTL rules to a cell being read and reports whether the
// caller may return it. An expired cell is removed; it is returned once
// when the state's visibility is return_expired_if_not_cleaned_up.
func (s *Store) read(g *group, r *record, c *cell) bool {
	t := &s.states[r.st].ttl
	if t.ms == 0 {
		return true
	}
	now := s.now(g, r.st)
	if c.exp != 0 && c.exp <= now {
		s.removeCell(g, r, c)
		s.stats[r.st].expired.Add(1)
		return t.returnExpired
	}
	if t.onRead {
		g.heaps[t.domain].set(c, now+t.ms)
		s.markDirty(g, r, c)
	}
	return true
}

// removeCell takes c out of its record, its heap and, at the next write
// back, out of the Disk.
func (s *Store) removeCell(g *group, r *record, c *cell) {
	switch s.states[r.st].desc.Kind {
	case abi.KindValue:
		r.val = nil
	case abi.KindList:
		if i := slices.Index(r.list, c); i >= 0 {
			r.list = slices.Delete(r.list, i, i+1)
		}
	case abi.KindMap:
		delete(r.m, c.uk)
	}
	s.dropCell(g, r, c)
}

// dropCell does what removeCell does except taking c out of its record's
// value, list or map.
func (s *Store) dropCell(g *group, r *record, c *cell) {
	if c.hi >= 0 {
		g.heaps[s.states[r.st].ttl.domain].remove(c)
	}
	r.content -= cellBytes(s.states[r.st].desc.Kind, c)
	if c.onDisk {
		r.dels = append(r.dels, c)
		s.markDirty(g, r, nil)
	}
}

// ----- value state

// Get implements statestore.Backend.
func (s *Store) Get(kg uint16, st int, key []byte) ([]byte, bool, error) {
	g, r, err := s.recordOf(kg, st, abi.KindValue, key, false)
	if r == nil || err != nil {
		return nil, false, err
	}
	c := r.val
	if c == nil {
		return nil, false, s.end(kg, g, r, snap(r))
	}
	b := snap(r)
	ok := s.read(g, r, c)
	return c.v, ok, s.end(kg, g, r, b)
}

// Put implements statestore.Backend.
func (s *Store) Put(kg uint16, st int, key, value []byte) error {
	g, r, err := s.recordOf(kg, st, abi.KindValue, key, true)
	if err != nil {
		return err
	}
	b := snap(r)
	c := r.val
	if c == nil {
		c = &cell{rec: r, hi: -1}
		r.val = c
	}
	r.content += int64(len(value) - len(c.v))
	c.v = append(c.v[:0], value...)
	s.written(g, c, st, s.nowIfTTL(g, st))
	s.markDirty(g, r, c)
	return s.end(kg, g, r, b)
}

func (s *Store) nowIfTTL(g *group, st int) int64 {
	if s.states[st].ttl.ms == 0 {
		return 0
	}
	return s.now(g, st)
}

// Delete implements statestore.Backend.
func (s *Store) Delete(kg uint16, st int, key []byte) error {
	g, r, err := s.recordOf(kg, st, abi.KindValue, key, false)
	if r == nil || err != nil {
		return err
	}
	b := snap(r)
	if r.val != nil {
		s.removeCell(g, r, r.val)
	}
	return s.end(kg, g, r, b)
}

// number returns the 8-byte cell of a number, made zero when absent or
// expired; get and set find and store the cell in the record.
func (s *Store) number(g *group, r *record, c *cell, mk func() *cell) (*cell, error) {
	if c != nil && s.expired(g, c, r.st) {
		s.removeCell(g, r, c)
		s.stats[r.st].expired.Add(1)
		c = nil
	}
	if c == nil {
		c = mk()
		c.v = make([]byte, 8)
		r.content += cellBytes(s.states[r.st].desc.Kind, c)
		return c, nil
	}
	if len(c.v) != 8 {
		return nil, fmt.Errorf("%w: state %q holds %d bytes", statestore.ErrNotNumber, s.states[r.st].desc.Name, len(c.v))
	}
	return c, nil
}

func (s *Store) addValue(kg uint16, st int, key []byte, f func(v []byte)) error {
	g, r, err := s.recordOf(kg, st, abi.KindValue, key, true)
	if err != nil {
		return err
	}
	b := snap(r)
	c, err := s.number(g, r, r.val, func() *cell {
		r.val = &cell{rec: r, hi: -1}
		return r.val
	})
	if err != nil {
		return firstErr(err, s.end(kg, g, r, b))
	}
	f(c.v)
	s.written(g, c, st, s.nowIfTTL(g, st))
	s.markDirty(g, r, c)
	return s.end(kg, g, r, b)
}

func firstErr(first, second error) error {
	if first != nil {
		return first
	}
	return second
}

// AddInt64 implements statestore.Backend.
func (s *Store) AddInt64(kg uint16, st int, key []byte, delta int64) (int64, error) {
	var n int64
	err := s.addValue(kg, st, key, func(v []byte) {
		n = int64(binary.LittleEndian.Uint64(v)) + delta
		binary.LittleEndian.PutUint64(v, uint64(n))
	})
	return n, err
}

// AddFloat64 implements statestore.Backend.
func (s *Store) AddFloat64(kg uint16, st int, key []byte, delta float64) (float64, error) {
	var n float64
	err := s.addValue(kg, st, key, func(v []byte) {
		n = math.Float64frombits(binary.LittleEndian.Uint64(v)) + delta
		binary.LittleEndian.PutUint64(v, math.Float64bits(n))
	})
	return n, err
}

// ----- list state

// ListAppendTo implements statestore.Backend.
func (s *Store) ListAppendTo(dst []byte, kg uint16, st int, key []byte) ([]byte, error) {
	g, r, err := s.recordOf(kg, st, abi.KindList, key, false)
	if r == nil || err != nil {
		return dst, err
	}
	b := snap(r)
	if s.states[st].ttl.ms == 0 {
		for _, c := range r.list {
			dst = abi.AppendItem(dst, c.v)
		}
	} else {
		for i := 0; i < len(r.list); {
			c, n := r.list[i], len(r.list)
			if s.read(g, r, c) {
				dst = abi.AppendItem(dst, c.v)
			}
			if len(r.list) == n { // c was not removed
				i++
			}
		}
	}
	return dst, s.end(kg, g, r, b)
}

func (s *Store) listAdd(g *group, r *record, item []byte, now int64) {
	c := &cell{rec: r, seq: r.nextSeq, v: slices.Clone(item), hi: -1}
	if c.v == nil {
		c.v = []byte{}
	}
	r.nextSeq++
	r.list = append(r.list, c)
	r.content += int64(len(item))
	s.written(g, c, r.st, now)
	s.markDirty(g, r, c)
}

// ListAdd implements statestore.Backend.
func (s *Store) ListAdd(kg uint16, st int, key, item []byte) error {
	g, r, err := s.recordOf(kg, st, abi.KindList, key, true)
	if err != nil {
		return err
	}
	b := snap(r)
	s.listAdd(g, r, item, s.nowIfTTL(g, st))
	return s.end(kg, g, r, b)
}

// ListAddAll implements statestore.Backend.
func (s *Store) ListAddAll(kg uint16, st int, key, encoded []byte) error {
	if err := s.check(st, abi.KindList); err != nil {
		return err
	}
	if _, err := abi.CountItems(encoded); err != nil {
		return err
	}
	if len(encoded) == 0 {
		return nil
	}
	g, r, err := s.record(kg, st, key, true)
	if err != nil {
		return err
	}
	b := snap(r)
	now := s.nowIfTTL(g, st)
	for rest := encoded; ; {
		item, next, ok, _ := abi.NextItem(rest)
		if !ok {
			break
		}
		rest = next
		s.listAdd(g, r, item, now)
	}
	return s.end(kg, g, r, b)
}

// ListReplace implements statestore.Backend.
func (s *Store) ListReplace(kg uint16, st int, key, encoded []byte) error {
	if err := s.check(st, abi.KindList); err != nil {
		return err
	}
	if _, err := abi.CountItems(encoded); err != nil {
		return err
	}
	if err := s.ListClear(kg, st, key); err != nil {
		return err
	}
	return s.ListAddAll(kg, st, key, encoded)
}

// ListClear implements statestore.Backend.
func (s *Store) ListClear(kg uint16, st int, key []byte) error {
	g, r, err := s.recordOf(kg, st, abi.KindList, key, false)
	if r == nil || err != nil {
		return err
	}
	b := snap(r)
	for _, c := range r.list {
		s.dropCell(g, r, c)
	}
	r.list = nil
	return s.end(kg, g, r, b)
}

// ----- map state

// MapGet implements statestore.Backend.
func (s *Store) MapGet(kg uint16, st int, key, userKey []byte) ([]byte, bool, error) {
	g, r, err := s.recordOf(kg, st, abi.KindMap, key, false)
	if r == nil || err != nil {
		return nil, false, err
	}
	b := snap(r)
	c := r.m[string(userKey)]
	if c == nil {
		return nil, false, s.end(kg, g, r, b)
	}
	ok := s.read(g, r, c)
	return c.v, ok, s.end(kg, g, r, b)
}

// MapContains implements statestore.Backend.
func (s *Store) MapContains(kg uint16, st int, key, userKey []byte) (bool, error) {
	_, ok, err := s.MapGet(kg, st, key, userKey)
	return ok, err
}

func (s *Store) mapRecord(kg uint16, st int, key []byte) (*group, *record, error) {
	g, r, err := s.recordOf(kg, st, abi.KindMap, key, true)
	if err == nil && r.m == nil {
		r.m = map[string]*cell{}
	}
	return g, r, err
}

// MapPut implements statestore.Backend.
func (s *Store) MapPut(kg uint16, st int, key, userKey, value []byte) error {
	g, r, err := s.mapRecord(kg, st, key)
	if err != nil {
		return err
	}
	b := snap(r)
	c := r.m[string(userKey)]
	if c == nil {
		c = &cell{rec: r, uk: string(userKey), hi: -1}
		r.m[c.uk] = c
		r.content += int64(len(userKey))
	}
	r.content += int64(len(value) - len(c.v))
	c.v = append(c.v[:0], value...)
	s.written(g, c, st, s.nowIfTTL(g, st))
	s.markDirty(g, r, c)
	return s.end(kg, g, r, b)
}

// MapDelete implements statestore.Backend.
func (s *Store) MapDelete(kg uint16, st int, key, userKey []byte) error {
	g, r, err := s.recordOf(kg, st, abi.KindMap, key, false)
	if r == nil || err != nil {
		return err
	}
	b := snap(r)
	if c := r.m[string(userKey)]; c != nil {
		s.removeCell(g, r, c)
	}
	return s.end(kg, g, r, b)
}

func (s *Store) mapAdd(kg uint16, st int, key, userKey []byte, f func(v []byte)) error {
	g, r, err := s.mapRecord(kg, st, key)
	if err != nil {
		return err
	}
	b := snap(r)
	c, err := s.number(g, r, r.m[string(userKey)], func() *cell {
		c := &cell{rec: r, uk: string(userKey), hi: -1}
		r.m[c.uk] = c
		return c
	})
	if err != nil {
		return firstErr(err, s.end(kg, g, r, b))
	}
	f(c.v)
	s.written(g, c, st, s.nowIfTTL(g, st))
	s.markDirty(g, r, c)
	return s.end(kg, g, r, b)
}

// MapAddInt64 implements statestore.Backend.
func (s *Store) MapAddInt64(kg uint16, st int, key, userKey []byte, delta int64) (int64, error) {
	var n int64
	err := s.mapAdd(kg, st, key, userKey, func(v []byte) {
		n = int64(binary.LittleEndian.Uint64(v)) + delta
		binary.LittleEndian.PutUint64(v, uint64(n))
	})
	return n, err
}

// MapAddFloat64 implements statestore.Backend.
func (s *Store) MapAddFloat64(kg uint16, st int, key, userKey []byte, delta float64) (float64, error) {
	var n float64
	err := s.mapAdd(kg, st, key, userKey, func(v []byte) {
		n = math.Float64frombits(binary.LittleEndian.Uint64(v)) + delta
		binary.LittleEndian.PutUint64(v, math.Float64bits(n))
	})
	return n, err
}

// sortedCells returns the map's cells sorted by user key.
func sortedCells(m map[string]*cell) []*cell {
	cs := make([]*cell, 0, len(m))
	for _, c := range m {
		cs = append(cs, c)
	}
	slices.SortFunc(cs, func(a, b *cell) int {
		switch {
		case a.uk < b.uk:
			return -1
		case a.uk > b.uk:
			return 1
		}
		return 0
	})
	return cs
}

// MapAppendTo implements statestore.Backend.
func (s *Store) MapAppendTo(dst []byte, kg uint16, st int, key []byte, what int) ([]byte, error) {
	g, r, err := s.recordOf(kg, st, abi.KindMap, key, false)
	if r == nil || err != nil {
		return dst, err
	}
	b := snap(r)
	for _, c := range sortedCells(r.m) {
		if !s.read(g, r, c) {
			continue
		}
		switch what {
		case abi.IterKeys:
			dst = abi.AppendItem(dst, []byte(c.uk))
		case abi.IterValues:
			dst = abi.AppendItem(dst, c.v)
		default:
			dst = abi.AppendItem(dst, []byte(c.uk))
			dst = abi.AppendItem(dst, c.v)
		}
	}
	return dst, s.end(kg, g, r, b)
}

// MapIsEmpty implements statestore.Backend.
func (s *Store) MapIsEmpty(kg uint16, st int, key []byte) (bool, error) {
	g, r, err := s.recordOf(kg, st, abi.KindMap, key, false)
	if r == nil || err != nil {
		return err == nil, err
	}
	b := snap(r)
	empty := true
	if s.states[st].ttl.ms == 0 {
		empty = len(r.m) == 0
	} else {
		for _, c := range sortedCells(r.m) {
			if s.read(g, r, c) {
				empty = false
				break
			}
		}
	}
	return empty, s.end(kg, g, r, b)
}

// MapClear implements statestore.Backend.
func (s *Store) MapClear(kg uint16, st int, key []byte) error {
	g, r, err := s.recordOf(kg, st, abi.KindMap, key, false)
	if r == nil || err != nil {
		return err
	}
	b := snap(r)
	for _, c := range r.m {
		s.dropCell(g, r, c)
	}
	clear(r.m)
	return s.end(kg, g, r, b)
}

// ----- time and expiry

// SetEventTime implements statestore.Backend.
func (s *Store) SetEventTime(kg uint16, ms int64) { s.groups[kg].eventTime = ms }

// eventCleanup is the time up to which the cleanup on access may remove
// event-time TTL entries: the watermark, or the current event's or timer's
// time when that is earlier (a timer fires at or before the watermark and
// must see what its own time allows). CleanupExpired, which the owner calls
// between events and timers, uses the watermark alone.
func (g *group) eventCleanup() int64 { return min(g.watermark, g.eventTime) }

// SetWatermark implements statestore.Backend.
func (s *Store) SetWatermark(kg uint16, ms int64) {
	if g := &s.groups[kg]; ms > g.watermark {
		g.watermark = ms
	}
}

// cleanupHeaps removes up to limit expired cells from g's heaps: event-time
// cells that expired at or before evNow, processing-time cells that expired
// by the clock.
func (s *Store) cleanupHeaps(kg uint16, g *group, limit int, evNow int64) (int, error) {
	n := 0
	var pnow int64
	havePnow := false
	for d := range g.heaps {
		h := &g.heaps[d]
		if len(*h) == 0 {
			continue
		}
		now := evNow
		if d == DomainProcessing {
			if !havePnow {
				pnow, havePnow = s.clock(), true
			}
			now = pnow
		}
		for n < limit && len(*h) > 0 && (*h)[0].exp <= now {
			c := (*h)[0]
			r := c.rec
			if g.cap != nil && r.capEpoch != g.cap.epoch {
				if err := s.cow(kg, g, r); err != nil {
					return n, err
				}
			}
			s.stats[r.st].visited.Add(1)
			b := snap(r)
			s.removeCell(g, r, c)
			s.stats[r.st].expired.Add(1)
			s.account(g, r, b)
			n++
		}
	}
	return n, nil
}

// account updates the statistics after an expiry removed cells of r outside
// a call on r.
func (s *Store) account(g *group, r *record, b before) {
	c := &s.stats[r.st]
	if r.empty() && !b.empty {
		c.keys.Add(-1)
	}
	if nb := r.statBytes(); nb != b.bytes {
		c.bytes.Add(nb - b.bytes)
	}
	if s.disk == nil {
		if r.empty() {
			delete(g.recs[r.st], r.key)
		}
		return
	}
	g.resize(r)
}

// CleanupExpired implements statestore.Backend.
func (s *Store) CleanupExpired(kg uint16, limit int) (int, error) {
	g := &s.groups[kg]
	g.cur = nil
	if s.disk != nil {
		if err := s.scanDisk(kg, g, limit); err != nil {
			return 0, err
		}
	}
	n, err := s.cleanupHeaps(kg, g, limit, g.watermark)
	if err != nil {
		return n, err
	}
	if s.disk != nil && g.size > s.budget {
		return n, s.shrink(kg, g)
	}
	return n, nil
}

// scanDisk loads the records the Disk's expiry index names as expired, so
// cleanupHeaps finds their cells, and deletes index entries that no longer
// match a stored cell.
func (s *Store) scanDisk(kg uint16, g *group, limit int) error {
	var stale Batch
	for d := range g.diskNext {
		now := g.watermark
		if d == DomainProcessing {
			now = s.clock()
		}
		if g.diskNext[d] != -1 && g.diskNext[d] > now {
			continue
		}
		seen := 0
		var ferr error
		next, err := s.disk.ScanExpired(kg, d, now, func(exp int64, st int, key, suffix []byte) bool {
			if seen >= limit {
				return false
			}
			seen++
			if st >= 0 && st < len(s.stats) {
				s.stats[st].visited.Add(1)
			}
			if st < 0 || st >= len(s.states) || s.states[st].ttl.ms == 0 || s.states[st].ttl.domain != d {
				if stale == nil {
					stale = s.disk.NewBatch()
				}
				stale.DeleteIndex(kg, d, exp, st, key, suffix)
				return true
			}
			_, r, err := s.record(kg, st, key, false)
			if err != nil {
				ferr = err
				return false
			}
			if !r.storedWith(s.states[st].desc.Kind, suffix, exp) {
				if stale == nil {
					stale = s.disk.NewBatch()
				}
				stale.DeleteIndex(kg, d, exp, st, key, suffix)
			}
			return true
		})
		if ferr != nil {
			return ferr
		}
		if err != nil {
			return err
		}
		if seen < limit {
			g.diskNext[d] = next
		} else {
			g.diskNext[d] = -1
		}
	}
	if stale != nil && !s.held(g) {
		// (While writes are held the stale entries stay; a later scan
		// finds them again.)
		return stale.Commit()
	}
	return nil
}

// storedWith reports whether r has a cell, live or waiting to be deleted,
// whose stored version has expiry exp.
func (r *record) storedWith(kind abi.StateKind, suffix []byte, exp int64) bool {
	match := func(c *cell) bool {
		if !c.onDisk || c.diskExp != exp {
			return false
		}
		switch kind {
		case abi.KindMap:
			return c.uk == string(suffix)
		case abi.KindList:
			return len(suffix) == 8 && c.seq == binary.BigEndian.Uint64(suffix)
		}
		return true
	}
	if r.val != nil && match(r.val) {
		return true
	}
	if c := r.m[string(suffix)]; c != nil && match(c) {
		return true
	}
	return slices.ContainsFunc(r.list, match) || slices.ContainsFunc(r.dels, match)
}

// ----- write back

// suffix returns the Disk key suffix of c.
func suffix(buf []byte, kind abi.StateKind, c *cell) []byte {
	switch kind {
	case abi.KindMap:
		return append(buf[:0], c.uk...)
	case abi.KindList:
		return binary.BigEndian.AppendUint64(buf[:0], c.seq)
	}
	return nil
}

// writeBack commits g's changed records to the Disk.
func (s *Store) writeBack(kg uint16, g *group) error {
	if len(g.dirty) == 0 {
		return nil
	}
	w := writer{b: s.disk.NewBatch()}
	for _, r := range g.dirty {
		s.writeRecord(&w, kg, g, r)
	}
	clear(g.dirty)
	g.dirty = g.dirty[:0]
	return w.b.Commit()
}

// writer is a batch of write-back with its scratch buffers.
type writer struct {
	b        Batch
	raw, suf []byte
}

// writeRecord adds the changes of the dirty record r to w.b and marks r
// clean.
func (s *Store) writeRecord(w *writer, kg uint16, g *group, r *record) {
	b := w.b
	st := r.st
	kind := s.states[st].desc.Kind
	d := s.states[st].ttl.domain
	key := []byte(r.key)
	for _, c := range r.dels {
		w.suf = suffix(w.suf, kind, c)
		b.Delete(kg, st, key, w.suf)
		if c.diskExp != 0 {
			b.DeleteIndex(kg, d, c.diskExp, st, key, w.suf)
		}
		c.onDisk = false
	}
	r.dels = nil
	put := func(c *cell) {
		if !c.dirty {
			return
		}
		w.suf = suffix(w.suf, kind, c)
		w.raw = AppendValue(w.raw[:0], c.exp, c.v)
		b.Set(kg, st, key, w.suf, w.raw)
		if !c.onDisk || c.diskExp != c.exp {
			if c.onDisk && c.diskExp != 0 {
				b.DeleteIndex(kg, d, c.diskExp, st, key, w.suf)
			}
			if c.exp != 0 {
				b.SetIndex(kg, d, c.exp, st, key, w.suf)
				if g.diskNext[d] != -1 && c.exp < g.diskNext[d] {
					g.diskNext[d] = c.exp
				}
			}
		}
		c.onDisk, c.diskExp, c.dirty = true, c.exp, false
	}
	r.eachCell(put)
	r.dirty = false
	g.resize(r)
}

// shrink writes back g and evicts its least recently used records until it
// is within three quarters of its budget.
func (s *Store) shrink(kg uint16, g *group) error {
	if s.held(g) {
		// Only clean records may go; walk the ring again only once the
		// group has grown by another quarter of its budget.
		if g.size <= g.holdLimit {
			return nil
		}
		for r := g.lru.prev; r != &g.lru && g.size > s.budget*3/4; {
			prev := r.prev
			if r != g.cur && !r.dirty {
				s.evict(g, r)
			}
			r = prev
		}
		g.holdLimit = max(g.size, s.budget) + s.budget/4
		return nil
	}
	if err := s.writeBack(kg, g); err != nil {
		return err
	}
	for r := g.lru.prev; r != &g.lru && g.size > s.budget*3/4; {
		prev := r.prev
		if r != g.cur {
			s.evict(g, r)
		}
		r = prev
	}
	return nil
}

func (s *Store) evict(g *group, r *record) {
	d := s.states[r.st].ttl.domain
	drop := func(c *cell) {
		if c.hi >= 0 {
			g.heaps[d].remove(c)
		}
		// The Disk's index still names the cell: make the next cleanup
		// look at it.
		if c.diskExp != 0 && g.diskNext[d] != -1 && c.diskExp < g.diskNext[d] {
			g.diskNext[d] = c.diskExp
		}
	}
	r.eachCell(drop)
	delete(g.recs[r.st], r.key)
	g.unlink(r)
	g.size -= r.size
}

// Flush implements statestore.Backend.
func (s *Store) Flush() error {
	if s.disk == nil {
		return nil
	}
	for kg := range s.groups {
		if g := &s.groups[kg]; g.cap != nil {
			return fmt.Errorf("wasmstream: flushing the state while a snapshot captures key group %d: finish or abandon the capture first", kg)
		}
	}
	for kg := range s.groups {
		if err := s.writeBack(uint16(kg), &s.groups[kg]); err != nil {
			return err
		}
	}
	return s.SaveStats()
}

// SaveStats durably records the per-state key and byte counts on the Disk,
// and syncs everything committed before.
func (s *Store) SaveStats() error {
	if s.disk == nil {
		return nil
	}
	keys := make([]int64, len(s.stats))
	bytes := make([]int64, len(s.stats))
	for i := range s.stats {
		keys[i] = s.stats[i].keys.Load()
		bytes[i] = s.stats[i].bytes.Load()
	}
	return s.disk.SaveStats(keys, bytes)
}

// Stats implements statestore.Backend.
func (s *Store) Stats() []statestore.StateStats {
	out := make([]statestore.StateStats, len(s.states))
	for i, st := range s.states {
		c := &s.stats[i]
		out[i] = statestore.StateStats{
			Name:          st.desc.Name,
			Keys:          c.keys.Load(),
			Bytes:         c.bytes.Load(),
			CacheHits:     c.hits.Load(),
			CacheMisses:   c.misses.Load(),
			Expired:       c.expired.Load(),
			ExpiryVisited: c.visited.Load(),
		}
	}
	return out
}

// ----- LRU ring

func (g *group) pushFront(r *record) {
	r.prev = &g.lru
	r.next = g.lru.next
	g.lru.next.prev = r
	g.lru.next = r
}

func (g *group) unlink(r *record) {
	r.prev.next = r.next
	r.next.prev = r.prev
	r.prev, r.next = nil, nil
}

func (g *group) touch(r *record) {
	if g.lru.next != r {
		g.unlink(r)
		g.pushFront(r)
	}
}

// ----- expiry heap

// expHeap is a binary min-heap of cells ordered by expiry; each cell knows
// its index so its expiry can change in place.
type expHeap []*cell

func (h *expHeap) push(c *cell) {
	c.hi = len(*h)
	*h = append(*h, c)
	h.up(c.hi)
}

// set gives c expiry exp, adding it to the heap if it is not in it.
func (h *expHeap) set(c *cell, exp int64) {
	old := c.exp
	c.exp = exp
	if c.hi < 0 {
		h.push(c)
		return
	}
	if exp < old {
		h.up(c.hi)
	} else if exp > old {
		h.down(c.hi)
	}
}

func (h *expHeap) remove(c *cell) {
	i := c.hi
	last := len(*h) - 1
	if i != last {
		h.swap(i, last)
	}
	(*h)[last] = nil
	*h = (*h)[:last]
	c.hi = -1
	if i != last {
		h.down(i)
		h.up(i)
	}
}

func (h expHeap) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].hi = i
	h[j].hi = j
}

func (h expHeap) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if h[p].exp <= h[i].exp {
			return
		}
		h.swap(i, p)
		i = p
	}
}

func (h expHeap) down(i int) {
	for {
		l := 2*i + 1
		if l >= len(h) {
			return
		}
		m := l
		if r := l + 1; r < len(h) && h[r].exp < h[l].exp {
			m = r
		}
		if h[i].exp <= h[m].exp {
			return
		}
		h.swap(i, m)
		i = m
	}
}
