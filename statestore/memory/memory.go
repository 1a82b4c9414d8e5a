// Package memory is the in-memory state backend: Go maps per key group and
// state. It is the fastest backend and the reference for the conformance
// suite; its state is lost with the process unless a checkpoint saves it.
//
// It shares its state engine, TTL included, with the Pebble backend
// (statestore/internal/core), without storage under it: Flush does nothing
// and nothing is ever evicted.
package memory

import (
	"github.com/wasmstream/wasmstream/statestore"
	"github.com/wasmstream/wasmstream/statestore/internal/core"
)

// Backend is the in-memory statestore.Backend.
type Backend struct {
	*core.Store
	// groups has one entry per key group: its length is the number of key
	// groups, which the timer storage is sized by.
	groups []struct{}
	timers timerStore
}

var _ statestore.Backend = (*Backend)(nil)

// New returns an empty backend for cfg.
func New(cfg statestore.Config) (*Backend, error) {
	s, err := core.New(core.Options{Config: cfg})
	if err != nil {
		return nil, err
	}
	return &Backend{Store: s, groups: make([]struct{}, cfg.MaxParallelism)}, nil
}

// Close implements statestore.Backend.
func (b *Backend) Close() error { return nil }
