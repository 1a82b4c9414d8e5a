package statestore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/wasmstream/wasmstream/abi"
)

// Snapshots
//
// A checkpoint saves a backend's state and timers in three steps, as
// Flink's snapshots do, without stopping processing for more than a moment:
//
//  1. Snapshotter.Snapshot begins a snapshot, before the barrier reaches
//     the workers.
//  2. At the barrier, the owner of each key group (the worker that calls
//     the backend for it) calls Snapshot.Capture for its key groups: it
//     marks what is to be captured, in time proportional to the number of
//     key groups, and returns. The owner then calls Capture.Step between its
//     other calls until the capture is done; a record it uses that the
//     capture has not taken yet is taken first (copy-on-write), so the
//     snapshot holds each key group as it was at the owner's barrier. The
//     memory backend serialises the records; the Pebble backend writes back
//     the records that were dirty at the barrier and holds later writes back
//     from its database until the snapshot is written.
//  3. Snapshot.Write, once every capture is done, stores the snapshot's
//     files through a SnapshotTarget (the checkpoint store) while
//     processing goes on, and returns the SnapshotHandle the checkpoint
//     metadata keeps. The Pebble backend first flushes its memtable and
//     hard-links its files, then lets the held writes go.
//
// TakeSnapshot does all three for a backend no one else is calling.
//
// Restoring is backend specific (memory.Restore, pebble.Restore): it reads
// the files a handle names through a SnapshotSource, which checks their
// sizes and SHA-256 checksums.

// Snapshotter is a backend whose state and timers a checkpoint can save.
type Snapshotter interface {
	// Snapshot begins a snapshot. One snapshot at a time: Release or
	// Write the previous one first.
	Snapshot() (Snapshot, error)
}

// Snapshot is a snapshot of a backend in progress.
type Snapshot interface {
	// Capture starts capturing the state and timers of key groups kgs
	// (nil: all of them) as they are now. Call it on the goroutine that
	// calls the backend for those key groups, between two calls, then
	// Step the capture on that goroutine until it is done. Captures of
	// distinct key groups may run concurrently. A backend may require
	// every key group to be captured before Write (Pebble does).
	Capture(kgs []uint16) (Capture, error)
	// Write stores the snapshot's files through t and returns the handle
	// that finds them again. Every capture must be done. It may run
	// concurrently with calls on the backend. Call it at most once.
	Write(ctx context.Context, t SnapshotTarget) (SnapshotHandle, error)
	// Release frees what the snapshot holds and ends its effects on the
	// backend. Call it once, after Write or instead of it; captures not
	// done must be abandoned (Capture.Abandon) first, on their goroutines.
	Release() error
}

// Capture is the capture of some key groups for a snapshot.
type Capture interface {
	// Step captures up to about budget records and reports whether the
	// capture is done.
	Step(budget int) (bool, error)
	// Abandon stops a capture that is not done; the snapshot can then
	// only be released.
	Abandon()
}

// TakeSnapshot snapshots key groups kgs (nil: all) of a backend no one else
// calls meanwhile: Snapshot, Capture and every Step at once.
func TakeSnapshot(sn Snapshotter, kgs []uint16) (Snapshot, error) {
	s, err := sn.Snapshot()
	if err != nil {
		return nil, err
	}
	c, err := s.Capture(kgs)
	if err != nil {
		_ = s.Release()
		return nil, err
	}
	for {
		done, err := c.Step(1 << 20)
		if err != nil {
			c.Abandon()
			_ = s.Release()
			return nil, err
		}
		if done {
			return s, nil
		}
	}
}

// SnapshotTarget stores the files of a snapshot. It is safe for concurrent
// use.
type SnapshotTarget interface {
	// Known returns the handle of the shared file name when the target
	// already holds it for a checkpoint it keeps: the snapshot refers to it
	// instead of writing it again. Shared names identify content: two
	// different files never get the same shared name.
	Known(name string) (FileHandle, bool)
	// Write stores the content of r as file name, shared between
	// checkpoints or private to this one, and returns its handle with its
	// size and SHA-256 checksum.
	Write(ctx context.Context, name string, shared bool, r io.Reader) (FileHandle, error)
}

// SnapshotSource reads the files of a stored snapshot.
type SnapshotSource interface {
	// Open returns the content of f. Reading it to the end fails with an
	// error wrapping ErrSnapshotCorrupt when the content's size or SHA-256
	// checksum differs from f's.
	Open(ctx context.Context, f FileHandle) (io.ReadCloser, error)
}

// ErrSnapshotCorrupt is wrapped by the errors that report a snapshot file
// whose content does not match its handle, or that cannot be decoded.
var ErrSnapshotCorrupt = errors.New("wasmstream: snapshot file is damaged")

// FileHandle names a stored snapshot file and the content it must have.
type FileHandle struct {
	// Name is the file's name: within the checkpoint's part for a private
	// file, within the shared area for a shared one.
	Name string `json:"name"`
	// Shared marks a file that checkpoints share (an immutable Pebble
	// table): it is stored once and kept while a checkpoint refers to it.
	Shared bool `json:"shared,omitempty"`
	// Local is the file's name in the backend's directory when it differs
	// from Name.
	Local  string `json:"local,omitempty"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"` // lower-case hex
}

// LocalName returns the name the file has in a backend's directory.
func (f FileHandle) LocalName() string {
	if f.Local != "" {
		return f.Local
	}
	return f.Name
}

// SnapshotHandle describes a stored snapshot of a backend, or of a part of
// one: what it covers and the files that hold it. Checkpoint metadata keeps
// it as JSON.
type SnapshotHandle struct {
	// Backend is the kind of backend that wrote it: "memory" or "pebble".
	Backend string `json:"backend"`
	// Format is the version of the backend's snapshot format.
	Format int `json:"format"`
	// MaxParallelism is the number of key groups of the backend.
	MaxParallelism int `json:"max_parallelism"`
	// KeyGroups are the key groups the snapshot holds.
	KeyGroups []KeyGroupRange `json:"key_groups"`
	// States are the backend's states, "name:kind", by state id.
	States []string `json:"states"`
	// Instance identifies the Pebble database that wrote the snapshot.
	Instance string `json:"instance,omitempty"`
	// Files are the snapshot's files.
	Files []FileHandle `json:"files"`
}

// Size returns the bytes of the snapshot's files.
func (h *SnapshotHandle) Size() int64 {
	var n int64
	for _, f := range h.Files {
		n += f.Size
	}
	return n
}

// KeyGroupRange is the key groups First..Last, both included.
type KeyGroupRange struct {
	First uint16 `json:"first"`
	Last  uint16 `json:"last"`
}

// KeyGroupRanges returns sorted kgs as ranges of consecutive key groups.
func KeyGroupRanges(kgs []uint16) []KeyGroupRange {
	s := slices.Clone(kgs)
	slices.Sort(s)
	s = slices.Compact(s)
	var out []KeyGroupRange
	for _, kg := range s {
		if n := len(out); n > 0 && out[n-1].Last+1 == kg {
			out[n-1].Last = kg
			continue
		}
		out = append(out, KeyGroupRange{kg, kg})
	}
	return out
}

// AllKeyGroups returns the key groups 0..maxParallelism-1.
func AllKeyGroups(maxParallelism int) []uint16 {
	kgs := make([]uint16, maxParallelism)
	for i := range kgs {
		kgs[i] = uint16(i)
	}
	return kgs
}

// ExpandKeyGroups returns the key groups of rs, in order.
func ExpandKeyGroups(rs []KeyGroupRange) []uint16 {
	var kgs []uint16
	for _, r := range rs {
		for kg := int(r.First); kg <= int(r.Last); kg++ {
			kgs = append(kgs, uint16(kg))
		}
	}
	return kgs
}

// StateNames returns states as "name:kind", the form snapshot handles and
// durable formats record them in.
func StateNames(states []abi.StateDesc) []string {
	out := make([]string, len(states))
	for i, s := range states {
		out[i] = s.Name + ":" + string(s.Kind)
	}
	return out
}

// CheckStates checks that a snapshot taken with the states stored (by id,
// "name:kind") can be restored for a plugin declaring now: states may only
// be added at the end, never renamed, reordered or changed in kind.
func CheckStates(stored, now []string) error {
	for i, o := range stored {
		if i >= len(now) {
			return fmt.Errorf("wasmstream: the snapshot holds state %d %q the plugin no longer declares: states may only be added at the end", i, o)
		}
		if now[i] != o {
			return fmt.Errorf("wasmstream: the snapshot holds state %d as %q, the plugin declares %q: states may only be added at the end, never renamed, reordered or changed in kind", i, o, now[i])
		}
	}
	return nil
}
