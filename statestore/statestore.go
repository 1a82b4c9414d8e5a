// Package statestore defines the keyed state backend: value, list and map
// state addressed by key group, state id, key and (for maps) user key.
//
// # Addressing
//
// Every call names a key group (hash(key) mod max parallelism), a state id
// (the index of the state in the plugin's contract), the key, and for map
// state the user key. A key group is owned by exactly one worker, so a
// backend must allow concurrent calls for distinct key groups and need not
// synchronise calls within one key group.
//
// # Ownership of bytes
//
// Arguments may be reused by the caller after a call returns: a backend that
// keeps them copies them. Returned slices are valid until the next call on
// the same key group.
//
// # Time and TTL
//
// A state may have a time-to-live (abi.StateDesc.TTL), as Flink's
// StateTtlConfig: every value, list element and map entry carries the time
// it expires, set when it is written (and, with update on_read_and_write,
// when it is read). Processing time comes from Config.Clock; event time is
// the time the owner of a key group last gave SetEventTime for it (the
// timestamp of the event being processed). An expired entry is removed when
// it is read, by the incremental cleanup each call on its key group performs,
// and by CleanupExpired; each removal follows an index ordered by expiry
// time, so cleanup visits what has expired and nothing else.
//
// # Flush, Close and concurrency
//
// Flush and Close must not run concurrently with any other call: the owner
// of the backend quiesces the workers first (as a checkpoint barrier does).
package statestore

import (
	"errors"
	"time"

	"github.com/wasmstream/wasmstream/abi"
)

// ErrNotNumber is returned by the Add operations when the stored value is not
// 8 bytes long.
var ErrNotNumber = errors.New("wasmstream: stored value is not an 8-byte number")

// Backend is a keyed state backend.
type Backend interface {
	// Value state.
	Get(kg uint16, st int, key []byte) ([]byte, bool, error)
	Put(kg uint16, st int, key, value []byte) error
	Delete(kg uint16, st int, key []byte) error
	// AddInt64 adds delta to the little-endian int64 value (absent = 0)
	// and returns the new value.
	AddInt64(kg uint16, st int, key []byte, delta int64) (int64, error)
	AddFloat64(kg uint16, st int, key []byte, delta float64) (float64, error)

	// List state. ListAppendTo appends the list, encoded as abi items,
	// to dst.
	ListAppendTo(dst []byte, kg uint16, st int, key []byte) ([]byte, error)
	ListAdd(kg uint16, st int, key, item []byte) error
	// ListAddAll appends the abi-encoded items.
	ListAddAll(kg uint16, st int, key, encoded []byte) error
	// ListReplace replaces the list with the abi-encoded items.
	ListReplace(kg uint16, st int, key, encoded []byte) error
	ListClear(kg uint16, st int, key []byte) error

	// Map state.
	MapGet(kg uint16, st int, key, userKey []byte) ([]byte, bool, error)
	MapPut(kg uint16, st int, key, userKey, value []byte) error
	MapDelete(kg uint16, st int, key, userKey []byte) error
	MapContains(kg uint16, st int, key, userKey []byte) (bool, error)
	MapAddInt64(kg uint16, st int, key, userKey []byte, delta int64) (int64, error)
	MapAddFloat64(kg uint16, st int, key, userKey []byte, delta float64) (float64, error)
	// MapAppendTo appends the map's keys, values or entries (abi.IterKeys,
	// IterValues, IterEntries) as abi items, sorted by user key.
	MapAppendTo(dst []byte, kg uint16, st int, key []byte, what int) ([]byte, error)
	MapIsEmpty(kg uint16, st int, key []byte) (bool, error)
	MapClear(kg uint16, st int, key []byte) error

	// SetEventTime sets the event time, in ms since the Unix epoch, that
	// TTL of event-time states uses in later calls on key group kg. The
	// owner of kg calls it before the state calls of each event.
	SetEventTime(kg uint16, ms int64)
	// SetWatermark tells key group kg the event-time watermark, in ms.
	// Event-time TTL is cleaned up by it: CleanupExpired, which the owner
	// calls between events and timers, removes entries that expired at or
	// before the watermark; the cleanup on access also waits for the time
	// last given to SetEventTime, so a timer firing at or before the
	// watermark sees what its own time allows. An out-of-order event that
	// is still on time (after the watermark) thus never misses an entry its
	// own time allows. The watermark never moves back; before the first
	// call nothing of an event-time state is cleaned up.
	SetWatermark(kg uint16, ms int64)
	// CleanupExpired removes up to limit expired entries of key group kg,
	// earliest expiry first, and returns how many it removed. Its cost is
	// proportional to what has expired. Only the owner of kg may call it.
	CleanupExpired(kg uint16, limit int) (int, error)

	// Stats reports, per state id, what the state holds and how the backend
	// served it.
	Stats() []StateStats
	// Flush makes every write so far durable (a no-op for a backend without
	// storage). A checkpoint calls it before copying the state.
	Flush() error
	// Close flushes and releases the backend.
	Close() error
}

// StateStats counts what one state holds and how the backend served it.
type StateStats struct {
	Name string
	// Keys is the number of keys with a value, a non-empty list or a
	// non-empty map; Bytes the key, user key and value bytes they hold.
	Keys  int64
	Bytes int64
	// CacheHits and CacheMisses count the calls a backend with a cache in
	// front of its storage served from memory or had to read storage for.
	// Both stay 0 for a backend without storage.
	CacheHits   int64
	CacheMisses int64
	// Expired counts the values, list elements and map entries removed
	// because their TTL expired; ExpiryVisited counts the entries the
	// expiry cleanup examined to find them (stale index entries included).
	Expired       int64
	ExpiryVisited int64
}

// HitRatio is CacheHits / (CacheHits + CacheMisses), or 1 with no calls.
func (s StateStats) HitRatio() float64 {
	if n := s.CacheHits + s.CacheMisses; n > 0 {
		return float64(s.CacheHits) / float64(n)
	}
	return 1
}

// Config describes what a backend stores: the plugin's states and the
// number of key groups, and where processing time comes from.
type Config struct {
	States         []abi.StateDesc
	MaxParallelism int
	// Clock returns the processing time in ms since the Unix epoch; nil
	// means the system clock.
	Clock func() int64
}

// Now returns cfg's processing time.
func (cfg *Config) Now() int64 {
	if cfg.Clock != nil {
		return cfg.Clock()
	}
	return time.Now().UnixMilli()
}

// ErrBadState is returned when a state id is out of range or names a state
// of another kind than the call expects.
var ErrBadState = errors.New("wasmstream: no such state of that kind")
