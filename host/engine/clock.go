package engine

import (
	"sync"
	"time"
)

// Clock is the engine's processing time. It drives processing-time timers,
// the idle-source watermark and process.Env.Now. WallClock is the default;
// ManualClock makes processing time deterministic in tests.
type Clock interface {
	// Now returns the processing time in ms since the Unix epoch.
	Now() int64
	// After returns a channel that is closed once Now() reaches t, and a
	// function that releases the wait when it is no longer needed (calling
	// it after the channel closed is harmless).
	After(t int64) (ch <-chan struct{}, stop func())
}

// WallClock is the real time.
type WallClock struct{}

// Now implements Clock.
func (WallClock) Now() int64 { return time.Now().UnixMilli() }

// After implements Clock.
func (WallClock) After(t int64) (<-chan struct{}, func()) {
	ch := make(chan struct{})
	d := time.Until(time.UnixMilli(t))
	if d <= 0 {
		close(ch)
		return ch, func() {}
	}
	tm := time.AfterFunc(d, func() { close(ch) })
	return ch, func() { tm.Stop() }
}

// ManualClock is a clock that moves only when told to. Waits registered
// with After are released by the Advance or Set call that reaches them.
// It is safe for concurrent use.
type ManualClock struct {
	mu      sync.Mutex
	now     int64
	waiters map[*manualWait]struct{}
}

type manualWait struct {
	t  int64
	ch chan struct{}
}

// NewManualClock returns a clock reading start (ms since the Unix epoch).
func NewManualClock(start int64) *ManualClock {
	return &ManualClock{now: start, waiters: map[*manualWait]struct{}{}}
}

// Now implements Clock.
func (c *ManualClock) Now() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// After implements Clock.
func (c *ManualClock) After(t int64) (<-chan struct{}, func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan struct{})
	if c.now >= t {
		close(ch)
		return ch, func() {}
	}
	w := &manualWait{t: t, ch: ch}
	if c.waiters == nil {
		c.waiters = map[*manualWait]struct{}{}
	}
	c.waiters[w] = struct{}{}
	return ch, func() {
		c.mu.Lock()
		delete(c.waiters, w)
		c.mu.Unlock()
	}
}

// Advance moves the clock forward by d and releases the waits it reaches.
func (c *ManualClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.setLocked(c.now + d.Milliseconds())
}

// Set moves the clock to t (ms since the Unix epoch); a t before the
// current time is ignored, as processing time never goes back.
func (c *ManualClock) Set(t int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.setLocked(t)
}

func (c *ManualClock) setLocked(t int64) {
	if t <= c.now {
		return
	}
	c.now = t
	for w := range c.waiters {
		if w.t <= t {
			close(w.ch)
			delete(c.waiters, w)
		}
	}
}

var (
	_ Clock = WallClock{}
	_ Clock = (*ManualClock)(nil)
)
