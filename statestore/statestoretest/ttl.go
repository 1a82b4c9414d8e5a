package statestoretest

import (
	"fmt"
	"testing"

	"github.com/wasmstream/wasmstream/abi"
)

const ttlMs = 100

// ttlCase is one combination of a state kind and TTL options.
type ttlCase struct {
	kind                  abi.StateKind
	onRead, returnExpired bool
	event                 bool
}

func (c ttlCase) String() string {
	s := string(c.kind)
	if c.onRead {
		s += "/on_read_and_write"
	} else {
		s += "/on_create_and_write"
	}
	if c.returnExpired {
		s += "/return_expired"
	} else {
		s += "/never_return_expired"
	}
	if c.event {
		return s + "/event"
	}
	return s + "/processing"
}

func (c ttlCase) desc() abi.StateDesc {
	t := &abi.TTL{Millis: ttlMs}
	if c.onRead {
		t.Update = abi.TTLOnReadAndWrite
	}
	if c.returnExpired {
		t.Visibility = abi.TTLReturnExpiredIfNotCleanedUp
	}
	if c.event {
		t.Domain = abi.TimeEvent
	}
	return abi.StateDesc{Name: "s", Kind: c.kind, TTL: t}
}

func ttlCases() []ttlCase {
	var cs []ttlCase
	for _, k := range []abi.StateKind{abi.KindValue, abi.KindList, abi.KindMap} {
		for _, onRead := range []bool{false, true} {
			for _, ret := range []bool{false, true} {
				for _, ev := range []bool{false, true} {
					cs = append(cs, ttlCase{k, onRead, ret, ev})
				}
			}
		}
	}
	return cs
}

// ttlFixture drives one TTL state; its time is processing or event time by
// the case's domain, and the other time runs elsewhere to show it is not
// used.
type ttlFixture struct {
	*fixture
	c   ttlCase
	now int64
}

func (f *ttlFixture) setTime(ms int64) {
	f.now = ms
	for g := range MaxParallelism {
		if f.c.event {
			f.b.SetEventTime(uint16(g), ms)
			f.b.SetWatermark(uint16(g), ms)
		} else {
			f.b.SetEventTime(uint16(g), -5_000_000+ms*7)
		}
	}
	if f.c.event {
		f.clock.ms.Store(90_000_000 - ms*3)
	} else {
		f.clock.ms.Store(ms)
	}
}

func (f *ttlFixture) advance(ms int64) { f.setTime(f.now + ms) }

// write stores item under key (a value, a list element, a map entry).
func (f *ttlFixture) write(key, item string) {
	f.t.Helper()
	k := []byte(key)
	switch f.c.kind {
	case abi.KindValue:
		f.ok(f.b.Put(kg(key), 0, k, []byte(item)))
	case abi.KindList:
		f.ok(f.b.ListAdd(kg(key), 0, k, []byte(item)))
	case abi.KindMap:
		f.ok(f.b.MapPut(kg(key), 0, k, []byte(item), []byte(item)))
	}
}

// read returns what a read of key shows: the value, the list, or the map's
// entries' values.
func (f *ttlFixture) read(key string) string {
	f.t.Helper()
	switch f.c.kind {
	case abi.KindValue:
		v, ok := f.get(0, key)
		if !ok {
			return "<absent>"
		}
		return v
	case abi.KindList:
		return f.list(0, key)
	default:
		return f.mapIter(0, key, abi.IterValues)
	}
}

func (f *ttlFixture) want(key, want string) {
	f.t.Helper()
	if got := f.read(key); got != want {
		f.t.Fatalf("at %d: read %q = %q, want %q", f.now, key, got, want)
	}
}

func (f *ttlFixture) empty() string {
	if f.c.kind == abi.KindValue {
		return "<absent>"
	}
	return ""
}

func testTTL(t *testing.T, o Opener) {
	for _, c := range ttlCases() {
		t.Run(c.String(), func(t *testing.T) {
			f := &ttlFixture{fixture: open(t, o, []abi.StateDesc{c.desc()}), c: c}
			f.setTime(1_000_000)
			f.write("k", "a")
			f.advance(60)
			f.want("k", "a")
			f.advance(60) // 120 after the write, 60 after the read
			if c.onRead {
				f.want("k", "a") // the read at 60 renewed it
				f.advance(ttlMs)
			}
			// Expired now.
			if c.returnExpired {
				f.want("k", "a")
			}
			f.want("k", f.empty())
			s := f.stats(0)
			if s.Keys != 0 || s.Bytes != 0 || s.Expired != 1 {
				t.Fatalf("after expiry: %+v, want 0 keys, 0 bytes, 1 expired", s)
			}

			// Entries expire one by one: a list's elements and a map's
			// entries each have their own time.
			f.write("m", "b")
			f.advance(50)
			if c.kind != abi.KindValue {
				f.write("m", "c")
			}
			f.advance(60) // b is 110 old, c 60
			if c.kind == abi.KindValue {
				if c.returnExpired {
					f.want("m", "b")
				}
				f.want("m", "<absent>")
			} else {
				if c.returnExpired {
					f.want("m", "b,c")
				}
				f.want("m", "c")
			}

			// Writing renews under both update types.
			f.write("w", "d")
			f.advance(90)
			f.write("w", "d")
			f.advance(90)
			if c.kind == abi.KindList && c.returnExpired {
				f.want("w", "d,d") // the first element expired
			}
			f.want("w", "d")
		})
	}
	t.Run("Add", func(t *testing.T) {
		states := []abi.StateDesc{
			{Name: "n", Kind: abi.KindValue, TTL: &abi.TTL{Millis: ttlMs}},
			{Name: "m", Kind: abi.KindMap, TTL: &abi.TTL{Millis: ttlMs, Visibility: abi.TTLReturnExpiredIfNotCleanedUp}},
		}
		f := open(t, o, states)
		k := []byte("k")
		for range 2 {
			n, err := f.b.AddInt64(kg("k"), 0, k, 5)
			f.ok(err)
			m, err := f.b.MapAddInt64(kg("k"), 1, k, k, 3)
			f.ok(err)
			if n != 5 || m != 3 {
				t.Fatalf("adds on expired numbers = %d %d, want 5 3 (an expired number counts as absent)", n, m)
			}
			f.clock.Advance(ttlMs)
		}
		if s := f.b.Stats(); s[0].Expired != 1 || s[1].Expired != 1 {
			t.Fatalf("expired counts %d %d, want 1 1", s[0].Expired, s[1].Expired)
		}
	})
	t.Run("MapContainsAndIsEmpty", func(t *testing.T) {
		f := open(t, o, []abi.StateDesc{{Name: "m", Kind: abi.KindMap, TTL: &abi.TTL{Millis: ttlMs}}})
		k := []byte("k")
		f.ok(f.b.MapPut(kg("k"), 0, k, []byte("u"), []byte("v")))
		if ok, _ := f.b.MapContains(kg("k"), 0, k, []byte("u")); !ok {
			t.Fatal("MapContains of a live entry = false")
		}
		f.clock.Advance(ttlMs)
		if ok, _ := f.b.MapContains(kg("k"), 0, k, []byte("u")); ok {
			t.Fatal("MapContains of an expired entry = true")
		}
		f.ok(f.b.MapPut(kg("k"), 0, k, []byte("u"), []byte("v")))
		f.clock.Advance(ttlMs)
		if e, _ := f.b.MapIsEmpty(kg("k"), 0, k); !e {
			t.Fatal("MapIsEmpty with only an expired entry = false")
		}
	})
}

// testTTLCleanup checks that CleanupExpired removes what expired, in expiry
// order, visiting no more entries than it removes (plus stale index
// entries, of which the suite makes none).
func testTTLCleanup(t *testing.T, o Opener) {
	for _, event := range []bool{false, true} {
		t.Run(map[bool]string{false: "processing", true: "event"}[event], func(t *testing.T) {
			d := abi.StateDesc{Name: "v", Kind: abi.KindValue, TTL: &abi.TTL{Millis: ttlMs}}
			m := abi.StateDesc{Name: "m", Kind: abi.KindMap, TTL: &abi.TTL{Millis: ttlMs}}
			if event {
				d.TTL.Domain, m.TTL.Domain = abi.TimeEvent, abi.TimeEvent
			}
			f := &ttlFixture{fixture: open(t, o, []abi.StateDesc{d, m}), c: ttlCase{event: event}}
			f.setTime(5_000)
			for i := range 10 {
				key := fmt.Appendf(nil, "early-%d", i)
				f.ok(f.b.Put(kg(string(key)), 0, key, key))
				f.ok(f.b.MapPut(kg(string(key)), 1, key, []byte("u"), key))
			}
			f.advance(50)
			for i := range 500 {
				key := fmt.Appendf(nil, "late-%d", i)
				f.ok(f.b.Put(kg(string(key)), 0, key, key))
				f.ok(f.b.MapPut(kg(string(key)), 1, key, []byte("u"), key))
			}
			f.ok(f.b.Flush())
			f.advance(50) // the early ones expire now
			cleanup := func(limit int) int {
				n := 0
				for g := range MaxParallelism {
					k, err := f.b.CleanupExpired(uint16(g), limit)
					f.ok(err)
					n += k
				}
				return n
			}
			if n := cleanup(1000); n != 20 {
				t.Fatalf("cleanup removed %d entries, want 20", n)
			}
			for i, s := range f.b.Stats() {
				if s.Expired != 10 || s.Keys != 500 {
					t.Fatalf("state %d: %+v, want 10 expired, 500 keys", i, s)
				}
				if s.ExpiryVisited < 10 || s.ExpiryVisited > 20 {
					t.Fatalf("state %d: cleanup visited %d entries to remove 10", i, s.ExpiryVisited)
				}
			}
			if n := cleanup(1000); n != 0 {
				t.Fatalf("second cleanup removed %d", n)
			}
			f.ok(f.b.Flush())
			f.advance(49)
			if n := cleanup(1000); n != 0 {
				t.Fatalf("cleanup before the late ones expire removed %d", n)
			}
			f.advance(1)
			if n := cleanup(7); n > 7*MaxParallelism {
				t.Fatalf("cleanup with limit 7 removed %d", n)
			}
			for cleanup(100) > 0 {
			}
			for i, s := range f.b.Stats() {
				if s.Expired != 510 || s.Keys != 0 || s.Bytes != 0 {
					t.Fatalf("state %d after all expired: %+v", i, s)
				}
			}
			f.wantGet(0, "late-3", "", false)
		})
	}
}

// testTTLWatermark checks that event-time TTL cleans up by the watermark:
// an entry whose expiry a later event's time has passed stays for an
// out-of-order event that is still after the watermark, and goes once the
// watermark passes its expiry.
func testTTLWatermark(t *testing.T, o Opener) {
	d := abi.StateDesc{Name: "v", Kind: abi.KindValue, TTL: &abi.TTL{Millis: ttlMs, Domain: abi.TimeEvent}}
	f := open(t, o, []abi.StateDesc{d})
	key := []byte("k")
	g := kg("k")
	f.b.SetWatermark(g, 900)
	f.b.SetEventTime(g, 1_000)
	f.ok(f.b.Put(g, 0, key, []byte("v"))) // expires at 1000+ttl
	// A later event (time past the expiry) on another key runs cleanup; the
	// watermark is still before the expiry, so nothing goes.
	f.b.SetEventTime(g, 1_000+ttlMs+500)
	f.ok(f.b.Put(g, 0, []byte("other"), []byte("x")))
	if n, err := f.b.CleanupExpired(g, 100); err != nil || n != 0 {
		t.Fatalf("cleanup with the watermark before the expiry removed %d (%v), want 0", n, err)
	}
	// An out-of-order event after the watermark but before the expiry still
	// sees the entry.
	f.b.SetEventTime(g, 1_000+ttlMs-1)
	if v, ok, err := f.b.Get(g, 0, key); err != nil || !ok || string(v) != "v" {
		t.Fatalf("an on-time event before the expiry reads %q, %v, %v; want the value", v, ok, err)
	}
	// The watermark passes the expiry while a timer at an earlier time
	// fires: the timer's calls clean up nothing it may still read.
	f.b.SetWatermark(g, 1_000+ttlMs)
	f.ok(f.b.Put(g, 0, []byte("other"), []byte("y")))
	if v, ok, err := f.b.Get(g, 0, key); err != nil || !ok || string(v) != "v" {
		t.Fatalf("a timer before the expiry reads %q, %v, %v; want the value", v, ok, err)
	}
	// Between events and timers, cleanup follows the watermark alone, even
	// in a key group whose last event is older: it removes the entry,
	// visiting only it.
	if n, err := f.b.CleanupExpired(g, 100); err != nil || n != 1 {
		t.Fatalf("cleanup with the watermark at the expiry removed %d (%v), want 1", n, err)
	}
	if s := f.b.Stats()[0]; s.Expired != 1 || s.ExpiryVisited > 2 {
		t.Fatalf("after cleanup: %+v, want 1 expired, at most 2 visited", s)
	}
	// The watermark never moves back.
	f.b.SetWatermark(g, 0)
	f.b.SetEventTime(g, 1_000+ttlMs+ttlMs)
	if n, err := f.b.CleanupExpired(g, 100); err != nil || n != 0 {
		t.Fatalf("cleanup removed %d (%v) of an entry that expires after the watermark", n, err)
	}
}
