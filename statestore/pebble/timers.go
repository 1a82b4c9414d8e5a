package pebble

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"strconv"
	"sync/atomic"
	"unsafe"

	"github.com/cockroachdb/pebble/v2"

	"github.com/wasmstream/wasmstream/abi"
	"github.com/wasmstream/wasmstream/statestore"
)

// Timers are stored in their key group's range under the timer tag (see the
// package documentation), ordered by (time, key, payload), so the timers due
// at a time are a prefix of their domain's range.
//
// Writes go to a Pebble batch per key group, committed when it outgrows the
// key group's share of Options.TimerBatchBytes, before a range scan of the
// key group's timers and on Flush; a map of the batch's keys (pending)
// answers lookups of what it holds. In front of each key group and domain, a
// head cache holds the earliest timers in order: every live timer up to a
// bound key (hi), or all of them (complete). Popping and peeking read the
// head; registering or deleting a timer at or before the bound updates it
// and reads nothing from Pebble.
//
// A timer after the bound must be looked up to deduplicate it. A bloom
// filter per key group and domain, in memory, holds every stored timer (and
// timers since fired or deleted, until it is rebuilt): a timer it does not
// hold is new without a read of Pebble, which is the common case, as new
// timers' times are spread over the future. The filter is built by scanning
// the domain's timers when first needed, and rebuilt, twice as large as what
// it then holds, once as many timers were added as it was sized for, so
// that rebuilding costs O(1) amortised per registration.
//
// When the head runs empty it is refilled by one range scan from just after
// the bound, up to its share of Options.TimerCacheBytes.

const timerTag = 0xfffe

// timerPrefixLen is the length of kg, the timer tag and the domain.
const timerPrefixLen = 5

// Defaults of the timer options.
const (
	DefaultTimerBatchBytes = 32 << 20
	DefaultTimerCacheBytes = 16 << 20
)

type timerStore struct {
	groups     []timerGroup
	count      atomic.Int64
	saved      int64 // the count flushTimers last wrote, plus 1; 0 = none
	batchBytes int   // per key group
	headBytes  int   // per key group and domain
}

type timerGroup struct {
	batch   *pebble.Batch   // uncommitted timer writes; nil when none
	pending map[string]bool // the keys batch and frozen set (true) and delete (false)
	// A snapshot's capture freezes the batch of the barrier, to be
	// committed by the capture; until the snapshot releases the hold
	// epoch, batch is an indexed batch that is never committed, and
	// reads see the database through it.
	frozen    *pebble.Batch
	holdEpoch uint32
	heads     [2]timerHead // abi.TimeDomainEvent, abi.TimeDomainProcessing
	filters   [2]timerFilter
	buf       []byte // scratch key
	kbuf      []byte // scratch decoded key
}

// timerHead holds the earliest timers of a key group and domain, sorted by
// their stored key, from entries[off].
type timerHead struct {
	entries  []headEntry
	off      int
	bytes    int    // memory held by entries[off:], estimated
	loaded   bool   // entries[off:] are every timer up to hi
	complete bool   // and every timer after hi too
	hi       string // the greatest stored key read into the head
}

type headEntry struct {
	time int64
	key  string // the stored key
}

// headEntryOverhead approximates the memory of a head entry beyond its key.
const headEntryOverhead = 48

var _ statestore.TimerStore = (*Backend)(nil)

func (ts *timerStore) init(maxPar int, o *Options) {
	ts.groups = make([]timerGroup, maxPar)
	memtable := orDefault(o.MemTableBytes, DefaultMemTableBytes)
	ts.batchBytes = int(min(max(orDefault(o.TimerBatchBytes, DefaultTimerBatchBytes)/int64(maxPar), 1), memtable/4))
	ts.headBytes = int(min(max(orDefault(o.TimerCacheBytes, DefaultTimerCacheBytes)/int64(2*maxPar), 1), 64<<10))
}

// ----- keys

// appendTimerPrefix appends the start of the stored keys of domain in kg.
func appendTimerPrefix(dst []byte, kg uint16, domain int) []byte {
	dst = binary.BigEndian.AppendUint16(dst, kg)
	dst = binary.BigEndian.AppendUint16(dst, timerTag)
	return append(dst, byte(domain))
}

func appendTime(dst []byte, t int64) []byte {
	return binary.BigEndian.AppendUint64(dst, uint64(t)^(1<<63))
}

// appendTimerKey appends the stored key of t. The key is escaped (0x00 as
// 0x00 0xff) and terminated by 0x00 0x01, so that byte order is (key,
// payload) order.
func appendTimerKey(dst []byte, kg uint16, t *statestore.Timer) []byte {
	dst = appendTime(appendTimerPrefix(dst, kg, t.Domain), t.Time)
	k := t.Key
	for {
		i := bytes.IndexByte(k, 0)
		if i < 0 {
			break
		}
		dst = append(dst, k[:i+1]...)
		dst = append(dst, 0xff)
		k = k[i+1:]
	}
	dst = append(dst, k...)
	dst = append(dst, 0, 1)
	return append(dst, t.Payload...)
}

var errDamagedTimer = errors.New("wasmstream: stored timer key is damaged")

// decodeTimerKey decodes a stored timer key. key is a slice of k unless the
// key holds a 0x00 byte: then it is decoded into buf.
func decodeTimerKey(k, buf []byte) (t int64, key, payload, nbuf []byte, err error) {
	if len(k) < timerPrefixLen+8+2 {
		return 0, nil, nil, buf, errDamagedTimer
	}
	t = int64(binary.BigEndian.Uint64(k[timerPrefixLen:]) ^ (1 << 63))
	rest := k[timerPrefixLen+8:]
	i := bytes.IndexByte(rest, 0)
	if i >= 0 && i+1 < len(rest) && rest[i+1] == 1 {
		return t, rest[:i:i], rest[i+2:], buf, nil
	}
	buf = buf[:0]
	for {
		if i < 0 || i+1 >= len(rest) {
			return 0, nil, nil, buf, errDamagedTimer
		}
		switch rest[i+1] {
		case 1:
			buf = append(buf, rest[:i]...)
			return t, buf, rest[i+2:], buf, nil
		case 0xff:
			buf = append(buf, rest[:i+1]...)
			rest = rest[i+2:]
		default:
			return 0, nil, nil, buf, errDamagedTimer
		}
		i = bytes.IndexByte(rest, 0)
	}
}

// keyTime is the time of a stored timer key, which is at least
// timerPrefixLen+8 long.
func keyTime(k string) int64 {
	return int64(binary.BigEndian.Uint64(unsafe.Slice(unsafe.StringData(k[timerPrefixLen:]), 8)) ^ (1 << 63))
}

func byteView(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// ----- the head cache

func (h *timerHead) len() int { return len(h.entries) - h.off }

// covers reports whether the head holds every timer with stored key k, if
// there is one.
func (h *timerHead) covers(k []byte) bool {
	return h.loaded && (h.complete || string(k) <= h.hi)
}

// find returns the index in entries of k or where it would be.
func (h *timerHead) find(k []byte) (int, bool) {
	i, ok := slices.BinarySearchFunc(h.entries[h.off:], k, func(e headEntry, k []byte) int {
		return bytes.Compare(byteView(e.key), k)
	})
	return h.off + i, ok
}

func (h *timerHead) insert(i int, k []byte, max int) {
	h.entries = slices.Insert(h.entries, i, headEntry{keyTime(string(k)), string(k)})
	h.bytes += len(k) + headEntryOverhead
	// Drop the latest timers beyond the budget: they stay in Pebble.
	for h.bytes > max && h.len() > 1 {
		e := &h.entries[len(h.entries)-1]
		h.bytes -= len(e.key) + headEntryOverhead
		*e = headEntry{}
		h.entries = h.entries[:len(h.entries)-1]
		h.hi, h.complete = h.entries[len(h.entries)-1].key, false
	}
}

func (h *timerHead) remove(i int) {
	h.bytes -= len(h.entries[i].key) + headEntryOverhead
	if i == h.off {
		h.entries[i] = headEntry{}
		h.off++
		switch {
		case h.off == len(h.entries):
			h.entries, h.off = h.entries[:0], 0
		case h.off > 64 && h.off > len(h.entries)/2:
			// Reclaim the popped prefix.
			n := copy(h.entries, h.entries[h.off:])
			clear(h.entries[n:])
			h.entries, h.off = h.entries[:n], 0
		}
		return
	}
	h.entries = slices.Delete(h.entries, i, i+1)
}

// reset forgets what the head holds.
func (h *timerHead) reset() {
	clear(h.entries)
	*h = timerHead{entries: h.entries[:0]}
}

// ----- Backend

// timerGroup returns the timer state of kg and its head of domain.
func (b *Backend) timerGroup(kg uint16, domain int) (*timerGroup, *timerHead, error) {
	if int(kg) >= len(b.timers.groups) {
		return nil, nil, fmt.Errorf("wasmstream: timer key group %d out of range: the backend has %d key groups", kg, len(b.timers.groups))
	}
	if domain != abi.TimeDomainEvent && domain != abi.TimeDomainProcessing {
		return nil, nil, fmt.Errorf("wasmstream: timer domain %d: want %d (event time) or %d (processing time)",
			domain, abi.TimeDomainEvent, abi.TimeDomainProcessing)
	}
	g := &b.timers.groups[kg]
	return g, &g.heads[domain], nil
}

// set adds the stored key k of a timer to g's batch.
func (b *Backend) set(g *timerGroup, k []byte) {
	b.batchOf(g).Set(k, nil, nil)
	g.pending[string(k)] = true
}

// del deletes the stored key k of a timer in g's batch.
func (b *Backend) del(g *timerGroup, k string) {
	b.batchOf(g).Delete(byteView(k), nil)
	g.pending[k] = false
}

func (b *Backend) batchOf(g *timerGroup) *pebble.Batch {
	if g.batch == nil {
		if b.timersHeld(g) {
			g.batch = b.db.NewIndexedBatch()
		} else {
			g.batch = b.db.NewBatch()
		}
		if g.pending == nil {
			g.pending = map[string]bool{}
		}
	}
	return g.batch
}

// stored reports whether Pebble, with g's batch applied, holds key k of
// domain in kg.
func (b *Backend) stored(kg uint16, domain int, g *timerGroup, k []byte) (bool, error) {
	if v, ok := g.pending[string(k)]; ok {
		return v, nil
	}
	f := &g.filters[domain]
	if !f.built {
		if err := b.buildFilter(kg, domain, g); err != nil {
			return false, err
		}
	}
	if !f.mayContain(k) {
		return false, nil
	}
	_, c, err := b.db.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("wasmstream: reading timer: %w", err)
	}
	c.Close()
	return true, nil
}

// buildFilter builds the filter of domain in kg from the stored timers.
func (b *Backend) buildFilter(kg uint16, domain int, g *timerGroup) error {
	if err := b.commitTimers(g, true); err != nil {
		return err
	}
	lo := appendTimerPrefix(nil, kg, domain)
	it, err := b.timerReader(g).NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: prefixEnd(lo)})
	if err != nil {
		return fmt.Errorf("wasmstream: reading timers: %w", err)
	}
	var hashes []uint64
	for ok := it.First(); ok; ok = it.Next() {
		hashes = append(hashes, hashKey(it.Key()))
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("wasmstream: reading timers: %w", err)
	}
	g.filters[domain].build(hashes)
	return nil
}

// commitTimers commits g's batch if it has outgrown its budget, or always
// with force, which first commits the frozen batch too, so that reading
// through timerReader sees every write. While a snapshot holds g's writes
// it commits neither batch.
func (b *Backend) commitTimers(g *timerGroup, force bool) error {
	if force && g.frozen != nil {
		if err := b.commitFrozen(g); err != nil {
			return err
		}
	}
	if g.batch == nil || !force && len(g.batch.Repr()) < b.timers.batchBytes || b.timersHeld(g) {
		return nil
	}
	return b.commitBatch(g)
}

// commitBatch commits g's batch.
func (b *Backend) commitBatch(g *timerGroup) error {
	bt := g.batch
	g.batch = nil
	clear(g.pending)
	err := bt.Commit(pebble.NoSync)
	bt.Close()
	if err != nil {
		return fmt.Errorf("wasmstream: writing timers: %w", err)
	}
	return nil
}

// fill reads the timers after the head's bound into it, up to its budget.
func (b *Backend) fill(kg uint16, domain int, g *timerGroup, h *timerHead) error {
	lo := appendTimerPrefix(nil, kg, domain)
	hi := prefixEnd(lo)
	if h.loaded {
		// Just after the bound.
		lo = append(append(lo[:0], h.hi...), 0)
	}
	if err := b.commitTimers(g, true); err != nil {
		return err
	}
	it, err := b.timerReader(g).NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return fmt.Errorf("wasmstream: reading timers: %w", err)
	}
	h.reset()
	h.loaded = true
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		if len(k) < timerPrefixLen+8+2 {
			it.Close()
			return errDamagedTimer
		}
		h.entries = append(h.entries, headEntry{keyTime(string(k)), string(k)})
		h.bytes += len(k) + headEntryOverhead
		if h.bytes >= b.timers.headBytes {
			h.hi = h.entries[len(h.entries)-1].key
			if it.Next() {
				if err := it.Close(); err != nil {
					h.reset()
					return fmt.Errorf("wasmstream: reading timers: %w", err)
				}
				return nil
			}
			break
		}
	}
	h.complete = true
	if err := it.Close(); err != nil {
		h.reset()
		return fmt.Errorf("wasmstream: reading timers: %w", err)
	}
	return nil
}

// ready makes the head hold the earliest timer, if there is one.
func (b *Backend) ready(kg uint16, domain int, g *timerGroup, h *timerHead) error {
	if h.loaded && (h.len() > 0 || h.complete) {
		return nil
	}
	return b.fill(kg, domain, g, h)
}

// RegisterTimer implements statestore.TimerStore.
func (b *Backend) RegisterTimer(kg uint16, t statestore.Timer) (bool, error) {
	g, h, err := b.timerGroup(kg, t.Domain)
	if err != nil {
		return false, err
	}
	g.buf = appendTimerKey(g.buf[:0], kg, &t)
	k := g.buf
	if h.covers(k) {
		i, found := h.find(k)
		if found {
			return false, nil
		}
		h.insert(i, k, b.timers.headBytes)
	} else if found, err := b.stored(kg, t.Domain, g, k); err != nil || found {
		return false, err
	}
	g.filters[t.Domain].add(k)
	b.set(g, k)
	b.timers.count.Add(1)
	return true, b.commitTimers(g, false)
}

// DeleteTimer implements statestore.TimerStore.
func (b *Backend) DeleteTimer(kg uint16, t statestore.Timer) (bool, error) {
	g, h, err := b.timerGroup(kg, t.Domain)
	if err != nil {
		return false, err
	}
	g.buf = appendTimerKey(g.buf[:0], kg, &t)
	k := g.buf
	if h.covers(k) {
		i, found := h.find(k)
		if !found {
			return false, nil
		}
		h.remove(i)
	} else if found, err := b.stored(kg, t.Domain, g, k); err != nil || !found {
		return false, err
	}
	b.del(g, string(k))
	b.timers.count.Add(-1)
	return true, b.commitTimers(g, false)
}

// PopTimers implements statestore.TimerStore. A limit ≤ 0 means no limit.
// fn may register and delete timers of kg; a timer it registers that is due
// is popped by the same call.
func (b *Backend) PopTimers(kg uint16, domain int, upTo int64, limit int, fn func(statestore.Timer)) (int, error) {
	g, h, err := b.timerGroup(kg, domain)
	if err != nil {
		return 0, err
	}
	n := 0
	for limit <= 0 || n < limit {
		if err := b.ready(kg, domain, g, h); err != nil {
			return n, err
		}
		if h.len() == 0 {
			break
		}
		e := h.entries[h.off]
		if e.time > upTo {
			break
		}
		h.remove(h.off)
		b.del(g, e.key)
		k := byteView(e.key)
		b.timers.count.Add(-1)
		n++
		var key, payload []byte
		key, payload, g.kbuf, err = decodeTimerKeyParts(k, g.kbuf)
		if err != nil {
			return n, err
		}
		fn(statestore.Timer{Domain: domain, Time: e.time, Key: key, Payload: payload})
	}
	return n, b.commitTimers(g, false)
}

func decodeTimerKeyParts(k, buf []byte) (key, payload, nbuf []byte, err error) {
	_, key, payload, nbuf, err = decodeTimerKey(k, buf)
	if len(key) == 0 {
		key = nil
	}
	if len(payload) == 0 {
		payload = nil
	}
	return key, payload, nbuf, err
}

// NextTimer implements statestore.TimerStore.
func (b *Backend) NextTimer(kg uint16, domain int) (int64, bool, error) {
	g, h, err := b.timerGroup(kg, domain)
	if err != nil {
		return 0, false, err
	}
	if err := b.ready(kg, domain, g, h); err != nil {
		return 0, false, err
	}
	if h.len() == 0 {
		return 0, false, nil
	}
	return h.entries[h.off].time, true, nil
}

// TimerCount implements statestore.TimerStore.
func (b *Backend) TimerCount() int64 { return b.timers.count.Load() }

// AppendTimers appends copies of the timers of domain in kg to dst, in
// firing order (time, key, payload), without removing them. It is for
// checkpoints and tests: it reads every timer of the domain.
func (b *Backend) AppendTimers(dst []statestore.Timer, kg uint16, domain int) ([]statestore.Timer, error) {
	g, _, err := b.timerGroup(kg, domain)
	if err != nil {
		return dst, err
	}
	if err := b.commitTimers(g, true); err != nil {
		return dst, err
	}
	lo := appendTimerPrefix(nil, kg, domain)
	it, err := b.timerReader(g).NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: prefixEnd(lo)})
	if err != nil {
		return dst, err
	}
	for ok := it.First(); ok; ok = it.Next() {
		t, key, payload, _, err := decodeTimerKey(it.Key(), nil)
		if err != nil {
			it.Close()
			return dst, err
		}
		dst = append(dst, statestore.Timer{Domain: domain, Time: t,
			Key: bytes.Clone(key), Payload: bytes.Clone(payload)})
	}
	return dst, it.Close()
}

// flushTimers commits every key group's timer writes and the timer count.
func (b *Backend) flushTimers() error {
	for i := range b.timers.groups {
		g := &b.timers.groups[i]
		if err := b.commitFrozen(g); err != nil {
			return err
		}
		if g.batch != nil {
			if err := b.commitBatch(g); err != nil {
				return err
			}
		}
	}
	return b.saveTimerCount()
}

// saveTimerCount writes the timer count, when it changed.
func (b *Backend) saveTimerCount() error {
	c := b.timers.count.Load()
	if b.timers.saved == c+1 {
		return nil // unchanged: write nothing (see disk.saved)
	}
	n := strconv.FormatInt(c, 10)
	if err := b.db.Set(metaKey("timers"), []byte(n), pebble.NoSync); err != nil {
		return fmt.Errorf("wasmstream: writing the timer count: %w", err)
	}
	b.timers.saved = c + 1
	return nil
}

// loadTimerCount reads the timer count Flush stored.
func loadTimerCount(db *pebble.DB, dir string) (int64, error) {
	v, ok, err := get(db, metaKey("timers"))
	if err != nil || !ok {
		return 0, err
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("wasmstream: state directory %s: the timer count %q is damaged", dir, v)
	}
	return n, nil
}

// ----- snapshots

// timersHeld reports whether a snapshot holds g's writes back.
func (b *Backend) timersHeld(g *timerGroup) bool { return b.Held(g.holdEpoch) }

// timerReader is what reads g's timers: its indexed batch over the
// database while a snapshot holds its writes, else the database.
func (b *Backend) timerReader(g *timerGroup) pebble.Reader {
	if g.batch != nil && g.batch.Indexed() {
		return g.batch
	}
	return b.db
}

// freezeTimers makes the timer writes of kg so far the frozen batch, which
// its capture commits, and holds later writes back until epoch is
// released.
func (b *Backend) freezeTimers(kg uint16, epoch uint32) error {
	g := &b.timers.groups[kg]
	if err := b.commitFrozen(g); err != nil {
		return err
	}
	g.frozen, g.batch = g.batch, nil
	g.holdEpoch = epoch
	return nil
}

// commitFrozenTimers commits the frozen batch of kg and returns how many
// writes it held.
func (b *Backend) commitFrozenTimers(kg uint16) (int, error) {
	g := &b.timers.groups[kg]
	if g.frozen == nil {
		return 0, nil
	}
	n := int(g.frozen.Count())
	return n, b.commitFrozen(g)
}

func (b *Backend) commitFrozen(g *timerGroup) error {
	if g.frozen == nil {
		return nil
	}
	bt := g.frozen
	g.frozen = nil
	err := bt.Commit(pebble.NoSync)
	bt.Close()
	if err != nil {
		return fmt.Errorf("wasmstream: writing timers: %w", err)
	}
	return nil
}

// ----- bloom filter

// filterSeed seeds the hashes of the filters, which live in memory only.
var filterSeed = maphash.MakeSeed()

func hashKey(k []byte) uint64 { return maphash.Bytes(filterSeed, k) }

const (
	filterBitsPerKey = 10
	filterProbes     = 7
	filterMinKeys    = 64
)

// timerFilter is a bloom filter of the stored keys of a key group's timers
// of one domain. Keys are never removed: it is rebuilt from storage when
// more keys were added than it is sized for.
type timerFilter struct {
	bits  []uint64
	mask  uint64 // number of bits - 1
	room  int    // keys it can take before it needs rebuilding
	built bool
}

func (f *timerFilter) build(hashes []uint64) {
	n := max(2*len(hashes), filterMinKeys)
	nbits := uint64(64)
	for nbits < uint64(n*filterBitsPerKey) {
		nbits <<= 1
	}
	if uint64(len(f.bits)*64) == nbits {
		clear(f.bits)
	} else {
		f.bits = make([]uint64, nbits/64)
	}
	f.mask = nbits - 1
	f.room = n - len(hashes)
	f.built = true
	for _, h := range hashes {
		f.set(h)
	}
}

func (f *timerFilter) set(h uint64) {
	h1, h2 := h, h>>32|1
	for range filterProbes {
		f.bits[(h1&f.mask)>>6] |= 1 << (h1 & 63)
		h1 += h2
	}
}

// add adds key k to a built filter; a filter not built ignores it.
func (f *timerFilter) add(k []byte) {
	if !f.built {
		return
	}
	f.set(hashKey(k))
	if f.room--; f.room <= 0 {
		f.built = false
	}
}

func (f *timerFilter) mayContain(k []byte) bool {
	h := hashKey(k)
	h1, h2 := h, h>>32|1
	for range filterProbes {
		if f.bits[(h1&f.mask)>>6]&(1<<(h1&63)) == 0 {
			return false
		}
		h1 += h2
	}
	return true
}
