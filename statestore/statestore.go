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
package statestore

import (
	"errors"

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

	// Stats reports the number of keys and bytes held, per state id.
	Stats() []StateStats
	Close() error
}

// StateStats counts what one state holds.
type StateStats struct {
	Name  string
	Keys  int64
	Bytes int64
}

// Config describes what a backend stores: the plugin's states and the
// number of key groups.
type Config struct {
	States         []abi.StateDesc
	MaxParallelism int
}

// ErrBadState is returned when a state id is out of range or names a state
// of another kind than the call expects.
var ErrBadState = errors.New("wasmstream: no such state of that kind")
