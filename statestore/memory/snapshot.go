package memory

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/wasmstream/wasmstream/abi"
	"github.com/wasmstream/wasmstream/statestore"
	"github.com/wasmstream/wasmstream/statestore/internal/core"
)

// Snapshots
//
// A capture (Snapshot.Capture) notes the event time of each key group and
// the list of its live timers, whose ids never change, and starts the
// state engine's copy-on-write capture of its records; each Step then
// serialises a share of the records into memory. Write sorts and encodes
// the timers and stores the one file while the workers go on.
//
// # Durable format, version 1
//
// This format is durable. Backwards incompatible changes are gated behind a
// new format version: Restore refuses a version it does not know, naming the
// version found and the one supported. A snapshot is one file, SnapshotFile:
//
//	magic     "WSMEMSNP"
//	version   uvarint (1)
//	maxpar    uvarint, the number of key groups
//	hash      string, statestore.KeyGroupHash
//	nstates   uvarint, then per state: string "name:kind"
//	nsections uvarint, then per non-empty key group:
//	  kg      uint16 big-endian
//	  len     uvarint, the payload's length
//	  payload
//	  crc     uint32 big-endian, CRC-32C (Castagnoli) of the payload
//
// where a string is a uvarint length and the bytes. A key group's payload:
//
//	eventtime  varint, the event time the key group last had (ms)
//	nrecords   uvarint, then per record, in no particular order:
//	  st       uvarint, the state id
//	  key      string
//	  ncells   uvarint, then per cell (the value, the list elements in
//	           order, or the map entries by user key):
//	    userkey  string (empty but for map entries)
//	    expiry   varint, ms in the state's TTL time domain; 0 = none
//	    value    string
//	ntimers    uvarint, then per timer, in firing order per domain:
//	  domain   byte (abi.TimeDomainEvent or abi.TimeDomainProcessing)
//	  time     varint (ms)
//	  key      string
//	  payload  string
//
// The file's size and SHA-256 are in the snapshot handle; the CRC of each
// section names the key group a damaged file lost.

// SnapshotFormat is the version of the snapshot format this package writes
// and the only one it restores.
const SnapshotFormat = 1

// SnapshotFile is the name of a memory snapshot's one file.
const SnapshotFile = "memory.wsm"

// BackendKind is the name of this backend in snapshot handles.
const BackendKind = "memory"

const snapshotMagic = "WSMEMSNP"

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

var _ statestore.Snapshotter = (*Backend)(nil)

// Snapshot implements statestore.Snapshotter.
func (b *Backend) Snapshot() (statestore.Snapshot, error) {
	return &snapshot{b: b, epoch: b.NewEpoch(), sections: make([]*section, len(b.groups))}, nil
}

type snapshot struct {
	b        *Backend
	epoch    uint32
	sections []*section // by key group; nil: not captured
	mu       sync.Mutex
	caps     []*capture
	released bool
}

// section is one key group of a snapshot: the event time at the barrier,
// its records as the capture serialised them, and its live timers per
// domain (event time, processing time), unsorted.
type section struct {
	kg        uint16
	eventTime int64
	nrec      int
	recs      []byte
	timers    [2][]*timerItem
}

// snapshotDomains are the timer domains of a section, in file order.
var snapshotDomains = [2]int{abi.TimeDomainEvent, abi.TimeDomainProcessing}

// capture takes the records of its key groups, then their timers.
type capture struct {
	c     *core.Capture
	heaps []*timerHeap // per key group, each domain of snapshotDomains
	next  int          // heaps[next:] are not all taken
	done  atomic.Bool
}

// Capture implements statestore.Snapshot.
func (s *snapshot) Capture(kgs []uint16) (statestore.Capture, error) {
	b := s.b
	if kgs == nil {
		kgs = statestore.AllKeyGroups(len(b.groups))
	}
	for _, kg := range kgs {
		if int(kg) >= len(b.groups) {
			return nil, fmt.Errorf("wasmstream: snapshot of key group %d: the backend has %d key groups", kg, len(b.groups))
		}
		if s.sections[kg] != nil {
			return nil, fmt.Errorf("wasmstream: key group %d is captured twice in one snapshot", kg)
		}
	}
	secs := make([]section, len(kgs))
	sections := s.sections
	heaps := make([]*timerHeap, 0, len(snapshotDomains)*len(kgs))
	for i, kg := range kgs {
		secs[i].kg, secs[i].eventTime = kg, b.EventTime(kg)
		for _, dom := range snapshotDomains {
			h, err := b.timerHeap(kg, dom)
			if err != nil {
				return nil, err
			}
			heaps = append(heaps, h)
		}
	}
	c, err := b.BeginCapture(s.epoch, slices.Clone(kgs), func(kg uint16, st int, key []byte, cells []core.Cell) {
		sec := sections[kg]
		sec.nrec++
		p := binary.AppendUvarint(sec.recs, uint64(st))
		p = appendString(p, key)
		p = binary.AppendUvarint(p, uint64(len(cells)))
		for _, c := range cells {
			p = appendString(p, c.UserKey)
			p = binary.AppendVarint(p, c.Exp)
			p = appendString(p, c.Value)
		}
		sec.recs = p
	})
	if err != nil {
		return nil, err
	}
	for i, kg := range kgs {
		s.sections[kg] = &secs[i]
		for d := range snapshotDomains {
			heaps[i*len(snapshotDomains)+d].beginCapture(s.epoch, &secs[i].timers[d])
		}
	}
	cp := &capture{c: c, heaps: heaps}
	s.mu.Lock()
	s.caps = append(s.caps, cp)
	s.mu.Unlock()
	return cp, nil
}

// Step implements statestore.Capture.
func (c *capture) Step(budget int) (bool, error) {
	if !c.c.Done() {
		done, err := c.c.Step(budget)
		if err != nil || !done {
			return false, err
		}
	}
	for c.next < len(c.heaps) && budget > 0 {
		n, done := c.heaps[c.next].stepCapture(budget)
		budget -= max(n, 1)
		if done {
			c.next++
		}
	}
	if c.next < len(c.heaps) {
		return false, nil
	}
	c.done.Store(true)
	return true, nil
}

// Abandon implements statestore.Capture.
func (c *capture) Abandon() {
	c.c.Abandon()
	for ; c.next < len(c.heaps); c.next++ {
		c.heaps[c.next].endCapture()
	}
}

// encode returns the snapshot file.
func (s *snapshot) encode() []byte {
	names := statestore.StateNames(s.b.States())
	out := []byte(snapshotMagic)
	out = binary.AppendUvarint(out, SnapshotFormat)
	out = binary.AppendUvarint(out, uint64(len(s.sections)))
	out = appendString(out, []byte(statestore.KeyGroupHash))
	out = binary.AppendUvarint(out, uint64(len(names)))
	for _, n := range names {
		out = appendString(out, []byte(n))
	}
	var secs []*section
	for _, sec := range s.sections {
		if sec != nil && (sec.nrec > 0 || len(sec.timers[0])+len(sec.timers[1]) > 0 || sec.eventTime != 0) {
			secs = append(secs, sec)
		}
	}
	out = binary.AppendUvarint(out, uint64(len(secs)))
	var p []byte
	for _, sec := range secs {
		p = binary.AppendVarint(p[:0], sec.eventTime)
		p = binary.AppendUvarint(p, uint64(sec.nrec))
		p = append(p, sec.recs...)
		p = binary.AppendUvarint(p, uint64(len(sec.timers[0])+len(sec.timers[1])))
		for i, d := range snapshotDomains {
			items := sec.timers[i]
			slices.SortFunc(items, func(x, y *timerItem) int { return compareID(&x.id, &y.id) })
			for _, it := range items {
				p = append(p, byte(d))
				p = binary.AppendVarint(p, it.id.time)
				p = binary.AppendUvarint(p, uint64(len(it.id.key)))
				p = append(p, it.id.key...)
				p = binary.AppendUvarint(p, uint64(len(it.id.payload)))
				p = append(p, it.id.payload...)
			}
		}
		out = binary.BigEndian.AppendUint16(out, sec.kg)
		out = binary.AppendUvarint(out, uint64(len(p)))
		out = append(out, p...)
		out = binary.BigEndian.AppendUint32(out, crc32.Checksum(p, castagnoli))
	}
	return out
}

func appendString(dst, s []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// Write implements statestore.Snapshot.
func (s *snapshot) Write(ctx context.Context, t statestore.SnapshotTarget) (statestore.SnapshotHandle, error) {
	if s.released {
		return statestore.SnapshotHandle{}, fmt.Errorf("wasmstream: memory snapshot written after Release")
	}
	s.mu.Lock()
	caps := slices.Clone(s.caps)
	s.mu.Unlock()
	if len(caps) == 0 {
		return statestore.SnapshotHandle{}, fmt.Errorf("wasmstream: memory snapshot written before any key group was captured")
	}
	for _, c := range caps {
		if !c.done.Load() {
			return statestore.SnapshotHandle{}, fmt.Errorf("wasmstream: memory snapshot written before its captures are done")
		}
	}
	var kgs []uint16
	for kg, sec := range s.sections {
		if sec != nil {
			kgs = append(kgs, uint16(kg))
		}
	}
	f, err := t.Write(ctx, SnapshotFile, false, bytes.NewReader(s.encode()))
	if err != nil {
		return statestore.SnapshotHandle{}, err
	}
	return statestore.SnapshotHandle{
		Backend:        BackendKind,
		Format:         SnapshotFormat,
		MaxParallelism: len(s.b.groups),
		KeyGroups:      statestore.KeyGroupRanges(kgs),
		States:         statestore.StateNames(s.b.States()),
		Files:          []statestore.FileHandle{f},
	}, nil
}

// Release implements statestore.Snapshot.
func (s *snapshot) Release() error {
	s.released = true
	s.sections = nil
	return nil
}

// Restore returns a new backend for cfg holding the state and timers of the
// snapshot h, read through src. To restore several snapshots (of distinct
// key groups, as workers take them), call Backend.Restore for each.
func Restore(ctx context.Context, cfg statestore.Config, h statestore.SnapshotHandle, src statestore.SnapshotSource) (*Backend, error) {
	b, err := New(cfg)
	if err != nil {
		return nil, err
	}
	if err := b.Restore(ctx, h, src); err != nil {
		return nil, err
	}
	return b, nil
}

// Restore adds the state and timers of the snapshot h, read through src, to
// b. The key groups h covers should be empty in b: restored values replace
// what b holds, restored list elements are appended. No call on those key
// groups may run concurrently. When it fails, b may hold part of the
// snapshot: discard it.
func (b *Backend) Restore(ctx context.Context, h statestore.SnapshotHandle, src statestore.SnapshotSource) error {
	if h.Backend != BackendKind {
		return fmt.Errorf("wasmstream: a %q snapshot cannot be restored into the memory backend: restore it with the %s backend (state.backend)", h.Backend, h.Backend)
	}
	if h.Format != SnapshotFormat {
		return fmt.Errorf("wasmstream: memory snapshot format version %d; this wasmstream restores version %d only: restore it with the wasmstream that wrote it", h.Format, SnapshotFormat)
	}
	if h.MaxParallelism != len(b.groups) {
		return fmt.Errorf("wasmstream: the snapshot has %d key groups (max_parallelism), the job has %d: keys would land in other key groups; keep max_parallelism %d", h.MaxParallelism, len(b.groups), h.MaxParallelism)
	}
	if err := statestore.CheckStates(h.States, statestore.StateNames(b.States())); err != nil {
		return err
	}
	if len(h.Files) != 1 {
		return fmt.Errorf("%w: a memory snapshot has one file, the handle names %d", statestore.ErrSnapshotCorrupt, len(h.Files))
	}
	f := h.Files[0]
	rc, err := src.Open(ctx, f)
	if err != nil {
		return err
	}
	defer rc.Close()
	// Read it whole first: the source checks the checksum at the end, and
	// nothing is restored from a damaged file.
	data, err := io.ReadAll(bufio.NewReader(rc))
	if err != nil {
		return err
	}
	if err := b.decode(data, h.States); err != nil {
		return fmt.Errorf("%w: %s: %v", statestore.ErrSnapshotCorrupt, f.Name, err)
	}
	return nil
}

// decoder reads the snapshot format; the first error sticks.
type decoder struct {
	p   []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf(format, args...)
	}
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.p)
	if n <= 0 {
		d.fail("truncated number")
		return 0
	}
	d.p = d.p[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.p)
	if n <= 0 {
		d.fail("truncated number")
		return 0
	}
	d.p = d.p[n:]
	return v
}

func (d *decoder) bytes(n uint64) []byte {
	if d.err != nil {
		return nil
	}
	if uint64(len(d.p)) < n {
		d.fail("truncated: %d bytes wanted, %d left", n, len(d.p))
		return nil
	}
	v := d.p[:n:n]
	d.p = d.p[n:]
	return v
}

func (d *decoder) string() []byte { return d.bytes(d.uvarint()) }

func (b *Backend) decode(data []byte, handleStates []string) error {
	d := &decoder{p: data}
	if string(d.bytes(uint64(len(snapshotMagic)))) != snapshotMagic {
		return fmt.Errorf("not a wasmstream memory snapshot")
	}
	if v := d.uvarint(); d.err == nil && v != SnapshotFormat {
		return fmt.Errorf("format version %d, this wasmstream reads version %d only", v, SnapshotFormat)
	}
	if mp := d.uvarint(); d.err == nil && mp != uint64(len(b.groups)) {
		return fmt.Errorf("written with %d key groups, the backend has %d", mp, len(b.groups))
	}
	if h := d.string(); d.err == nil && string(h) != statestore.KeyGroupHash {
		return fmt.Errorf("key group hash %q, this wasmstream uses %q", h, statestore.KeyGroupHash)
	}
	ns := d.uvarint()
	var stored []string
	for i := uint64(0); i < ns && d.err == nil; i++ {
		stored = append(stored, string(d.string()))
	}
	if d.err != nil {
		return d.err
	}
	if !slices.Equal(stored, handleStates) {
		return fmt.Errorf("the file's states %q differ from the handle's %q", stored, handleStates)
	}
	nsec := d.uvarint()
	for i := uint64(0); i < nsec && d.err == nil; i++ {
		kgb := d.bytes(2)
		payload := d.string()
		sum := d.bytes(4)
		if d.err != nil {
			break
		}
		kg := binary.BigEndian.Uint16(kgb)
		if int(kg) >= len(b.groups) {
			return fmt.Errorf("section of key group %d, the backend has %d", kg, len(b.groups))
		}
		if crc32.Checksum(payload, castagnoli) != binary.BigEndian.Uint32(sum) {
			return fmt.Errorf("key group %d: checksum mismatch", kg)
		}
		if err := b.restoreGroup(kg, payload, len(stored)); err != nil {
			return fmt.Errorf("key group %d: %v", kg, err)
		}
	}
	if d.err == nil && len(d.p) != 0 {
		d.fail("%d bytes after the last section", len(d.p))
	}
	return d.err
}

func (b *Backend) restoreGroup(kg uint16, payload []byte, nstates int) error {
	d := &decoder{p: payload}
	var kinds []abi.StateKind
	for _, sd := range b.States() {
		kinds = append(kinds, sd.Kind)
	}
	b.SetEventTime(kg, d.varint())
	nrec := d.uvarint()
	var cells []core.Cell
	for range nrec {
		st := d.uvarint()
		key := d.string()
		nc := d.uvarint()
		if d.err != nil {
			break
		}
		if st >= uint64(nstates) {
			return fmt.Errorf("state id %d, the snapshot has %d states", st, nstates)
		}
		cells = cells[:0]
		for range nc {
			uk := d.string()
			exp := d.varint()
			v := d.string()
			if d.err != nil {
				break
			}
			if kinds[st] != abi.KindMap {
				uk = nil
			}
			cells = append(cells, core.Cell{UserKey: uk, Exp: exp, Value: v})
		}
		if d.err != nil {
			break
		}
		if err := b.RestoreRecord(kg, int(st), key, cells); err != nil {
			return err
		}
	}
	nt := d.uvarint()
	for range nt {
		dom := d.bytes(1)
		tm := d.varint()
		key := d.string()
		pl := d.string()
		if d.err != nil {
			break
		}
		t := statestore.Timer{Domain: int(dom[0]), Time: tm, Key: key, Payload: pl}
		if _, err := b.RegisterTimer(kg, t); err != nil {
			return err
		}
	}
	if d.err == nil && len(d.p) != 0 {
		d.fail("%d bytes after the timers", len(d.p))
	}
	return d.err
}
