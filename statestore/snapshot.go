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
// A checkpoint saves a backend's state and timers in two steps, as Flink's
// snapshots do:
//
//  1. Snapshotter.Snapshot, the synchronous part, runs at the barrier while
//     no call on the key groups it covers is in progress: it writes back the
//     write-back cache and captures a consistent view of the state (the
//     memory backend serialises it, the Pebble backend flushes its memtable
//     and hard-links its files). It is short, so processing resumes quickly.
//  2. Snapshot.Write, the asynchronous part, runs while processing goes on:
//     it stores the captured files through a SnapshotTarget (the checkpoint
//     store) and returns the SnapshotHandle the checkpoint metadata keeps.
//
// Restoring is backend specific (memory.Restore, pebble.Restore): it reads
// the files a handle names through a SnapshotSource, which checks their
// sizes and SHA-256 checksums.

// Snapshotter is a backend whose state and timers a checkpoint can save.
type Snapshotter interface {
	// Snapshot captures the state and timers of the key groups kgs (nil:
	// all of them) as they are now. No call on those key groups may be in
	// progress or start before it returns; a backend may require more (the
	// Pebble backend snapshots all key groups at once and needs every call
	// quiesced, as Flush does).
	Snapshot(kgs []uint16) (Snapshot, error)
}

// Snapshot is a captured view of a backend, waiting to be written.
type Snapshot interface {
	// Write stores the snapshot's files through t and returns the handle
	// that finds them again. It may run concurrently with calls on the
	// backend. Call it at most once.
	Write(ctx context.Context, t SnapshotTarget) (SnapshotHandle, error)
	// Release frees what the snapshot holds (a copy of the state, a
	// directory of hard links). Call it once, after Write or instead of it.
	Release() error
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
