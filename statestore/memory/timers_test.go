package memory

// The behaviour of timers is checked by the conformance suite
// (statestore/statestoretest), which runs against this backend and the
// Pebble backend; these tests cover what is particular to the heap.

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/wasmstream/wasmstream/abi"
	"github.com/wasmstream/wasmstream/statestore"
)

func newTimerBackend(t testing.TB, maxParallelism int) *Backend {
	t.Helper()
	b, err := New(statestore.Config{MaxParallelism: maxParallelism})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func tm(domain int, ts int64, key, payload string) statestore.Timer {
	t := statestore.Timer{Domain: domain, Time: ts, Key: []byte(key)}
	if payload != "" {
		t.Payload = []byte(payload)
	}
	return t
}

func timerString(t statestore.Timer) string {
	return fmt.Sprintf("%d@%d/%s/%s", t.Domain, t.Time, t.Key, t.Payload)
}

func mustRegister(t testing.TB, b *Backend, kg uint16, tr statestore.Timer) bool {
	t.Helper()
	added, err := b.RegisterTimer(kg, tr)
	if err != nil {
		t.Fatal(err)
	}
	return added
}

func TestTimersAppend(t *testing.T) {
	b := newTimerBackend(t, 2)
	for _, tr := range []statestore.Timer{tm(0, 3, "b", ""), tm(0, 1, "c", "p"), tm(0, 3, "a", ""), tm(1, 0, "x", "")} {
		mustRegister(t, b, 1, tr)
	}
	ts, err := b.AppendTimers(nil, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, tr := range ts {
		got = append(got, timerString(tr))
	}
	if want := []string{"0@1/c/p", "0@3/a/", "0@3/b/"}; !slices.Equal(got, want) {
		t.Fatalf("AppendTimers %v, want %v", got, want)
	}
	if b.TimerCount() != 4 {
		t.Fatal("AppendTimers removed timers")
	}
}

// TestTimersLargeGroupEmpties fills a key group past the size at which an
// emptied index is dropped, and uses it again.
func TestTimersLargeGroupEmpties(t *testing.T) {
	b := newTimerBackend(t, 1)
	for i := range 5000 {
		mustRegister(t, b, 0, tm(0, int64(i), "k", ""))
	}
	for i := range 2500 {
		if ok, _ := b.DeleteTimer(0, tm(0, int64(i*2), "k", "")); !ok {
			t.Fatal("delete")
		}
	}
	if n, _ := b.PopTimers(0, 0, 1<<40, 0, func(statestore.Timer) {}); n != 2500 {
		t.Fatalf("popped %d", n)
	}
	if !mustRegister(t, b, 0, tm(0, 1, "k", "")) || mustRegister(t, b, 0, tm(0, 1, "k", "")) {
		t.Fatal("register after emptying")
	}
}

// BenchmarkTimers registers 1M timers (10k keys, random times within an
// hour, 16 key groups) and fires them all in batches of 1024, as a worker
// advancing its watermark does.
func BenchmarkTimers(b *testing.B) {
	const n, groups = 1 << 20, 16
	r := rand.New(rand.NewPCG(3, 4))
	type reg struct {
		kg uint16
		t  statestore.Timer
	}
	regs := make([]reg, n)
	for i := range regs {
		key := []byte("user-" + strconv.Itoa(r.IntN(10000)))
		regs[i] = reg{statestore.KeyGroup(key, groups), statestore.Timer{Time: 1_700_000_000_000 + r.Int64N(3600_000), Key: key}}
	}
	var regNs, popNs int64
	for b.Loop() {
		be := newTimerBackend(b, groups)
		start := nowNs()
		for i := range regs {
			if _, err := be.RegisterTimer(regs[i].kg, regs[i].t); err != nil {
				b.Fatal(err)
			}
		}
		mid := nowNs()
		fired := 0
		for wm := int64(1_700_000_000_000); wm < 1_700_000_000_000+3600_000+60_000; wm += 60_000 {
			for kg := range uint16(groups) {
				for {
					k, _ := be.PopTimers(kg, abi.TimeDomainEvent, wm, 1024, func(statestore.Timer) {})
					fired += k
					if k < 1024 {
						break
					}
				}
			}
		}
		regNs += mid - start
		popNs += nowNs() - mid
		if fired == 0 || be.TimerCount() != 0 {
			b.Fatalf("fired %d, %d left", fired, be.TimerCount())
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/(float64(regNs)/1e9), "registers/s")
	b.ReportMetric(float64(n)*float64(b.N)/(float64(popNs)/1e9), "pops/s")
}

func nowNs() int64 { return time.Now().UnixNano() }
