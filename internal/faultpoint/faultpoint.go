// Package faultpoint lets crash tests stop a wasmstream process at a named
// point of a durable path, the way a power cut would: the process kills
// itself with SIGKILL, so no deferred function, flush or close runs.
//
// A point is armed through the environment of the process under test:
//
//	WASMSTREAM_FAULTPOINT=checkpoint.after-snapshot:3
//
// kills the process the 3rd time it passes checkpoint.after-snapshot (1 if
// the count is left out). Unarmed, Hit costs one atomic load.
package faultpoint

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
)

// Env is the environment variable that arms a point.
const Env = "WASMSTREAM_FAULTPOINT"

var (
	once  sync.Once
	armed atomic.Bool
	name  string
	left  atomic.Int64
)

func load() {
	v := os.Getenv(Env)
	if v == "" {
		return
	}
	n := int64(1)
	if i := strings.LastIndexByte(v, ':'); i >= 0 {
		c, err := strconv.ParseInt(v[i+1:], 10, 64)
		if err != nil || c < 1 {
			fmt.Fprintf(os.Stderr, "wasmstream: %s=%q: the count after ':' must be a positive integer; fault point not armed\n", Env, v)
			return
		}
		v, n = v[:i], c
	}
	name = v
	left.Store(n)
	armed.Store(true)
}

// Hit kills the process when point is the armed point and its count is
// reached.
func Hit(point string) {
	once.Do(load)
	if !armed.Load() || point != name {
		return
	}
	if left.Add(-1) == 0 {
		fmt.Fprintf(os.Stderr, "wasmstream: fault point %s: killing the process\n", point)
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // SIGKILL is not handled; wait for it to land
	}
}
