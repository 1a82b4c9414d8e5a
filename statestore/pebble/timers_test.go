package pebble_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/wasmstream/wasmstream/abi"
	"github.com/wasmstream/wasmstream/statestore"
	"github.com/wasmstream/wasmstream/statestore/pebble"
	"github.com/wasmstream/wasmstream/statestore/statestoretest"
)

func timerStrings(ts []statestore.Timer) []string {
	var out []string
	for _, t := range ts {
		out = append(out, fmt.Sprintf("%d@%d/%q/%q", t.Domain, t.Time, t.Key, t.Payload))
	}
	return out
}

// TestTimersCheckpoint checks that timers registered before Flush are in a
// checkpoint taken after it, with their count.
func TestTimersCheckpoint(t *testing.T) {
	clock := statestoretest.NewClock(0)
	for _, o := range []pebble.Options{{}, {TimerBatchBytes: 1, TimerCacheBytes: 1}} {
		b := openDir(t, t.TempDir(), states, clock, o)
		ev := abi.TimeDomainEvent
		for i := range 100 {
			k := fmt.Appendf(nil, "k%d", i)
			if _, err := b.RegisterTimer(kg(string(k)), statestore.Timer{Domain: ev, Time: int64(i), Key: k}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := b.PopTimers(kg("k0"), ev, 0, 0, func(statestore.Timer) {}); err != nil {
			t.Fatal(err)
		}
		must(t, b.Flush())
		dest := t.TempDir() + "/cp"
		must(t, b.Checkpoint(dest))
		must(t, b.Close())
		c := openDir(t, dest, states, clock, o)
		if n := c.TimerCount(); n != 99 {
			t.Errorf("checkpoint: TimerCount %d, want 99", n)
		}
		total := 0
		for g := range uint16(maxPar) {
			n, err := c.PopTimers(g, ev, 1000, 0, func(tr statestore.Timer) {
				if tr.Time == 0 || string(tr.Key) != fmt.Sprintf("k%d", tr.Time) {
					t.Errorf("checkpoint holds timer %d %q", tr.Time, tr.Key)
				}
			})
			must(t, err)
			total += n
		}
		if total != 99 {
			t.Errorf("checkpoint holds %d timers, want 99", total)
		}
		must(t, c.Close())
	}
}

func TestTimersAppend(t *testing.T) {
	b := openDir(t, t.TempDir(), states, statestoretest.NewClock(0), pebble.Options{TimerCacheBytes: 1})
	defer b.Close()
	for _, tr := range []statestore.Timer{
		{Time: 3, Key: []byte("b")}, {Time: 1, Key: []byte("c"), Payload: []byte("p")},
		{Time: 3, Key: []byte("a\x00")}, {Domain: 1, Key: []byte("x")},
	} {
		if _, err := b.RegisterTimer(1, tr); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{`0@1/"c"/"p"`, `0@3/"a\x00"/""`, `0@3/"b"/""`}
	for range 2 {
		ts, err := b.AppendTimers(nil, 1, 0)
		must(t, err)
		if got := timerStrings(ts); !slices.Equal(got, want) {
			t.Fatalf("AppendTimers %v, want %v", got, want)
		}
		must(t, b.Flush())
	}
	if b.TimerCount() != 4 {
		t.Fatal("AppendTimers removed timers")
	}
}

func TestTimerOptions(t *testing.T) {
	cfg := statestore.Config{MaxParallelism: 4}
	for _, o := range []pebble.Options{{TimerBatchBytes: -1}, {TimerCacheBytes: -1}} {
		if _, err := pebble.Open(t.TempDir(), cfg, o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}
