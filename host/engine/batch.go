package engine

import (
	"github.com/wasmstream/wasmstream/abi"
	"github.com/wasmstream/wasmstream/host/process"
)

// arenaChunk is the size of one arena chunk. An event larger than a chunk
// gets a chunk of its own.
const arenaChunk = 64 << 10

// arena hands out byte slices from fixed chunks that are never reallocated,
// so slices handed out earlier stay valid until reset.
type arena struct {
	chunks [][]byte
	cur    int
}

func (a *arena) alloc(n int) []byte {
	for a.cur < len(a.chunks) {
		c := a.chunks[a.cur]
		if cap(c)-len(c) >= n {
			c = c[:len(c)+n]
			a.chunks[a.cur] = c
			return c[len(c)-n : len(c) : len(c)]
		}
		if len(c) == 0 {
			// An empty chunk too small for n: replace it below.
			break
		}
		a.cur++
	}
	size := max(arenaChunk, n)
	c := make([]byte, n, size)
	if a.cur < len(a.chunks) {
		a.chunks[a.cur] = c
	} else {
		a.chunks = append(a.chunks, c)
	}
	return c[:n:n]
}

func (a *arena) copy(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	d := a.alloc(len(b))
	copy(d, b)
	return d
}

func (a *arena) copyString(s string) []byte {
	if len(s) == 0 {
		return nil
	}
	d := a.alloc(len(s))
	copy(d, s)
	return d
}

func (a *arena) reset() {
	for i := range a.chunks {
		a.chunks[i] = a.chunks[i][:0]
	}
	a.cur = 0
}

// batch is a worker's unit of work: events with their bytes in the arena.
type batch struct {
	n      int
	events []process.Event
	fields []abi.Field
	arena  arena
	// marked is set by the linger ticker when it sees the batch non-empty;
	// a marked batch still pending at the next tick is sent.
	marked bool
	// wm is the source's watermark when the batch was sent, wmSeq the
	// sequence of the event that set it. The worker applies it after the
	// batch's events. A batch without events only carries a watermark.
	wm    int64
	wmSeq uint64
	// barrier, when set, is a checkpoint barrier the worker handles after
	// the batch's events, watermark and timers.
	barrier *barrier
}

func newBatch(size, nfields int) *batch {
	return &batch{
		events: make([]process.Event, size),
		fields: make([]abi.Field, size*nfields),
	}
}

func (b *batch) reset() {
	clear(b.events[:b.n])
	b.n = 0
	b.marked = false
	b.barrier = nil
	b.arena.reset()
}
