// Package statestoretest is the conformance suite of state backends: Run
// checks every state operation, every TTL behaviour and every timer
// operation (statestore.TimerStore) against a backend, with a
// processing-time clock the suite controls; RunDurable checks that a backend
// with storage finds its state and timers again after reopening. Each backend's tests call
// Run; backends that pass behave the same.
package statestoretest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"testing"

	"github.com/wasmstream/wasmstream/abi"
	"github.com/wasmstream/wasmstream/statestore"
)

// Clock is a processing-time clock tests move by hand.
type Clock struct{ ms atomic.Int64 }

// NewClock returns a clock reading ms.
func NewClock(ms int64) *Clock {
	c := &Clock{}
	c.ms.Store(ms)
	return c
}

// Now returns the clock's time in ms; it is a statestore.Config.Clock.
func (c *Clock) Now() int64 { return c.ms.Load() }

// Advance moves the clock forward by ms.
func (c *Clock) Advance(ms int64) { c.ms.Add(ms) }

// Opener opens an empty backend for cfg; the backend is closed by the test
// (Opener need not register a cleanup for it).
type Opener func(t *testing.T, cfg statestore.Config) statestore.Backend

// MaxParallelism is the number of key groups the suite's backends have.
const MaxParallelism = 8

// States of the suite's plain (TTL-free) contract.
const (
	stValue = iota
	stList
	stMap
	stValue2
)

func plainStates() []abi.StateDesc {
	return []abi.StateDesc{
		{Name: "value", Kind: abi.KindValue},
		{Name: "list", Kind: abi.KindList},
		{Name: "map", Kind: abi.KindMap},
		{Name: "value2", Kind: abi.KindValue},
	}
}

// fixture is an open backend with its clock.
type fixture struct {
	t     *testing.T
	b     statestore.Backend
	clock *Clock
}

func open(t *testing.T, o Opener, states []abi.StateDesc) *fixture {
	t.Helper()
	c := NewClock(1_000_000)
	f := &fixture{t: t, clock: c}
	f.b = o(t, statestore.Config{States: states, MaxParallelism: MaxParallelism, Clock: c.Now})
	t.Cleanup(func() {
		if err := f.b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return f
}

func kg(key string) uint16 { return statestore.KeyGroup([]byte(key), MaxParallelism) }

func (f *fixture) ok(err error) {
	f.t.Helper()
	if err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) get(st int, key string) (string, bool) {
	f.t.Helper()
	v, ok, err := f.b.Get(kg(key), st, []byte(key))
	f.ok(err)
	return string(v), ok
}

func (f *fixture) wantGet(st int, key, want string, wantOK bool) {
	f.t.Helper()
	if v, ok := f.get(st, key); v != want || ok != wantOK {
		f.t.Fatalf("Get(%d, %q) = %q %v, want %q %v", st, key, v, ok, want, wantOK)
	}
}

func (f *fixture) list(st int, key string) string {
	f.t.Helper()
	enc, err := f.b.ListAppendTo(nil, kg(key), st, []byte(key))
	f.ok(err)
	return items(f.t, enc)
}

func (f *fixture) mapIter(st int, key string, what int) string {
	f.t.Helper()
	enc, err := f.b.MapAppendTo(nil, kg(key), st, []byte(key), what)
	f.ok(err)
	return items(f.t, enc)
}

func (f *fixture) mget(st int, key, uk string) (string, bool) {
	f.t.Helper()
	v, ok, err := f.b.MapGet(kg(key), st, []byte(key), []byte(uk))
	f.ok(err)
	return string(v), ok
}

// items renders abi-encoded items as "a,b,c".
func items(t *testing.T, enc []byte) string {
	t.Helper()
	var out []byte
	for i, rest := 0, enc; ; i++ {
		item, r, ok, err := abi.NextItem(rest)
		if err != nil {
			t.Fatalf("malformed items %x: %v", enc, err)
		}
		if !ok {
			return string(out)
		}
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, item...)
		rest = r
	}
}

func encode(items ...string) []byte {
	var b []byte
	for _, it := range items {
		b = abi.AppendItem(b, []byte(it))
	}
	return b
}

func num(n int64) string {
	return string(binary.LittleEndian.AppendUint64(nil, uint64(n)))
}

func (f *fixture) stats(st int) statestore.StateStats {
	return f.b.Stats()[st]
}

func (f *fixture) wantStats(st int, keys, byts int64) {
	f.t.Helper()
	s := f.stats(st)
	if s.Keys != keys || s.Bytes != byts {
		f.t.Fatalf("state %q: %d keys %d bytes, want %d keys %d bytes", s.Name, s.Keys, s.Bytes, keys, byts)
	}
}

// Run runs the conformance suite against the backends open makes.
func Run(t *testing.T, o Opener) {
	t.Run("Value", func(t *testing.T) { testValue(t, o) })
	t.Run("List", func(t *testing.T) { testList(t, o) })
	t.Run("Map", func(t *testing.T) { testMap(t, o) })
	t.Run("Isolation", func(t *testing.T) { testIsolation(t, o) })
	t.Run("Errors", func(t *testing.T) { testErrors(t, o) })
	t.Run("Flush", func(t *testing.T) { testFlush(t, o) })
	t.Run("ManyKeys", func(t *testing.T) { testManyKeys(t, o) })
	t.Run("TTL", func(t *testing.T) { testTTL(t, o) })
	t.Run("TTLCleanup", func(t *testing.T) { testTTLCleanup(t, o) })
	t.Run("TTLEventTimeCleanupFollowsWatermark", func(t *testing.T) { testTTLWatermark(t, o) })
	t.Run("Timers", func(t *testing.T) { runTimers(t, o) })
}

func testValue(t *testing.T, o Opener) {
	f := open(t, o, plainStates())
	k := []byte("k")
	f.wantGet(stValue, "k", "", false)
	f.ok(f.b.Put(kg("k"), stValue, k, []byte("abc")))
	f.wantGet(stValue, "k", "abc", true)
	f.wantStats(stValue, 1, 4)
	f.ok(f.b.Put(kg("k"), stValue, k, []byte("a longer value")))
	f.wantGet(stValue, "k", "a longer value", true)
	f.ok(f.b.Put(kg("k"), stValue, k, nil))
	f.wantGet(stValue, "k", "", true)
	f.wantStats(stValue, 1, 1)
	f.ok(f.b.Delete(kg("k"), stValue, k))
	f.wantGet(stValue, "k", "", false)
	f.wantStats(stValue, 0, 0)
	f.ok(f.b.Delete(kg("k"), stValue, k))

	for i, want := range []int64{5, 2, 1<<62 + 2} {
		d := []int64{5, -3, 1 << 62}[i]
		n, err := f.b.AddInt64(kg("n"), stValue, []byte("n"), d)
		f.ok(err)
		if n != want {
			t.Fatalf("AddInt64 #%d = %d, want %d", i, n, want)
		}
	}
	f.wantGet(stValue, "n", num(1<<62+2), true)
	x, err := f.b.AddFloat64(kg("x"), stValue, []byte("x"), 1.5)
	f.ok(err)
	x, err = f.b.AddFloat64(kg("x"), stValue, []byte("x"), 0.25)
	f.ok(err)
	if x != 1.75 {
		t.Fatalf("AddFloat64 = %v, want 1.75", x)
	}
	f.wantGet(stValue, "x", string(binary.LittleEndian.AppendUint64(nil, math.Float64bits(1.75))), true)
	f.wantStats(stValue, 2, 2+16)
}

func testList(t *testing.T, o Opener) {
	f := open(t, o, plainStates())
	k := []byte("k")
	g := kg("k")
	if l := f.list(stList, "k"); l != "" {
		t.Fatalf("empty list = %q", l)
	}
	f.ok(f.b.ListAdd(g, stList, k, []byte("a")))
	f.ok(f.b.ListAdd(g, stList, k, nil))
	f.ok(f.b.ListAddAll(g, stList, k, encode("b", "c")))
	if l := f.list(stList, "k"); l != "a,,b,c" {
		t.Fatalf("list = %q, want a,,b,c", l)
	}
	f.wantStats(stList, 1, 1+3)
	f.ok(f.b.ListAddAll(g, stList, k, nil))
	f.ok(f.b.ListReplace(g, stList, k, encode("x", "yz")))
	if l := f.list(stList, "k"); l != "x,yz" {
		t.Fatalf("replaced list = %q", l)
	}
	f.wantStats(stList, 1, 1+3)
	f.ok(f.b.ListAdd(g, stList, k, []byte("w")))
	if l := f.list(stList, "k"); l != "x,yz,w" {
		t.Fatalf("list after replace and add = %q", l)
	}
	f.ok(f.b.ListClear(g, stList, k))
	if l := f.list(stList, "k"); l != "" {
		t.Fatalf("cleared list = %q", l)
	}
	f.wantStats(stList, 0, 0)
	f.ok(f.b.ListReplace(g, stList, k, nil))
	f.wantStats(stList, 0, 0)
	f.ok(f.b.ListAddAll(g, stList, []byte("e"), nil))
	f.wantStats(stList, 0, 0)
	// Appending to a long list keeps order.
	for i := range 300 {
		f.ok(f.b.ListAdd(g, stList, k, fmt.Appendf(nil, "%d", i)))
	}
	enc, err := f.b.ListAppendTo(nil, g, stList, k)
	f.ok(err)
	if n, _ := abi.CountItems(enc); n != 300 {
		t.Fatalf("%d items, want 300", n)
	}
	if item, _, _, _ := abi.NextItem(enc); string(item) != "0" {
		t.Fatalf("first item %q", item)
	}
}

func testMap(t *testing.T, o Opener) {
	f := open(t, o, plainStates())
	k := []byte("k")
	g := kg("k")
	if e, err := f.b.MapIsEmpty(g, stMap, k); err != nil || !e {
		t.Fatalf("MapIsEmpty of absent map = %v %v", e, err)
	}
	for _, kv := range [][2]string{{"b", "2"}, {"a", "1"}, {"c", "3"}, {"", "empty"}} {
		f.ok(f.b.MapPut(g, stMap, k, []byte(kv[0]), []byte(kv[1])))
	}
	if v, ok := f.mget(stMap, "k", "a"); v != "1" || !ok {
		t.Fatalf("MapGet a = %q %v", v, ok)
	}
	if v, ok := f.mget(stMap, "k", ""); v != "empty" || !ok {
		t.Fatalf("MapGet empty user key = %q %v", v, ok)
	}
	if _, ok := f.mget(stMap, "k", "z"); ok {
		t.Fatal("MapGet of an absent user key found it")
	}
	if ok, err := f.b.MapContains(g, stMap, k, []byte("c")); err != nil || !ok {
		t.Fatalf("MapContains c = %v %v", ok, err)
	}
	if got := f.mapIter(stMap, "k", abi.IterKeys); got != ",a,b,c" {
		t.Fatalf("keys = %q", got)
	}
	if got := f.mapIter(stMap, "k", abi.IterValues); got != "empty,1,2,3" {
		t.Fatalf("values = %q", got)
	}
	if got := f.mapIter(stMap, "k", abi.IterEntries); got != ",empty,a,1,b,2,c,3" {
		t.Fatalf("entries = %q", got)
	}
	f.wantStats(stMap, 1, 1+3*2+5)
	f.ok(f.b.MapPut(g, stMap, k, []byte("a"), []byte("one")))
	f.ok(f.b.MapDelete(g, stMap, k, []byte("b")))
	f.ok(f.b.MapDelete(g, stMap, k, []byte("nope")))
	if got := f.mapIter(stMap, "k", abi.IterEntries); got != ",empty,a,one,c,3" {
		t.Fatalf("entries after put and delete = %q", got)
	}
	f.wantStats(stMap, 1, 1+4+2+5)
	n, err := f.b.MapAddInt64(g, stMap, k, []byte("n"), 7)
	f.ok(err)
	n, err = f.b.MapAddInt64(g, stMap, k, []byte("n"), -2)
	f.ok(err)
	if n != 5 {
		t.Fatalf("MapAddInt64 = %d", n)
	}
	x, err := f.b.MapAddFloat64(g, stMap, k, []byte("x"), 0.5)
	f.ok(err)
	if x != 0.5 {
		t.Fatalf("MapAddFloat64 = %v", x)
	}
	if e, err := f.b.MapIsEmpty(g, stMap, k); err != nil || e {
		t.Fatalf("MapIsEmpty = %v %v", e, err)
	}
	f.ok(f.b.MapClear(g, stMap, k))
	if e, err := f.b.MapIsEmpty(g, stMap, k); err != nil || !e {
		t.Fatalf("MapIsEmpty after clear = %v %v", e, err)
	}
	if got := f.mapIter(stMap, "k", abi.IterEntries); got != "" {
		t.Fatalf("entries after clear = %q", got)
	}
	f.wantStats(stMap, 0, 0)
	// Deleting the last entry removes the key.
	f.ok(f.b.MapPut(g, stMap, k, []byte("a"), []byte("1")))
	f.ok(f.b.MapDelete(g, stMap, k, []byte("a")))
	f.wantStats(stMap, 0, 0)
}

// testIsolation checks that keys, states and key groups never see each
// other's data, including keys that are prefixes of others.
func testIsolation(t *testing.T, o Opener) {
	f := open(t, o, plainStates())
	put := func(key, uk, v string) {
		f.ok(f.b.MapPut(kg(key), stMap, []byte(key), []byte(uk), []byte(v)))
	}
	put("a", "bc", "1")
	put("ab", "c", "2")
	put("abc", "", "3")
	if got := f.mapIter(stMap, "a", abi.IterEntries); got != "bc,1" {
		t.Fatalf("map of a = %q", got)
	}
	if got := f.mapIter(stMap, "ab", abi.IterEntries); got != "c,2" {
		t.Fatalf("map of ab = %q", got)
	}
	f.ok(f.b.ListAdd(kg("a"), stList, []byte("a"), []byte("x")))
	f.ok(f.b.ListAdd(kg("a\x00"), stList, []byte("a\x00"), []byte("y")))
	if got := f.list(stList, "a"); got != "x" {
		t.Fatalf("list of a = %q", got)
	}
	f.ok(f.b.Put(kg("a"), stValue, []byte("a"), []byte("v")))
	f.wantGet(stValue2, "a", "", false)
	// The same key in two key groups (a caller may route it anywhere).
	f.ok(f.b.Put(0, stValue2, []byte("k"), []byte("g0")))
	f.ok(f.b.Put(1, stValue2, []byte("k"), []byte("g1")))
	if v, _, _ := f.b.Get(0, stValue2, []byte("k")); string(v) != "g0" {
		t.Fatalf("key group 0 holds %q", v)
	}
	if v, _, _ := f.b.Get(1, stValue2, []byte("k")); string(v) != "g1" {
		t.Fatalf("key group 1 holds %q", v)
	}
	f.ok(f.b.Flush())
	if got := f.mapIter(stMap, "abc", abi.IterEntries); got != ",3" {
		t.Fatalf("map of abc after flush = %q", got)
	}
}

func testErrors(t *testing.T, o Opener) {
	f := open(t, o, plainStates())
	k := []byte("k")
	g := kg("k")
	for name, err := range map[string]error{
		"Get on a list":        func() error { _, _, err := f.b.Get(g, stList, k); return err }(),
		"Put on a map":         f.b.Put(g, stMap, k, nil),
		"ListAdd on a value":   f.b.ListAdd(g, stValue, k, nil),
		"MapPut on a list":     f.b.MapPut(g, stList, k, k, k),
		"unknown state id":     f.b.Put(g, 99, k, nil),
		"negative state id":    f.b.Delete(g, -1, k),
		"MapAppendTo on value": func() error { _, err := f.b.MapAppendTo(nil, g, stValue, k, abi.IterKeys); return err }(),
	} {
		if !errors.Is(err, statestore.ErrBadState) {
			t.Errorf("%s: %v, want ErrBadState", name, err)
		}
	}
	f.ok(f.b.Put(g, stValue, k, []byte("abc")))
	if _, err := f.b.AddInt64(g, stValue, k, 1); !errors.Is(err, statestore.ErrNotNumber) {
		t.Errorf("AddInt64 on 3 bytes: %v", err)
	}
	if _, err := f.b.AddFloat64(g, stValue, k, 1); !errors.Is(err, statestore.ErrNotNumber) {
		t.Errorf("AddFloat64 on 3 bytes: %v", err)
	}
	f.wantGet(stValue, "k", "abc", true)
	f.ok(f.b.MapPut(g, stMap, k, k, []byte("abc")))
	if _, err := f.b.MapAddInt64(g, stMap, k, k, 1); !errors.Is(err, statestore.ErrNotNumber) {
		t.Errorf("MapAddInt64 on 3 bytes: %v", err)
	}
	bad := []byte{5, 0, 0, 0, 'a'}
	if err := f.b.ListAddAll(g, stList, k, bad); err == nil {
		t.Error("ListAddAll of a malformed list succeeded")
	}
	if err := f.b.ListReplace(g, stList, k, bad); err == nil {
		t.Error("ListReplace with a malformed list succeeded")
	}
	if l := f.list(stList, "k"); l != "" {
		t.Errorf("list after malformed writes = %q", l)
	}
}

func testFlush(t *testing.T, o Opener) {
	f := open(t, o, plainStates())
	f.ok(f.b.Put(kg("k"), stValue, []byte("k"), []byte("v1")))
	f.ok(f.b.Flush())
	f.ok(f.b.Put(kg("k"), stValue, []byte("k"), []byte("v2")))
	f.ok(f.b.ListAdd(kg("k"), stList, []byte("k"), []byte("a")))
	f.ok(f.b.Flush())
	f.ok(f.b.ListAdd(kg("k"), stList, []byte("k"), []byte("b")))
	f.ok(f.b.Flush())
	f.ok(f.b.Flush())
	f.wantGet(stValue, "k", "v2", true)
	if l := f.list(stList, "k"); l != "a,b" {
		t.Fatalf("list = %q", l)
	}
}

// testManyKeys writes more keys than a small cache holds, so a backend with
// a cache evicts and reloads.
func testManyKeys(t *testing.T, o Opener) {
	f := open(t, o, plainStates())
	const n = 3000
	val := bytes.Repeat([]byte("x"), 100)
	for i := range n {
		key := fmt.Appendf(nil, "user-%d", i)
		g := kg(string(key))
		f.ok(f.b.Put(g, stValue, key, val))
		_, err := f.b.MapAddInt64(g, stMap, key, []byte("views"), int64(i))
		f.ok(err)
		f.ok(f.b.ListAdd(g, stList, key, key))
	}
	for i := range n {
		key := fmt.Sprintf("user-%d", i)
		f.wantGet(stValue, key, string(val), true)
		if v, ok := f.mget(stMap, key, "views"); v != num(int64(i)) || !ok {
			t.Fatalf("%s views = %x %v", key, v, ok)
		}
		_, err := f.b.MapAddInt64(kg(key), stMap, []byte(key), []byte("views"), 1)
		f.ok(err)
		if l := f.list(stList, key); l != key {
			t.Fatalf("%s list = %q", key, l)
		}
	}
	for i := range n {
		key := fmt.Sprintf("user-%d", i)
		if v, _ := f.mget(stMap, key, "views"); v != num(int64(i)+1) {
			t.Fatalf("%s views after add = %x", key, v)
		}
	}
	s := f.stats(stValue)
	if s.Keys != n || s.Bytes != int64(n*100)+int64(len(fmt.Sprint(n)))*0+keyBytes(n) {
		t.Fatalf("value stats %+v", s)
	}
}

func keyBytes(n int) int64 {
	var b int64
	for i := range n {
		b += int64(len(fmt.Sprintf("user-%d", i)))
	}
	return b
}
