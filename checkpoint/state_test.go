package checkpoint_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/wasmstream/wasmstream/abi"
	"github.com/wasmstream/wasmstream/statestore"
	"github.com/wasmstream/wasmstream/statestore/statestoretest"
)

// The state every snapshot test writes: each kind of state, TTL in both
// time domains, and timers in both domains.
const (
	stValue = iota
	stList
	stMap
	stTTL  // value, 1 s processing-time TTL
	stETTL // map, 5 s event-time TTL
)

const maxPar = 16

var testStates = []abi.StateDesc{
	{Name: "v", Kind: abi.KindValue},
	{Name: "l", Kind: abi.KindList},
	{Name: "m", Kind: abi.KindMap},
	{Name: "ttl", Kind: abi.KindValue, TTL: &abi.TTL{Millis: 1000}},
	{Name: "ettl", Kind: abi.KindMap, TTL: &abi.TTL{Millis: 5000, Domain: abi.TimeEvent}},
}

func testConfig(clock *statestoretest.Clock) statestore.Config {
	return statestore.Config{States: testStates, MaxParallelism: maxPar, Clock: clock.Now}
}

type backend interface {
	statestore.Backend
	statestore.TimerStore
	AppendTimers(dst []statestore.Timer, kg uint16, domain int) ([]statestore.Timer, error)
}

func key(i int) []byte {
	if i%50 == 7 {
		return fmt.Appendf(nil, "k\x00%d", i) // a key with a zero byte
	}
	return fmt.Appendf(nil, "k%d", i)
}

func kgOf(k []byte) uint16 { return statestore.KeyGroup(k, maxPar) }

// fill writes n keys of every state at processing times 10_000 (even keys)
// and 10_400 (odd keys) and event time 50_000, and timers; the clock is
// left at 10_500.
func fill(t testing.TB, b backend, clock *statestoretest.Clock, n int) {
	t.Helper()
	for _, at := range []int64{10_000, 10_400} {
		clock.Advance(at - clock.Now())
		for i := range n {
			if (at == 10_000) != (i%2 == 0) {
				continue
			}
			k := key(i)
			g := kgOf(k)
			b.SetEventTime(g, 50_000)
			must(t, b.Put(g, stValue, k, fmt.Appendf(nil, "value-%d", i)))
			for j := range 3 {
				must(t, b.ListAdd(g, stList, k, fmt.Appendf(nil, "item-%d-%d", i, j)))
			}
			must(t, b.MapPut(g, stMap, k, []byte("a"), fmt.Appendf(nil, "A%d", i)))
			_, err := b.MapAddInt64(g, stMap, k, []byte("n"), int64(i))
			must(t, err)
			must(t, b.Put(g, stTTL, k, fmt.Appendf(nil, "ttl-%d", i)))
			must(t, b.MapPut(g, stETTL, k, []byte("e"), fmt.Appendf(nil, "ev-%d", i)))
			if i%3 == 0 {
				_, err := b.RegisterTimer(g, statestore.Timer{Domain: abi.TimeDomainEvent, Time: int64(60_000 + i), Key: k, Payload: []byte("p")})
				must(t, err)
				_, err = b.RegisterTimer(g, statestore.Timer{Domain: abi.TimeDomainProcessing, Time: int64(20_000 + i%7), Key: k})
				must(t, err)
			}
		}
	}
	// A deletion and a cleared list are part of the state too.
	k := key(4)
	must(t, b.Delete(kgOf(k), stValue, k))
	must(t, b.ListClear(kgOf(k), stList, k))
	clock.Advance(10_500 - clock.Now())
}

// dump describes everything b holds for keys 0..n-1, its statistics and
// its timers, at the clock's time and event time 50_000.
func dump(t testing.TB, b backend, n int) string {
	t.Helper()
	var sb strings.Builder
	for i := range n {
		k := key(i)
		g := kgOf(k)
		b.SetEventTime(g, 50_000)
		v, ok, err := b.Get(g, stValue, k)
		must(t, err)
		fmt.Fprintf(&sb, "%q v=%q/%v", k, v, ok)
		l, err := b.ListAppendTo(nil, g, stList, k)
		must(t, err)
		fmt.Fprintf(&sb, " l=%q", l)
		m, err := b.MapAppendTo(nil, g, stMap, k, abi.IterEntries)
		must(t, err)
		fmt.Fprintf(&sb, " m=%q", m)
		v, ok, err = b.Get(g, stTTL, k)
		must(t, err)
		fmt.Fprintf(&sb, " ttl=%q/%v", v, ok)
		v, ok, err = b.MapGet(g, stETTL, k, []byte("e"))
		must(t, err)
		fmt.Fprintf(&sb, " ettl=%q/%v\n", v, ok)
	}
	for _, s := range b.Stats() {
		fmt.Fprintf(&sb, "stats %s keys=%d bytes=%d\n", s.Name, s.Keys, s.Bytes)
	}
	fmt.Fprintf(&sb, "timers %d\n", b.TimerCount())
	for kg := range maxPar {
		for _, d := range []int{abi.TimeDomainEvent, abi.TimeDomainProcessing} {
			ts, err := b.AppendTimers(nil, uint16(kg), d)
			must(t, err)
			for _, tm := range ts {
				fmt.Fprintf(&sb, "timer kg=%d d=%d t=%d k=%q p=%q\n", kg, d, tm.Time, tm.Key, tm.Payload)
			}
		}
	}
	return sb.String()
}

// checkTTL checks that the restored TTL metadata expires the cells when the
// original would have: processing time 11_000 expires even keys (written at
// 10_000) but not odd ones (10_400); event time 55_000 expires the
// event-time map entries, 54_999 does not.
func checkTTL(t testing.TB, b backend, clock *statestoretest.Clock, n int) {
	t.Helper()
	clock.Advance(11_000 - clock.Now())
	for i := range n {
		k := key(i)
		_, ok, err := b.Get(kgOf(k), stTTL, k)
		must(t, err)
		if want := i%2 == 1; ok != want {
			t.Fatalf("key %q: ttl state present=%v at 11000, want %v: the expiry was not restored", k, ok, want)
		}
	}
	for _, at := range []int64{54_999, 55_000} {
		for kg := range maxPar {
			b.SetEventTime(uint16(kg), at)
		}
		for i := range n {
			k := key(i)
			_, ok, err := b.MapGet(kgOf(k), stETTL, k, []byte("e"))
			must(t, err)
			if want := at < 55_000; ok != want {
				t.Fatalf("key %q: event-time entry present=%v at %d, want %v: the expiry was not restored", k, ok, at, want)
			}
		}
	}
}

// diff reports the first differing line of two dumps.
func diff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := range max(len(al), len(bl)) {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			return fmt.Sprintf("line %d:\n  want %s\n  got  %s", i+1, x, y)
		}
	}
	return ""
}

func names(fs []statestore.FileHandle, shared bool) []string {
	var out []string
	for _, f := range fs {
		if f.Shared == shared {
			out = append(out, f.Name)
		}
	}
	slices.Sort(out)
	return out
}
