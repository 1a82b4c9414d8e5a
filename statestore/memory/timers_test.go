package memory

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
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

// popAll pops every timer of domain in kg due at upTo.
func popAll(t testing.TB, b *Backend, kg uint16, domain int, upTo int64, limit int) []string {
	t.Helper()
	var got []string
	if _, err := b.PopTimers(kg, domain, upTo, limit, func(t statestore.Timer) { got = append(got, timerString(t)) }); err != nil {
		t.Fatal(err)
	}
	return got
}

func mustRegister(t testing.TB, b *Backend, kg uint16, tr statestore.Timer) bool {
	t.Helper()
	added, err := b.RegisterTimer(kg, tr)
	if err != nil {
		t.Fatal(err)
	}
	return added
}

func TestTimersOrderAndDedup(t *testing.T) {
	b := newTimerBackend(t, 4)
	ev := abi.TimeDomainEvent
	for _, tr := range []statestore.Timer{
		tm(ev, 30, "b", ""), tm(ev, 10, "b", "x"), tm(ev, 10, "a", "y"), tm(ev, 10, "b", ""),
		tm(ev, 20, "a", ""), tm(ev, 10, "a", "x"), tm(ev, -5, "z", ""),
	} {
		if !mustRegister(t, b, 1, tr) {
			t.Fatalf("%s: not added", timerString(tr))
		}
	}
	// The same (time, key, payload) again changes nothing.
	for _, tr := range []statestore.Timer{tm(ev, 10, "a", "x"), tm(ev, 30, "b", ""), tm(ev, -5, "z", "")} {
		if mustRegister(t, b, 1, tr) {
			t.Errorf("%s: registered twice", timerString(tr))
		}
	}
	// Same time and key but another payload, domain or key group is another timer.
	if !mustRegister(t, b, 1, tm(abi.TimeDomainProcessing, 10, "a", "x")) || !mustRegister(t, b, 2, tm(ev, 10, "a", "x")) {
		t.Fatal("distinct timer not added")
	}
	if n := b.TimerCount(); n != 9 {
		t.Fatalf("TimerCount %d, want 9", n)
	}
	if next, ok, err := b.NextTimer(1, ev); err != nil || !ok || next != -5 {
		t.Fatalf("NextTimer = %d %v %v", next, ok, err)
	}
	got := popAll(t, b, 1, ev, 15, 0)
	want := []string{"0@-5/z/", "0@10/a/x", "0@10/a/y", "0@10/b/", "0@10/b/x"}
	if !slices.Equal(got, want) {
		t.Fatalf("popped %v, want %v", got, want)
	}
	if got := popAll(t, b, 1, ev, 15, 0); len(got) != 0 {
		t.Fatalf("popped again: %v", got)
	}
	if next, ok, _ := b.NextTimer(1, ev); !ok || next != 20 {
		t.Fatalf("NextTimer = %d %v, want 20", next, ok)
	}
	// A popped timer can be registered anew.
	if !mustRegister(t, b, 1, tm(ev, 10, "a", "x")) {
		t.Fatal("re-registering a fired timer")
	}
	got = popAll(t, b, 1, ev, 1<<62, 0)
	want = []string{"0@10/a/x", "0@20/a/", "0@30/b/"}
	if !slices.Equal(got, want) {
		t.Fatalf("popped %v, want %v", got, want)
	}
	if _, ok, _ := b.NextTimer(1, ev); ok {
		t.Fatal("NextTimer of an empty group")
	}
	if got := popAll(t, b, 1, abi.TimeDomainProcessing, 10, 0); !slices.Equal(got, []string{"1@10/a/x"}) {
		t.Fatalf("processing domain: %v", got)
	}
	if got := popAll(t, b, 2, ev, 10, 0); !slices.Equal(got, []string{"0@10/a/x"}) {
		t.Fatalf("key group 2: %v", got)
	}
	if n := b.TimerCount(); n != 0 {
		t.Fatalf("TimerCount %d after popping everything", n)
	}
}

func TestTimersDelete(t *testing.T) {
	b := newTimerBackend(t, 2)
	ev := abi.TimeDomainEvent
	for i := range 10 {
		mustRegister(t, b, 0, tm(ev, int64(i), "k", strconv.Itoa(i%3)))
	}
	del := func(tr statestore.Timer) bool {
		ok, err := b.DeleteTimer(0, tr)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !del(tm(ev, 0, "k", "0")) || !del(tm(ev, 5, "k", "2")) || !del(tm(ev, 9, "k", "0")) {
		t.Fatal("delete of a registered timer reported false")
	}
	for _, tr := range []statestore.Timer{
		tm(ev, 0, "k", "0"),                       // already deleted
		tm(ev, 1, "k", "0"),                       // other payload
		tm(ev, 1, "j", "1"),                       // other key
		tm(abi.TimeDomainProcessing, 1, "k", "1"), // other domain
	} {
		if del(tr) {
			t.Errorf("delete %s reported true", timerString(tr))
		}
	}
	if ok, _ := b.DeleteTimer(1, tm(ev, 1, "k", "1")); ok {
		t.Error("delete in another key group reported true")
	}
	if n := b.TimerCount(); n != 7 {
		t.Fatalf("TimerCount %d, want 7", n)
	}
	got := popAll(t, b, 0, ev, 100, 0)
	want := []string{"0@1/k/1", "0@2/k/2", "0@3/k/0", "0@4/k/1", "0@6/k/0", "0@7/k/1", "0@8/k/2"}
	if !slices.Equal(got, want) {
		t.Fatalf("popped %v, want %v", got, want)
	}
	// Payload nil and empty are the same timer.
	mustRegister(t, b, 0, statestore.Timer{Time: 1, Key: []byte("k"), Payload: []byte{}})
	if mustRegister(t, b, 0, statestore.Timer{Time: 1, Key: []byte("k")}) {
		t.Error("nil and empty payload are distinct timers")
	}
	if !del(statestore.Timer{Time: 1, Key: []byte("k")}) {
		t.Error("delete with a nil payload")
	}
}

func TestTimersLimitAndUpTo(t *testing.T) {
	b := newTimerBackend(t, 1)
	ev := abi.TimeDomainEvent
	for i := range 100 {
		mustRegister(t, b, 0, tm(ev, int64(i/10), fmt.Sprintf("k%02d", i), ""))
	}
	got := popAll(t, b, 0, ev, 5, 7)
	if len(got) != 7 || got[0] != "0@0/k00/" || got[6] != "0@0/k06/" {
		t.Fatalf("limit 7: %v", got)
	}
	n, err := b.PopTimers(0, ev, 0, 100, func(statestore.Timer) {})
	if err != nil || n != 3 {
		t.Fatalf("PopTimers up to 0 = %d, %v; want the 3 left at time 0", n, err)
	}
	n, _ = b.PopTimers(0, ev, 4, 0, func(statestore.Timer) {})
	if n != 40 {
		t.Fatalf("PopTimers up to 4 = %d, want 40", n)
	}
	n, _ = b.PopTimers(0, ev, -1, 0, func(statestore.Timer) { t.Fatal("fn called") })
	if n != 0 {
		t.Fatalf("nothing due: %d", n)
	}
	if c := b.TimerCount(); c != 50 {
		t.Fatalf("TimerCount %d, want 50", c)
	}
}

func TestTimersCallbackMayRegister(t *testing.T) {
	b := newTimerBackend(t, 1)
	ev := abi.TimeDomainEvent
	mustRegister(t, b, 0, tm(ev, 1, "a", ""))
	mustRegister(t, b, 0, tm(ev, 5, "a", ""))
	var got []string
	_, err := b.PopTimers(0, ev, 3, 0, func(tr statestore.Timer) {
		got = append(got, timerString(tr))
		if tr.Time == 1 {
			mustRegister(t, b, 0, tm(ev, 2, "b", "due"))   // due: fires in this call
			mustRegister(t, b, 0, tm(ev, 4, "b", "later")) // not due
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"0@1/a/", "0@2/b/due"}; !slices.Equal(got, want) {
		t.Fatalf("popped %v, want %v", got, want)
	}
	if got := popAll(t, b, 0, ev, 10, 0); !slices.Equal(got, []string{"0@4/b/later", "0@5/a/"}) {
		t.Fatalf("rest: %v", got)
	}
}

func TestTimersErrors(t *testing.T) {
	b := newTimerBackend(t, 4)
	if _, err := b.RegisterTimer(4, tm(0, 1, "k", "")); err == nil {
		t.Error("key group 4 of 4 accepted")
	}
	if _, err := b.RegisterTimer(0, tm(2, 1, "k", "")); err == nil {
		t.Error("domain 2 accepted")
	}
	if _, err := b.DeleteTimer(0, tm(-1, 1, "k", "")); err == nil {
		t.Error("delete in domain -1 accepted")
	}
	if _, err := b.PopTimers(9, 0, 1, 0, nil); err == nil {
		t.Error("pop in key group 9 accepted")
	}
	if _, _, err := b.NextTimer(0, 7); err == nil {
		t.Error("NextTimer domain 7 accepted")
	}
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

// TestTimersRandom checks the heap against a sorted model under random
// registers, deletes and pops.
func TestTimersRandom(t *testing.T) {
	b := newTimerBackend(t, 1)
	r := rand.New(rand.NewPCG(1, 2))
	model := map[string]statestore.Timer{}
	for step := range 20000 {
		tr := tm(abi.TimeDomainEvent, r.Int64N(500), "k"+strconv.Itoa(r.IntN(20)), strconv.Itoa(r.IntN(3)))
		id := timerString(tr)
		switch op := r.IntN(10); {
		case op < 5:
			_, exists := model[id]
			if added := mustRegister(t, b, 0, tr); added == exists {
				t.Fatalf("step %d: register %s added=%v with exists=%v", step, id, added, exists)
			}
			model[id] = tr
		case op < 8:
			_, exists := model[id]
			if deleted, _ := b.DeleteTimer(0, tr); deleted != exists {
				t.Fatalf("step %d: delete %s = %v, exists %v", step, id, deleted, exists)
			}
			delete(model, id)
		default:
			upTo, limit := r.Int64N(500), r.IntN(5)
			var due []statestore.Timer
			for _, m := range model {
				if m.Time <= upTo {
					due = append(due, m)
				}
			}
			slices.SortFunc(due, func(x, y statestore.Timer) int {
				a, c := timerID{x.Time, string(x.Key), string(x.Payload)}, timerID{y.Time, string(y.Key), string(y.Payload)}
				return compareID(&a, &c)
			})
			if limit > 0 && len(due) > limit {
				due = due[:limit]
			}
			var want []string
			for _, d := range due {
				want = append(want, timerString(d))
				delete(model, timerString(d))
			}
			if got := popAll(t, b, 0, abi.TimeDomainEvent, upTo, limit); !slices.Equal(got, want) {
				t.Fatalf("step %d: pop up to %d limit %d: %v, want %v", step, upTo, limit, got, want)
			}
		}
		if b.TimerCount() != int64(len(model)) {
			t.Fatalf("step %d: TimerCount %d, model %d", step, b.TimerCount(), len(model))
		}
	}
}

// TestTimersConcurrentGroups registers and pops in distinct key groups from
// several goroutines (run with -race).
func TestTimersConcurrentGroups(t *testing.T) {
	b := newTimerBackend(t, 8)
	var wg sync.WaitGroup
	for kg := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				mustRegister(t, b, uint16(kg), tm(i%2, int64(1000-i), "k", ""))
			}
			for d := range 2 {
				n, err := b.PopTimers(uint16(kg), d, 1<<40, 0, func(statestore.Timer) {})
				if err != nil || n != 500 {
					t.Errorf("kg %d domain %d: popped %d, %v", kg, d, n, err)
				}
			}
		})
	}
	wg.Wait()
	if n := b.TimerCount(); n != 0 {
		t.Fatalf("TimerCount %d", n)
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
