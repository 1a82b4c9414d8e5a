package core

import (
	"fmt"
	"iter"

	"github.com/wasmstream/wasmstream/abi"
)

// Captures
//
// A snapshot captures the key groups of a Store as they are at a barrier,
// without stopping their owner for longer than it takes to mark them:
// BeginCapture only notes, per key group, what is to be captured, and the
// owner then calls Capture.Step between its other calls until the capture
// is done. A record the owner is about to change (or read: reads may
// change expiries) that the capture has not taken yet is taken first,
// copy-on-write, so the capture sees every record as it was at the
// barrier.
//
//   - Without a Disk, taking a record hands its cells to the capture's
//     emit function, which serialises them. Every record present at the
//     barrier is taken once; records made after it are not.
//   - With a Disk, the Disk plus the dirty records is the state: taking a
//     record writes it back. A capture takes the records dirty at the
//     barrier, then the Disk holds the state as of the barrier. From the
//     barrier until ReleaseWrites of the capture's epoch, nothing written
//     after the barrier reaches the Disk (write-back and the eviction of
//     dirty records wait; the cache may outgrow its budget meanwhile), so
//     the owner of the Disk can copy it as of the barrier.
//
// Captures of distinct key groups may run concurrently, each on the
// goroutine that owns its key groups.

// EmitFunc receives a record a capture takes from a Store without a Disk;
// its slices are valid during the call only.
type EmitFunc func(kg uint16, st int, key []byte, cells []Cell)

// Capture is a capture in progress of a set of key groups.
type Capture struct {
	s     *Store
	epoch uint32
	kgs   []uint16
	next  int // kgs[next:] are not done
	emit  EmitFunc
	w     writer // with a Disk: the records written by Step
	cells []Cell
	err   error
}

// NewEpoch returns a new capture epoch, for the captures of one snapshot.
func (s *Store) NewEpoch() uint32 { return s.epochs.Add(1) }

// BeginCapture starts capturing key groups kgs for the snapshot of epoch.
// emit is required without a Disk and ignored with one. It costs O(len(kgs)).
func (s *Store) BeginCapture(epoch uint32, kgs []uint16, emit EmitFunc) (*Capture, error) {
	if s.disk == nil && emit == nil {
		return nil, fmt.Errorf("wasmstream: a capture of a store without storage needs an emit function")
	}
	for _, kg := range kgs {
		if int(kg) >= len(s.groups) {
			return nil, fmt.Errorf("wasmstream: capture of key group %d: the store has %d key groups", kg, len(s.groups))
		}
		if s.groups[kg].cap != nil {
			return nil, fmt.Errorf("wasmstream: key group %d is already being captured: finish or abandon that capture first", kg)
		}
	}
	c := &Capture{s: s, epoch: epoch, kgs: kgs, emit: emit}
	for _, kg := range kgs {
		g := &s.groups[kg]
		g.cap = c
		if s.disk != nil {
			g.frozen, g.frozenPos = g.dirty, 0
			g.dirty = nil
			g.holdEpoch = epoch
			g.holdLimit = 0
		}
	}
	return c, nil
}

// Done reports whether the capture has taken everything.
func (c *Capture) Done() bool { return c.next == len(c.kgs) }

// Step takes up to about budget records and reports whether the capture
// is done. With a Disk, what it took is committed when it returns.
func (c *Capture) Step(budget int) (bool, error) {
	if c.err != nil {
		return false, c.err
	}
	s := c.s
	for c.next < len(c.kgs) && budget > 0 {
		kg := c.kgs[c.next]
		g := &s.groups[kg]
		if s.disk != nil {
			for g.frozenPos < len(g.frozen) && budget > 0 {
				r := g.frozen[g.frozenPos]
				g.frozen[g.frozenPos] = nil
				g.frozenPos++
				budget--
				if r.dirty && r.capEpoch != c.epoch {
					if c.w.b == nil {
						c.w.b = s.disk.NewBatch()
					}
					s.writeRecord(&c.w, kg, g, r)
					r.capEpoch = c.epoch
				}
			}
			if g.frozenPos < len(g.frozen) {
				break
			}
			g.frozen, g.frozenPos = nil, 0
		} else {
			if g.capNext == nil {
				g.capNext, g.capStop = iter.Pull(records(g))
			}
			for budget > 0 {
				r, ok := g.capNext()
				if !ok {
					g.capStop()
					g.capNext, g.capStop = nil, nil
					break
				}
				budget--
				if r.capEpoch != c.epoch {
					c.take(kg, r)
				}
			}
			if g.capNext != nil {
				break
			}
		}
		g.cap = nil
		c.next++
	}
	if c.w.b != nil {
		b := c.w.b
		c.w.b = nil
		if err := c.commit(b); err != nil {
			return false, err
		}
	}
	return c.Done(), nil
}

// commit commits a batch of written back records; a failure fails the
// capture.
func (c *Capture) commit(b Batch) error {
	if err := b.Commit(); err != nil {
		c.fail(fmt.Errorf("wasmstream: state snapshot: writing back: %w", err))
		return c.err
	}
	return nil
}

// records yields the records of g at the time of each pull; records the
// caller adds or removes between pulls may or may not be yielded.
func records(g *group) iter.Seq[*record] {
	return func(yield func(*record) bool) {
		for st := range g.recs {
			for _, r := range g.recs[st] {
				if !yield(r) {
					return
				}
			}
		}
	}
}

// take emits record r of a Store without a Disk.
func (c *Capture) take(kg uint16, r *record) {
	r.capEpoch = c.epoch
	if r.empty() {
		return
	}
	c.cells = c.s.appendCells(c.cells[:0], r)
	c.emit(kg, r.st, []byte(r.key), c.cells)
}

// cow takes record r of g, which is about to be used, for g's capture.
func (s *Store) cow(kg uint16, g *group, r *record) error {
	c := g.cap
	if s.disk == nil {
		c.take(kg, r)
		return nil
	}
	r.capEpoch = c.epoch
	if !r.dirty {
		return nil
	}
	// Committed now: the record may be evicted and read back before the
	// next Step.
	w := writer{b: s.disk.NewBatch()}
	s.writeRecord(&w, kg, g, r)
	return c.commit(w.b)
}

func (c *Capture) fail(err error) {
	if c.err == nil {
		c.err = err
	}
}

// Abandon stops the capture. The key groups it had not finished are no
// longer captured; with a Disk, their records dirty at the barrier are
// dirty again. Writes stay held until ReleaseWrites of the epoch.
func (c *Capture) Abandon() {
	s := c.s
	for ; c.next < len(c.kgs); c.next++ {
		g := &s.groups[c.kgs[c.next]]
		if g.cap != c {
			continue
		}
		g.cap = nil
		if g.capStop != nil {
			g.capStop()
			g.capNext, g.capStop = nil, nil
		}
		for _, r := range g.frozen[g.frozenPos:] {
			if r.dirty && r.capEpoch != c.epoch {
				g.dirty = append(g.dirty, r)
			}
		}
		g.frozen, g.frozenPos = nil, 0
	}
	c.fail(fmt.Errorf("wasmstream: state snapshot: the capture was abandoned"))
}

// ReleaseWrites ends the hold on writes of the captures of epoch and of
// every earlier epoch.
func (s *Store) ReleaseWrites(epoch uint32) {
	for {
		cur := s.released.Load()
		if epoch <= cur || s.released.CompareAndSwap(cur, epoch) {
			return
		}
	}
}

// Held reports whether writes held for the captures of epoch are still
// held.
func (s *Store) Held(epoch uint32) bool { return epoch > s.released.Load() }

// held reports whether writes of g to the Disk wait for a capture.
func (s *Store) held(g *group) bool {
	return g.cap != nil || s.Held(g.holdEpoch)
}

// appendCells appends the cells of r as a capture or EachRecord gives them:
// the value, the list elements in order, or the map entries by user key.
func (s *Store) appendCells(cells []Cell, r *record) []Cell {
	switch s.states[r.st].desc.Kind {
	case abi.KindValue:
		if r.val != nil {
			cells = append(cells, Cell{Exp: r.val.exp, Value: r.val.v})
		}
	case abi.KindList:
		for _, c := range r.list {
			cells = append(cells, Cell{Exp: c.exp, Value: c.v})
		}
	case abi.KindMap:
		for _, c := range sortedCells(r.m) {
			cells = append(cells, Cell{UserKey: []byte(c.uk), Exp: c.exp, Value: c.v})
		}
	}
	return cells
}
