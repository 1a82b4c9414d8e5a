package statestoretest

import (
	"bytes"
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"testing"

	"github.com/wasmstream/wasmstream/abi"
	"github.com/wasmstream/wasmstream/statestore"
)

// Reopener closes b and opens the storage it used again, with the Config it
// was opened with, returning the new backend.
type Reopener func(t *testing.T, b statestore.Backend) statestore.Backend

const (
	ev   = abi.TimeDomainEvent
	proc = abi.TimeDomainProcessing
)

func runTimers(t *testing.T, o Opener) {
	t.Run("Dedup", func(t *testing.T) { testTimersDedup(t, o) })
	t.Run("Delete", func(t *testing.T) { testTimersDelete(t, o) })
	t.Run("Order", func(t *testing.T) { testTimersOrder(t, o) })
	t.Run("LimitAndUpTo", func(t *testing.T) { testTimersLimit(t, o) })
	t.Run("Callback", func(t *testing.T) { testTimersCallback(t, o) })
	t.Run("Isolation", func(t *testing.T) { testTimersIsolation(t, o) })
	t.Run("Errors", func(t *testing.T) { testTimersErrors(t, o) })
	t.Run("Many", func(t *testing.T) { testTimersMany(t, o) })
	t.Run("Random", func(t *testing.T) { testTimersRandom(t, o) })
	t.Run("ConcurrentGroups", func(t *testing.T) { testTimersConcurrent(t, o) })
}

// RunDurable runs the cases of backends with storage: what was written is
// found again after Close and reopening.
func RunDurable(t *testing.T, o Opener, r Reopener) {
	t.Run("TimersReopen", func(t *testing.T) { testTimersReopen(t, o, r) })
}

// timerFixture is a fixture whose backend keeps timers.
type timerFixture struct {
	*fixture
	ts statestore.TimerStore
}

func openTimers(t *testing.T, o Opener) *timerFixture {
	t.Helper()
	f := open(t, o, plainStates())
	ts, ok := f.b.(statestore.TimerStore)
	if !ok {
		t.Fatalf("%T does not implement statestore.TimerStore", f.b)
	}
	return &timerFixture{f, ts}
}

func tm(domain int, ms int64, key, payload string) statestore.Timer {
	t := statestore.Timer{Domain: domain, Time: ms, Key: []byte(key)}
	if payload != "" {
		t.Payload = []byte(payload)
	}
	return t
}

// timerString renders a timer as "domain@time/key/payload", with %q keys and
// payloads.
func timerString(t statestore.Timer) string {
	return fmt.Sprintf("%d@%d/%q/%q", t.Domain, t.Time, t.Key, t.Payload)
}

func compareTimers(x, y statestore.Timer) int {
	return cmp.Or(cmp.Compare(x.Time, y.Time), bytes.Compare(x.Key, y.Key), bytes.Compare(x.Payload, y.Payload))
}

func (f *timerFixture) register(kg uint16, t statestore.Timer) bool {
	f.t.Helper()
	added, err := f.ts.RegisterTimer(kg, t)
	f.ok(err)
	return added
}

func (f *timerFixture) mustAdd(kg uint16, ts ...statestore.Timer) {
	f.t.Helper()
	for _, t := range ts {
		if !f.register(kg, t) {
			f.t.Fatalf("register %s in key group %d: not added", timerString(t), kg)
		}
	}
}

func (f *timerFixture) del(kg uint16, t statestore.Timer) bool {
	f.t.Helper()
	deleted, err := f.ts.DeleteTimer(kg, t)
	f.ok(err)
	return deleted
}

// pop pops the timers of domain in kg due at upTo and renders them.
func (f *timerFixture) pop(kg uint16, domain int, upTo int64, limit int) []string {
	f.t.Helper()
	var got []string
	n, err := f.ts.PopTimers(kg, domain, upTo, limit, func(t statestore.Timer) {
		if t.Domain != domain {
			f.t.Errorf("popped %s from domain %d", timerString(t), domain)
		}
		got = append(got, timerString(t))
	})
	f.ok(err)
	if n != len(got) {
		f.t.Fatalf("PopTimers returned %d, called fn %d times", n, len(got))
	}
	return got
}

func (f *timerFixture) wantPop(kg uint16, domain int, upTo int64, limit int, want ...statestore.Timer) {
	f.t.Helper()
	got := f.pop(kg, domain, upTo, limit)
	var ws []string
	for _, w := range want {
		ws = append(ws, timerString(w))
	}
	if !slices.Equal(got, ws) {
		f.t.Fatalf("PopTimers(kg %d, domain %d, up to %d, limit %d):\n got  %v\n want %v", kg, domain, upTo, limit, got, ws)
	}
}

func (f *timerFixture) wantNext(kg uint16, domain int, want int64, wantOK bool) {
	f.t.Helper()
	next, ok, err := f.ts.NextTimer(kg, domain)
	f.ok(err)
	if ok != wantOK || ok && next != want {
		f.t.Fatalf("NextTimer(kg %d, domain %d) = %d %v, want %d %v", kg, domain, next, ok, want, wantOK)
	}
}

func (f *timerFixture) wantCount(n int64) {
	f.t.Helper()
	if c := f.ts.TimerCount(); c != n {
		f.t.Fatalf("TimerCount %d, want %d", c, n)
	}
}

func testTimersDedup(t *testing.T, o Opener) {
	f := openTimers(t, o)
	f.wantCount(0)
	f.wantNext(1, ev, 0, false)
	ts := []statestore.Timer{
		tm(ev, 30, "b", ""), tm(ev, 10, "b", "x"), tm(ev, 10, "a", "y"), tm(ev, 10, "b", ""),
		tm(ev, 20, "a", ""), tm(ev, 10, "a", "x"), tm(ev, -5, "z", ""),
	}
	f.mustAdd(1, ts...)
	// The same (key, domain, time, payload) again changes nothing.
	for _, tr := range []statestore.Timer{tm(ev, 10, "a", "x"), tm(ev, 30, "b", ""), tm(ev, -5, "z", "")} {
		if f.register(1, tr) {
			t.Errorf("%s: registered twice", timerString(tr))
		}
	}
	// Another payload, time, key, domain or key group is another timer.
	f.mustAdd(1, tm(ev, 10, "a", "z"), tm(ev, 11, "a", "x"), tm(ev, 10, "c", "x"), tm(proc, 10, "a", "x"))
	f.mustAdd(2, tm(ev, 10, "a", "x"))
	f.wantCount(12)
	// A nil and an empty payload are the same timer.
	f.mustAdd(1, statestore.Timer{Time: 7, Key: []byte("k"), Payload: []byte{}})
	if f.register(1, statestore.Timer{Time: 7, Key: []byte("k")}) {
		t.Error("nil and empty payload are distinct timers")
	}
	f.wantCount(13)
	f.wantNext(1, ev, -5, true)
	f.wantPop(1, ev, 100, 0,
		tm(ev, -5, "z", ""), tm(ev, 7, "k", ""), tm(ev, 10, "a", "x"), tm(ev, 10, "a", "y"), tm(ev, 10, "a", "z"),
		tm(ev, 10, "b", ""), tm(ev, 10, "b", "x"), tm(ev, 10, "c", "x"), tm(ev, 11, "a", "x"), tm(ev, 20, "a", ""),
		tm(ev, 30, "b", ""))
	f.wantCount(2)
	// Once fired, a timer can be registered again.
	f.mustAdd(1, tm(ev, 10, "a", "x"))
	f.wantPop(1, ev, 10, 0, tm(ev, 10, "a", "x"))
	f.wantPop(1, proc, 10, 0, tm(proc, 10, "a", "x"))
	f.wantPop(2, ev, 10, 0, tm(ev, 10, "a", "x"))
	f.wantCount(0)
}

func testTimersDelete(t *testing.T, o Opener) {
	f := openTimers(t, o)
	for i := range 10 {
		f.mustAdd(0, tm(ev, int64(i), "k", strconv.Itoa(i%3)))
	}
	for _, tr := range []statestore.Timer{tm(ev, 0, "k", "0"), tm(ev, 5, "k", "2"), tm(ev, 9, "k", "0")} {
		if !f.del(0, tr) {
			t.Fatalf("delete %s reported false", timerString(tr))
		}
	}
	for _, tr := range []statestore.Timer{
		tm(ev, 0, "k", "0"),   // already deleted
		tm(ev, 1, "k", "0"),   // other payload
		tm(ev, 1, "k", ""),    // no payload
		tm(ev, 1, "j", "1"),   // other key
		tm(ev, 2, "k", "1"),   // other time
		tm(proc, 1, "k", "1"), // other domain
	} {
		if f.del(0, tr) {
			t.Errorf("delete %s reported true", timerString(tr))
		}
	}
	if f.del(1, tm(ev, 1, "k", "1")) {
		t.Error("delete in another key group reported true")
	}
	f.wantCount(7)
	f.wantNext(0, ev, 1, true)
	// Deleting the earliest timer moves NextTimer.
	if !f.del(0, tm(ev, 1, "k", "1")) {
		t.Fatal("delete of the earliest timer")
	}
	f.wantNext(0, ev, 2, true)
	f.wantCount(6)
	f.wantPop(0, ev, 100, 0,
		tm(ev, 2, "k", "2"), tm(ev, 3, "k", "0"), tm(ev, 4, "k", "1"), tm(ev, 6, "k", "0"), tm(ev, 7, "k", "1"), tm(ev, 8, "k", "2"))
	// A fired timer is gone.
	if f.del(0, tm(ev, 2, "k", "2")) {
		t.Error("delete of a fired timer reported true")
	}
	f.wantCount(0)
	f.wantNext(0, ev, 0, false)
	// Deleted, then registered again.
	f.mustAdd(0, tm(ev, 3, "k", ""))
	if !f.del(0, tm(ev, 3, "k", "")) {
		t.Fatal("delete")
	}
	f.mustAdd(0, tm(ev, 3, "k", ""))
	f.wantPop(0, ev, 3, 0, tm(ev, 3, "k", ""))
}

// testTimersOrder checks the firing order (time, key, payload): negative
// and extreme times, keys that are prefixes of others, keys and payloads
// holding zero and 0xff bytes, empty keys.
func testTimersOrder(t *testing.T, o Opener) {
	f := openTimers(t, o)
	want := []statestore.Timer{
		tm(ev, math.MinInt64, "", ""),
		tm(ev, math.MinInt64, "a", ""),
		tm(ev, -1<<40, "k", ""),
		tm(ev, -2, "b", ""),
		tm(ev, -1, "a", "p"),
		tm(ev, 0, "", ""),
		tm(ev, 0, "", "\x00"),
		tm(ev, 0, "", "p"),
		tm(ev, 0, "\x00", ""),
		tm(ev, 0, "\x00", "\x00"),
		tm(ev, 0, "\x00\x00", ""),
		tm(ev, 0, "\x00\x01", ""),
		tm(ev, 0, "\x00\xff", ""),
		tm(ev, 0, "\x01", ""),
		tm(ev, 0, "a", ""),
		tm(ev, 0, "a", "\x00"),
		tm(ev, 0, "a", "\x01"),
		tm(ev, 0, "a", "b"),
		tm(ev, 0, "a", "b\x00"),
		tm(ev, 0, "a", "\xff"),
		tm(ev, 0, "a\x00", ""),
		tm(ev, 0, "a\x00", "x"),
		tm(ev, 0, "a\x00b", ""),
		tm(ev, 0, "a\x01", ""),
		tm(ev, 0, "aa", ""),
		tm(ev, 0, "ab", ""),
		tm(ev, 0, "b", ""),
		tm(ev, 0, "\xff", ""),
		tm(ev, 0, "\xff\x00", ""),
		tm(ev, 0, "\xff\xff", ""),
		tm(ev, 1, "a", ""),
		tm(ev, 255, "a", ""),
		tm(ev, 256, "a", ""),
		tm(ev, 1<<40, "a", ""),
		tm(ev, math.MaxInt64, "", ""),
		tm(ev, math.MaxInt64, "z", "z"),
	}
	r := rand.New(rand.NewPCG(5, 6))
	for _, i := range r.Perm(len(want)) {
		f.mustAdd(3, want[i])
	}
	if !slices.IsSortedFunc(want, compareTimers) {
		t.Fatal("the test's timers are not in order")
	}
	f.wantNext(3, ev, math.MinInt64, true)
	f.wantPop(3, ev, -2, 0, want[:4]...)
	f.wantNext(3, ev, -1, true)
	f.wantPop(3, ev, math.MaxInt64-1, 0, want[4:len(want)-2]...)
	f.wantNext(3, ev, math.MaxInt64, true)
	f.wantPop(3, ev, math.MaxInt64, 0, want[len(want)-2:]...)
	f.wantCount(0)
}

func testTimersLimit(t *testing.T, o Opener) {
	f := openTimers(t, o)
	var all []statestore.Timer
	for i := range 100 {
		all = append(all, tm(ev, int64(i/10), fmt.Sprintf("k%02d", i), ""))
	}
	for _, i := range rand.New(rand.NewPCG(7, 8)).Perm(len(all)) {
		f.mustAdd(0, all[i])
	}
	f.wantPop(0, ev, 5, 7, all[:7]...)
	f.wantNext(0, ev, 0, true)
	f.wantPop(0, ev, 0, 100, all[7:10]...)
	f.wantNext(0, ev, 1, true)
	f.wantPop(0, ev, 4, 0, all[10:50]...)
	f.wantPop(0, ev, -1, 0)
	f.wantPop(0, ev, 4, 0)
	f.wantPop(0, ev, 5, 10, all[50:60]...)
	f.wantPop(0, ev, 5, -1)
	f.wantCount(40)
	f.wantPop(0, ev, 9, 1, all[60])
	f.wantPop(0, ev, 9, 0, all[61:]...)
	f.wantNext(0, ev, 0, false)
}

func testTimersCallback(t *testing.T, o Opener) {
	f := openTimers(t, o)
	f.mustAdd(0, tm(ev, 1, "a", ""), tm(ev, 3, "c", ""), tm(ev, 5, "a", ""), tm(ev, 6, "d", ""), tm(ev, 20, "x", ""))
	var got []string
	again := false
	_, err := f.ts.PopTimers(0, ev, 6, 0, func(tr statestore.Timer) {
		got = append(got, timerString(tr))
		switch {
		case tr.Time == 1 && len(tr.Payload) == 0:
			f.mustAdd(0, tm(ev, 2, "b", "due"))    // due: fires in this call
			f.mustAdd(0, tm(ev, 1, "a", "again"))  // due at the time being fired
			f.mustAdd(0, tm(ev, 7, "b", "later"))  // not due
			f.mustAdd(0, tm(proc, 1, "a", "proc")) // other domain
			f.mustAdd(1, tm(ev, 1, "a", "kg1"))    // other key group
			if !f.del(0, tm(ev, 5, "a", "")) {     // deleted before it is due
				t.Error("delete in the callback")
			}
			if f.del(0, tm(ev, 1, "a", "")) { // the timer being fired
				t.Error("the timer being fired could be deleted")
			}
		case tr.Time == 2 && !again:
			again = true
			// The timer being fired, registered again: fires again.
			f.mustAdd(0, tm(ev, 2, "b", "due"))
			if f.register(0, tm(ev, 3, "c", "")) {
				t.Error("a pending timer registered twice")
			}
			f.mustAdd(0, tm(ev, 6, "c", ""))
			f.mustAdd(0, tm(ev, 4, "c", ""))
		}
	})
	f.ok(err)
	want := []string{"0@1/\"a\"/\"\"", "0@1/\"a\"/\"again\"", "0@2/\"b\"/\"due\"", "0@2/\"b\"/\"due\"",
		"0@3/\"c\"/\"\"", "0@4/\"c\"/\"\"", "0@6/\"c\"/\"\"", "0@6/\"d\"/\"\""}
	if !slices.Equal(got, want) {
		t.Fatalf("popped\n %v\nwant\n %v", got, want)
	}
	f.wantNext(0, ev, 7, true)
	f.wantCount(4)
	f.wantPop(0, ev, 100, 0, tm(ev, 7, "b", "later"), tm(ev, 20, "x", ""))
	f.wantPop(0, proc, 100, 0, tm(proc, 1, "a", "proc"))
	f.wantPop(1, ev, 100, 0, tm(ev, 1, "a", "kg1"))

	// A limit counts the timers registered in the callback.
	f.mustAdd(0, tm(ev, 1, "a", ""))
	i := 0
	n, err := f.ts.PopTimers(0, ev, 100, 3, func(tr statestore.Timer) {
		i++
		f.mustAdd(0, tm(ev, tr.Time+1, "a", ""))
	})
	f.ok(err)
	if n != 3 || i != 3 {
		t.Fatalf("limit 3 with a timer registered per call: popped %d, fn called %d times", n, i)
	}
	f.wantNext(0, ev, 4, true)
	f.wantCount(1)
}

// testTimersIsolation checks that domains and key groups hold distinct
// timers.
func testTimersIsolation(t *testing.T, o Opener) {
	f := openTimers(t, o)
	for g := range uint16(MaxParallelism) {
		f.mustAdd(g, tm(ev, int64(g), "k", "e"), tm(proc, int64(100-g), "k", "p"))
	}
	f.wantCount(2 * MaxParallelism)
	for g := range uint16(MaxParallelism) {
		f.wantNext(g, ev, int64(g), true)
		f.wantNext(g, proc, int64(100-g), true)
	}
	f.wantPop(2, ev, 1000, 0, tm(ev, 2, "k", "e"))
	f.wantNext(2, ev, 0, false)
	f.wantNext(2, proc, 98, true)
	f.wantNext(3, ev, 3, true)
	f.wantPop(5, proc, 1000, 0, tm(proc, 95, "k", "p"))
	f.wantNext(5, ev, 5, true)
	f.wantCount(2*MaxParallelism - 2)
	for g := range uint16(MaxParallelism) {
		f.pop(g, ev, 1000, 0)
		f.pop(g, proc, 1000, 0)
	}
	f.wantCount(0)
}

func testTimersErrors(t *testing.T, o Opener) {
	f := openTimers(t, o)
	if _, err := f.ts.RegisterTimer(MaxParallelism, tm(ev, 1, "k", "")); err == nil {
		t.Error("key group out of range accepted")
	}
	if _, err := f.ts.RegisterTimer(0, tm(2, 1, "k", "")); err == nil {
		t.Error("domain 2 accepted")
	}
	if _, err := f.ts.DeleteTimer(0, tm(-1, 1, "k", "")); err == nil {
		t.Error("delete in domain -1 accepted")
	}
	if _, err := f.ts.DeleteTimer(MaxParallelism+1, tm(ev, 1, "k", "")); err == nil {
		t.Error("delete in a key group out of range accepted")
	}
	if _, err := f.ts.PopTimers(MaxParallelism, ev, 1, 0, nil); err == nil {
		t.Error("pop in a key group out of range accepted")
	}
	if _, err := f.ts.PopTimers(0, 3, 1, 0, nil); err == nil {
		t.Error("pop in domain 3 accepted")
	}
	if _, _, err := f.ts.NextTimer(0, 7); err == nil {
		t.Error("NextTimer domain 7 accepted")
	}
	if _, _, err := f.ts.NextTimer(MaxParallelism, ev); err == nil {
		t.Error("NextTimer in a key group out of range accepted")
	}
	f.wantCount(0)
}

// testTimersMany registers more timers than a small cache holds, interleaved
// with state writes, and fires them in watermark steps.
func testTimersMany(t *testing.T, o Opener) {
	f := openTimers(t, o)
	const n = 4000
	r := rand.New(rand.NewPCG(9, 10))
	var all []statestore.Timer
	kgOf := map[string]uint16{}
	for i := range n {
		key := fmt.Sprintf("user-%d", r.IntN(500))
		tr := tm(ev, r.Int64N(10_000)-5_000, key, strconv.Itoa(i%2))
		if f.register(kg(key), tr) {
			all = append(all, tr)
			kgOf[timerString(tr)] = kg(key)
		}
		f.ok(f.b.Put(kg(key), stValue, []byte(key), []byte("v")))
	}
	f.wantCount(int64(len(all)))
	f.ok(f.b.Flush())
	slices.SortFunc(all, compareTimers)
	perKG := map[uint16][]string{}
	for _, tr := range all {
		g := kgOf[timerString(tr)]
		perKG[g] = append(perKG[g], timerString(tr))
	}
	got := map[uint16][]string{}
	for wm := int64(-5_000); wm < 5_000+500; wm += 500 {
		for g := range uint16(MaxParallelism) {
			got[g] = append(got[g], f.pop(g, ev, wm, 0)...)
			if next, ok, err := f.ts.NextTimer(g, ev); err != nil || ok && next <= wm {
				t.Fatalf("after popping up to %d: NextTimer %d %v %v", wm, next, ok, err)
			}
		}
	}
	for g := range uint16(MaxParallelism) {
		if !slices.Equal(got[g], perKG[g]) {
			t.Fatalf("key group %d fired %d timers, want %d, or in another order", g, len(got[g]), len(perKG[g]))
		}
	}
	f.wantCount(0)
	f.wantGet(stValue, "user-1", "v", true)
}

// testTimersRandom checks a key group's timers against a sorted model under
// random registers, deletes, pops and flushes.
func testTimersRandom(t *testing.T, o Opener) {
	f := openTimers(t, o)
	r := rand.New(rand.NewPCG(1, 2))
	model := map[string]statestore.Timer{}
	const g = 5
	for step := range 20000 {
		d := ev
		if r.IntN(4) == 0 {
			d = proc
		}
		tr := tm(d, r.Int64N(500)-100, "k"+strconv.Itoa(r.IntN(20)), strconv.Itoa(r.IntN(3)))
		id := timerString(tr)
		_, exists := model[id]
		switch op := r.IntN(20); {
		case op < 10:
			if added := f.register(g, tr); added == exists {
				t.Fatalf("step %d: register %s added=%v with exists=%v", step, id, added, exists)
			}
			model[id] = tr
		case op < 16:
			if deleted := f.del(g, tr); deleted != exists {
				t.Fatalf("step %d: delete %s = %v, exists %v", step, id, deleted, exists)
			}
			delete(model, id)
		case op < 19:
			upTo, limit := r.Int64N(500)-100, r.IntN(5)
			var due []statestore.Timer
			for _, m := range model {
				if m.Domain == d && m.Time <= upTo {
					due = append(due, m)
				}
			}
			slices.SortFunc(due, compareTimers)
			if limit > 0 && len(due) > limit {
				due = due[:limit]
			}
			for _, x := range due {
				delete(model, timerString(x))
			}
			f.wantPop(g, d, upTo, limit, due...)
		default:
			f.ok(f.b.Flush())
		}
		if step%50 == 0 {
			var first *statestore.Timer
			for _, m := range model {
				if m.Domain == d && (first == nil || m.Time < first.Time) {
					first = &m
				}
			}
			if first == nil {
				f.wantNext(g, d, 0, false)
			} else {
				f.wantNext(g, d, first.Time, true)
			}
		}
		if c := f.ts.TimerCount(); c != int64(len(model)) {
			t.Fatalf("step %d: TimerCount %d, model %d", step, c, len(model))
		}
	}
}

// testTimersConcurrent registers and pops in distinct key groups from
// several goroutines (run with -race).
func testTimersConcurrent(t *testing.T, o Opener) {
	f := openTimers(t, o)
	var wg sync.WaitGroup
	for g := range uint16(MaxParallelism) {
		wg.Go(func() {
			for i := range 1000 {
				if _, err := f.ts.RegisterTimer(g, tm(i%2, int64(1000-i), "k", "")); err != nil {
					t.Error(err)
					return
				}
			}
			for d := range 2 {
				n, err := f.ts.PopTimers(g, d, 1<<40, 0, func(statestore.Timer) {})
				if err != nil || n != 500 {
					t.Errorf("key group %d domain %d: popped %d, %v", g, d, n, err)
				}
			}
		})
	}
	wg.Wait()
	f.wantCount(0)
}

func testTimersReopen(t *testing.T, o Opener, r Reopener) {
	f := openTimers(t, o)
	reopen := func() {
		t.Helper()
		f.b = r(t, f.b)
		ts, ok := f.b.(statestore.TimerStore)
		if !ok {
			t.Fatalf("%T does not implement statestore.TimerStore", f.b)
		}
		f.ts = ts
	}
	var all []statestore.Timer
	for i := range 300 {
		all = append(all, tm(i%2, int64(i/3)-50, fmt.Sprintf("k%d", i%7), strconv.Itoa(i)))
	}
	for _, tr := range all {
		f.mustAdd(kg(string(tr.Key)), tr)
	}
	if !f.del(kg("k1"), all[1]) {
		t.Fatal("delete")
	}
	f.ok(f.b.Put(kg("k"), stValue, []byte("k"), []byte("v")))
	reopen()
	f.wantCount(299)
	f.wantGet(stValue, "k", "v", true)
	if f.register(kg(string(all[0].Key)), all[0]) {
		t.Fatal("a timer registered before reopening was registered again")
	}
	// Pop some, reopen, pop the rest.
	want := map[uint16][]statestore.Timer{}
	for i, tr := range all {
		if i != 1 {
			g := kg(string(tr.Key))
			want[g] = append(want[g], tr)
		}
	}
	for g := range want {
		slices.SortFunc(want[g], compareTimers)
	}
	popped := 0
	for g := range uint16(MaxParallelism) {
		var ws []statestore.Timer
		for _, tr := range want[g] {
			if tr.Domain == ev && tr.Time <= 0 {
				ws = append(ws, tr)
			}
		}
		f.wantPop(g, ev, 0, 0, ws...)
		popped += len(ws)
	}
	f.wantCount(int64(299 - popped))
	reopen()
	f.wantCount(int64(299 - popped))
	for g := range uint16(MaxParallelism) {
		for _, d := range []int{ev, proc} {
			var ws []statestore.Timer
			for _, tr := range want[g] {
				if tr.Domain == d && (d == proc || tr.Time > 0) {
					ws = append(ws, tr)
				}
			}
			if len(ws) > 0 {
				f.wantNext(g, d, ws[0].Time, true)
			}
			f.wantPop(g, d, math.MaxInt64, 0, ws...)
		}
	}
	f.wantCount(0)
	reopen()
	f.wantCount(0)
	for g := range uint16(MaxParallelism) {
		f.wantNext(g, ev, 0, false)
		f.wantNext(g, proc, 0, false)
	}
}
