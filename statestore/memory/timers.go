package memory

import (
	"fmt"
	"iter"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/wasmstream/wasmstream/abi"
	"github.com/wasmstream/wasmstream/statestore"
)

// Timers live per key group and time domain in a 4-ary min-heap ordered by
// (time, key, payload), with a hash index for deduplication and deletion.
// The heap holds each timer's time beside a pointer to it, so sifting
// compares times without following pointers. A deleted timer leaves the
// index at once and the heap lazily: popping discards it, and the heap is
// rebuilt when deleted timers make up most of it. Registering, deleting and
// popping a timer cost O(log n) amortised, peeking the next one O(1)
// amortised. Each timer is one allocation for its bookkeeping and one for
// its key and payload bytes.

// timerStore is the Backend's timer storage, created on first use.
type timerStore struct {
	once   sync.Once
	groups []timerGroup // per key group
	count  atomic.Int64
}

type timerGroup struct {
	domains [2]timerHeap // abi.TimeDomainEvent, abi.TimeDomainProcessing
}

// timerID identifies a timer within a key group and domain. key and payload
// share one allocation.
type timerID struct {
	time         int64
	key, payload string
}

type timerItem struct {
	id       timerID
	dead     bool   // deleted, still in the heap
	capEpoch uint32 // the last capture that took it or does not need it
}

type heapEntry struct {
	time int64
	it   *timerItem
}

type timerHeap struct {
	items []heapEntry
	index map[timerID]*timerItem
	dead  int // deleted items still in items
	peak  int // most live timers since the heap was last empty

	// A capture in progress: the live timers at the barrier go to capOut,
	// pulled from the index, or copy-on-write before they are popped or
	// deleted.
	capOut   *[]*timerItem
	capEpoch uint32
	capNext  func() (*timerItem, bool)
	capStop  func()
}

var _ statestore.TimerStore = (*Backend)(nil)

// timerStore returns the backend's timer storage.
func (b *Backend) timerStore() *timerStore {
	t := &b.timers
	t.once.Do(func() { t.groups = make([]timerGroup, len(b.groups)) })
	return t
}

// timerHeap returns the heap of domain in kg.
func (b *Backend) timerHeap(kg uint16, domain int) (*timerHeap, error) {
	t := b.timerStore()
	if int(kg) >= len(t.groups) {
		return nil, fmt.Errorf("wasmstream: timer key group %d out of range: the backend has %d key groups", kg, len(t.groups))
	}
	if domain != abi.TimeDomainEvent && domain != abi.TimeDomainProcessing {
		return nil, fmt.Errorf("wasmstream: timer domain %d: want %d (event time) or %d (processing time)",
			domain, abi.TimeDomainEvent, abi.TimeDomainProcessing)
	}
	return &t.groups[kg].domains[domain], nil
}

// lookupID is t's id as a map key without copying its bytes.
func lookupID(t statestore.Timer) timerID {
	return timerID{time: t.Time, key: unsafe.String(unsafe.SliceData(t.Key), len(t.Key)),
		payload: unsafe.String(unsafe.SliceData(t.Payload), len(t.Payload))}
}

// RegisterTimer implements statestore.TimerStore.
func (b *Backend) RegisterTimer(kg uint16, t statestore.Timer) (bool, error) {
	h, err := b.timerHeap(kg, t.Domain)
	if err != nil {
		return false, err
	}
	if _, ok := h.index[lookupID(t)]; ok {
		return false, nil
	}
	s := string(t.Key) + string(t.Payload)
	it := &timerItem{id: timerID{time: t.Time, key: s[:len(t.Key)], payload: s[len(t.Key):]}}
	if h.index == nil {
		h.index = map[timerID]*timerItem{}
	}
	if h.capOut != nil {
		it.capEpoch = h.capEpoch
	}
	h.index[it.id] = it
	h.push(heapEntry{t.Time, it})
	h.peak = max(h.peak, len(h.index))
	b.timers.count.Add(1)
	return true, nil
}

// DeleteTimer implements statestore.TimerStore.
func (b *Backend) DeleteTimer(kg uint16, t statestore.Timer) (bool, error) {
	h, err := b.timerHeap(kg, t.Domain)
	if err != nil {
		return false, err
	}
	it, ok := h.index[lookupID(t)]
	if !ok {
		return false, nil
	}
	h.cow(it)
	delete(h.index, it.id)
	it.dead = true
	h.dead++
	b.timers.count.Add(-1)
	if h.dead > 64 && h.dead > len(h.items)/2 {
		h.compact()
	}
	return true, nil
}

// PopTimers implements statestore.TimerStore. A limit ≤ 0 means no limit.
// fn may register and delete timers of kg; a timer it registers that is due
// is popped by the same call.
func (b *Backend) PopTimers(kg uint16, domain int, upTo int64, limit int, fn func(statestore.Timer)) (int, error) {
	h, err := b.timerHeap(kg, domain)
	if err != nil {
		return 0, err
	}
	n := 0
	for limit <= 0 || n < limit {
		it := h.min()
		if it == nil || it.id.time > upTo {
			break
		}
		h.popMin()
		h.cow(it)
		delete(h.index, it.id)
		b.timers.count.Add(-1)
		n++
		fn(statestore.Timer{Domain: domain, Time: it.id.time, Key: view(it.id.key), Payload: view(it.id.payload)})
	}
	h.maybeRelease()
	return n, nil
}

// view returns s's bytes without copying; the receiver must not modify them.
func view(s string) []byte {
	if s == "" {
		return nil
	}
	return unsafe.Slice(unsafe.StringData(s), len(s))
}

// NextTimer implements statestore.TimerStore.
func (b *Backend) NextTimer(kg uint16, domain int) (int64, bool, error) {
	h, err := b.timerHeap(kg, domain)
	if err != nil {
		return 0, false, err
	}
	it := h.min()
	if it == nil {
		return 0, false, nil
	}
	return it.id.time, true, nil
}

// TimerCount implements statestore.TimerStore.
func (b *Backend) TimerCount() int64 { return b.timers.count.Load() }

// AppendTimers appends copies of the timers of domain in kg to dst, in
// firing order (time, key, payload), without removing them. It is for
// checkpoints and tests: it costs O(n log n).
func (b *Backend) AppendTimers(dst []statestore.Timer, kg uint16, domain int) ([]statestore.Timer, error) {
	h, err := b.timerHeap(kg, domain)
	if err != nil {
		return dst, err
	}
	items := make([]*timerItem, 0, len(h.index))
	for _, it := range h.index {
		items = append(items, it)
	}
	slices.SortFunc(items, func(x, y *timerItem) int { return compareID(&x.id, &y.id) })
	for _, it := range items {
		dst = append(dst, statestore.Timer{Domain: domain, Time: it.id.time,
			Key: []byte(it.id.key), Payload: []byte(it.id.payload)})
	}
	return dst, nil
}

// beginCapture starts capturing the live timers of h into out.
func (h *timerHeap) beginCapture(epoch uint32, out *[]*timerItem) {
	h.capOut, h.capEpoch = out, epoch
}

// stepCapture takes up to budget live timers for the capture in progress
// and returns how many it took and whether it is done.
func (h *timerHeap) stepCapture(budget int) (int, bool) {
	if h.capOut == nil {
		return 0, true
	}
	if h.capNext == nil {
		index := h.index
		h.capNext, h.capStop = iter.Pull(func(yield func(*timerItem) bool) {
			for _, it := range index {
				if !yield(it) {
					return
				}
			}
		})
	}
	n := 0
	for n < budget {
		it, ok := h.capNext()
		if !ok {
			h.endCapture()
			return n, true
		}
		n++
		h.cow(it)
	}
	return n, false
}

// cow takes it for the capture in progress unless it has it already.
func (h *timerHeap) cow(it *timerItem) {
	if h.capOut != nil && it.capEpoch != h.capEpoch {
		it.capEpoch = h.capEpoch
		*h.capOut = append(*h.capOut, it)
	}
}

// endCapture ends the capture in progress, done or abandoned.
func (h *timerHeap) endCapture() {
	if h.capStop != nil {
		h.capStop()
	}
	h.capOut, h.capNext, h.capStop = nil, nil, nil
}

func compareID(x, y *timerID) int {
	switch {
	case x.time < y.time:
		return -1
	case x.time > y.time:
		return 1
	}
	if c := strings.Compare(x.key, y.key); c != 0 {
		return c
	}
	return strings.Compare(x.payload, y.payload)
}

func (h *timerHeap) less(i, j int) bool {
	x, y := &h.items[i], &h.items[j]
	if x.time != y.time {
		return x.time < y.time
	}
	return compareID(&x.it.id, &y.it.id) < 0
}

// min returns the first live timer, discarding deleted ones on top, or nil.
func (h *timerHeap) min() *timerItem {
	for len(h.items) > 0 {
		if it := h.items[0].it; !it.dead {
			return it
		}
		h.popMin()
		h.dead--
	}
	return nil
}

func (h *timerHeap) push(e heapEntry) {
	h.items = append(h.items, e)
	h.up(len(h.items) - 1)
}

// popMin removes the top of the heap.
func (h *timerHeap) popMin() {
	last := len(h.items) - 1
	h.items[0] = h.items[last]
	h.items[last] = heapEntry{}
	h.items = h.items[:last]
	if last > 0 {
		h.down(0)
	}
}

// compact drops deleted timers and re-heapifies, in O(n).
func (h *timerHeap) compact() {
	live := h.items[:0]
	for _, e := range h.items {
		if !e.it.dead {
			live = append(live, e)
		}
	}
	clear(h.items[len(live):])
	h.items, h.dead = live, 0
	for i := (len(h.items) - 2) / 4; i >= 0; i-- {
		h.down(i)
	}
	h.maybeRelease()
}

// maybeRelease frees the memory of a heap that has shrunk a lot: Go maps
// and slices do not shrink by themselves.
func (h *timerHeap) maybeRelease() {
	switch {
	case len(h.index) == 0 && h.peak > 1024:
		h.items, h.index, h.dead, h.peak = nil, nil, 0, 0
	case cap(h.items) > 1024 && len(h.items) < cap(h.items)/4:
		h.items = slices.Clip(slices.Clone(h.items))
	}
}

func (h *timerHeap) up(i int) {
	e := h.items[i]
	for i > 0 {
		p := (i - 1) / 4
		h.items[i] = e // for less
		if !h.less(i, p) {
			break
		}
		h.items[i] = h.items[p]
		i = p
	}
	h.items[i] = e
}

func (h *timerHeap) down(i int) {
	n := len(h.items)
	for {
		c := 4*i + 1
		if c >= n {
			return
		}
		m := c
		for j := c + 1; j < c+4 && j < n; j++ {
			if h.less(j, m) {
				m = j
			}
		}
		if !h.less(m, i) {
			return
		}
		h.items[i], h.items[m] = h.items[m], h.items[i]
		i = m
	}
}
