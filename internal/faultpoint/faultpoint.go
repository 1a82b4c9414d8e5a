// Package faultpoint lets crash tests stop a wasmstream process at a named
// point of a durable path, the way a power cut would: the process kills
// itself with SIGKILL, so no deferred function, flush or close runs.
//
// A point is armed through the environment of the process under test:
//
//	WASMSTREAM_FAULTPOINT=checkpoint.after-snapshot:3
//
// kills the process the 3rd time it passes checkpoint.after-snapshot (1 if
// the count is left out). In-process tests instead set a function that Hit
// calls at a point (OnHit). Unarmed, Hit costs a few atomic loads.
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

	hooked atomic.Bool
	hookMu sync.Mutex
	hooks  map[string]func()
)

// OnHit makes Hit call f each time the process passes point, in the
// goroutine that passes it, which waits for f. It is for tests that run
// wasmstream in their own process and need to act at a point (take a
// server down, say) rather than die there: call the returned function to
// remove f.
func OnHit(point string, f func()) (remove func()) {
	hookMu.Lock()
	defer hookMu.Unlock()
	if hooks == nil {
		hooks = map[string]func(){}
	}
	hooks[point] = f
	hooked.Store(true)
	return func() {
		hookMu.Lock()
		defer hookMu.Unlock()
		delete(hooks, point)
		hooked.Store(len(hooks) > 0)
	}
}

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

// Hit calls the function OnHit set for point, if any, then kills the
// process when point is the armed point and its count is reached.
func Hit(point string) {
	if hooked.Load() {
		hookMu.Lock()
		f := hooks[point]
		hookMu.Unlock()
		if f != nil {
			f()
		}
	}
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
