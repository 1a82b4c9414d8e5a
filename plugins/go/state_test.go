package wasmstream_test

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wasmstream/wasmstream/abi"
	wasmstream "github.com/wasmstream/wasmstream/plugins/go"
	"github.com/wasmstream/wasmstream/plugins/go/wasmstreamtest"
	"github.com/wasmstream/wasmstream/statestore"
)

type profile struct {
	Name string   `json:"name"`
	Tags []string `json:"tags"`
}

// States of the test binary, in contract order.
var (
	counter  = wasmstream.NewValueState("counter", wasmstream.Int64)
	total    = wasmstream.NewValueState("total", wasmstream.Float64)
	label    = wasmstream.NewValueState("label", wasmstream.String)
	flag     = wasmstream.NewValueState("flag", wasmstream.Bool)
	blob     = wasmstream.NewValueState("blob", wasmstream.Bytes, wasmstream.WithTTL(90*time.Minute, wasmstream.TTLUpdateOnReadAndWrite(), wasmstream.TTLEventTime()))
	profiles = wasmstream.NewValueState("profile", wasmstream.JSONCodec[profile]())
	names    = wasmstream.NewListState("names", wasmstream.String)
	nums     = wasmstream.NewListState("nums", wasmstream.Int64, wasmstream.WithTTL(time.Second))
	chunks   = wasmstream.NewListState("chunks", wasmstream.Bytes)
	seen     = wasmstream.NewMapState("seen", wasmstream.String, wasmstream.Int64)
	sums     = wasmstream.NewMapState("sums", wasmstream.Int64, wasmstream.Float64)
	docs     = wasmstream.NewMapState("docs", wasmstream.Int64, wasmstream.Bytes)
	views    = wasmstream.NewMapState("views", wasmstream.Int64, wasmstream.Int64)
)

func TestContractDeclaresStatesInOrder(t *testing.T) {
	h := start(t, nil)
	c := h.Contract()
	// This file's states are consecutive, in declaration order (other test
	// files declare states too).
	at := stateIndex(c, "counter")
	var got []string
	for _, s := range c.States[at:] {
		got = append(got, s.Name+":"+string(s.Kind))
	}
	want := []string{"counter:value", "total:value", "label:value", "flag:value", "blob:value", "profile:value",
		"names:list", "nums:list", "chunks:list", "seen:map", "sums:map", "docs:map", "views:map"}
	if !slices.Equal(got[:len(want)], want) {
		t.Fatalf("states = %v, want prefix %v", got, want)
	}
	if c.Name != "sdktest" || c.ABI != abi.Version {
		t.Errorf("name %q abi %d", c.Name, c.ABI)
	}
	ttl := c.States[stateIndex(c, "blob")].TTL
	if ttl == nil || *ttl != (abi.TTL{Millis: 90 * 60 * 1000, Update: abi.TTLOnReadAndWrite, Domain: abi.TimeEvent}) {
		t.Errorf("blob ttl = %+v", ttl)
	}
	if ttl := c.States[stateIndex(c, "nums")].TTL; ttl == nil || *ttl != (abi.TTL{Millis: 1000}) {
		t.Errorf("nums ttl = %+v", ttl)
	}
	if c.States[at].TTL != nil {
		t.Errorf("counter has a ttl")
	}
}

func stateIndex(c abi.Contract, name string) int {
	for i, s := range c.States {
		if s.Name == name {
			return i
		}
	}
	panic("no state " + name)
}

func TestValueState(t *testing.T) {
	h := start(t, nil)
	do(t, h, "a", func(ctx *wasmstream.Context) {
		if v, ok := counter.Value(ctx); ok || v != 0 {
			t.Errorf("absent counter = %d, %v", v, ok)
		}
		counter.Update(ctx, 40)
		if n := counter.AddInt64(ctx, 2); n != 42 {
			t.Errorf("AddInt64 = %d, want 42", n)
		}
		if v, ok := counter.Value(ctx); !ok || v != 42 {
			t.Errorf("counter = %d, %v", v, ok)
		}
	})
	do(t, h, "b", func(ctx *wasmstream.Context) {
		if n := counter.AddInt64(ctx, -1); n != -1 {
			t.Errorf("other key's AddInt64 = %d, want -1", n)
		}
		if x := total.AddFloat64(ctx, 1.25); x != 1.25 {
			t.Errorf("AddFloat64 = %v", x)
		}
		if x := total.AddFloat64(ctx, 0.5); x != 1.75 {
			t.Errorf("AddFloat64 = %v", x)
		}
	})
	if v, ok := wasmstreamtest.Value(h, counter, "a"); !ok || v != 42 {
		t.Errorf("stored counter a = %d, %v", v, ok)
	}
	if b, _ := h.ValueBytes("counter", "a"); !bytes.Equal(b, []byte{42, 0, 0, 0, 0, 0, 0, 0}) {
		t.Errorf("Int64 is not 8 bytes little-endian: %x", b)
	}
	do(t, h, "a", func(ctx *wasmstream.Context) { counter.Clear(ctx) })
	if _, ok := wasmstreamtest.Value(h, counter, "a"); ok {
		t.Errorf("counter a survived Clear")
	}
	if v, _ := wasmstreamtest.Value(h, total, "b"); v != 1.75 {
		t.Errorf("total b = %v", v)
	}
}

func TestValueCodecs(t *testing.T) {
	h := start(t, nil)
	big := bytes.Repeat([]byte("0123456789"), 1000) // larger than the read buffer
	do(t, h, "k", func(ctx *wasmstream.Context) {
		label.Update(ctx, "héllo")
		flag.Update(ctx, true)
		blob.Update(ctx, big)
		profiles.Update(ctx, profile{Name: "ann", Tags: []string{"x", "y"}})
	})
	do(t, h, "k", func(ctx *wasmstream.Context) {
		if s, ok := label.Value(ctx); !ok || s != "héllo" {
			t.Errorf("label = %q, %v", s, ok)
		}
		if b, ok := flag.Value(ctx); !ok || !b {
			t.Errorf("flag = %v, %v", b, ok)
		}
		if b, ok := blob.Value(ctx); !ok || !bytes.Equal(b, big) {
			t.Errorf("blob: %d bytes, %v", len(b), ok)
		}
		if p, ok := profiles.Value(ctx); !ok || p.Name != "ann" || !slices.Equal(p.Tags, []string{"x", "y"}) {
			t.Errorf("profile = %+v, %v", p, ok)
		}
		flag.Update(ctx, false)
		if b, ok := flag.Value(ctx); !ok || b {
			t.Errorf("flag after false = %v, %v", b, ok)
		}
	})
	if b, _ := h.ValueBytes("profile", "k"); string(b) != `{"name":"ann","tags":["x","y"]}` {
		t.Errorf("JSON codec stored %s", b)
	}
}

func TestAddNeedsNumberCodec(t *testing.T) {
	h := start(t, nil)
	err := fails(t, h, "k", func(ctx *wasmstream.Context) { label.AddInt64(ctx, 1) })
	if err == nil || !strings.Contains(err.Error(), `state "label": AddInt64 needs the Int64 codec`) {
		t.Errorf("AddInt64 on a String state: %v", err)
	}
	err = fails(t, h, "k", func(ctx *wasmstream.Context) { counter.AddFloat64(ctx, 1) })
	if err == nil || !strings.Contains(err.Error(), "AddFloat64 needs the Float64 codec") {
		t.Errorf("AddFloat64 on an Int64 state: %v", err)
	}
	err = fails(t, h, "k", func(ctx *wasmstream.Context) { seen.AddFloat64(ctx, "x", 1) })
	if err == nil || !strings.Contains(err.Error(), `state "seen": AddFloat64 needs the Float64 codec`) {
		t.Errorf("AddFloat64 on an Int64 map: %v", err)
	}
	err = fails(t, h, "k", func(ctx *wasmstream.Context) { docs.AddInt64(ctx, 1, 1) })
	if err == nil || !strings.Contains(err.Error(), "AddInt64 needs the Int64 codec") {
		t.Errorf("AddInt64 on a Bytes map: %v", err)
	}
}

func TestDecodeFailureNamesState(t *testing.T) {
	h := start(t, nil)
	kg := statestore.KeyGroup([]byte("k"), wasmstreamtest.MaxParallelism)
	if err := h.Backend().Put(kg, stateIndex(h.Contract(), "counter"), []byte("k"), []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	err := fails(t, h, "k", func(ctx *wasmstream.Context) { counter.Value(ctx) })
	if err == nil || !strings.Contains(err.Error(), `state "counter": wasmstream: cannot decode stored value: Int64 wants 8 bytes, got 3`) ||
		!strings.Contains(err.Error(), "seq 1") {
		t.Errorf("decode failure: %v", err)
	}
	// The host refuses to add to a value that is not 8 bytes.
	err = fails(t, h, "k", func(ctx *wasmstream.Context) { counter.AddInt64(ctx, 1) })
	if err == nil || !strings.Contains(err.Error(), "not an 8-byte number") {
		t.Errorf("host add on 3 bytes: %v", err)
	}
}

func TestListState(t *testing.T) {
	h := start(t, nil)
	do(t, h, "k", func(ctx *wasmstream.Context) {
		dst := make([]string, 0, 8)
		if got := names.Get(ctx, dst); len(got) != 0 {
			t.Errorf("absent list = %q", got)
		}
		names.Add(ctx, "a")
		names.AddAll(ctx, []string{"b", "", "c"})
		got := names.Get(ctx, append(dst, "keep"))
		if !slices.Equal(got, []string{"keep", "a", "b", "", "c"}) {
			t.Errorf("Get = %q", got)
		}
		if &got[0] != &dst[:1][0] {
			t.Errorf("Get reallocated a dst with room")
		}
		var seenItems []string
		names.ForEach(ctx, func(s string) bool {
			seenItems = append(seenItems, s)
			return s != "b"
		})
		if !slices.Equal(seenItems, []string{"a", "b"}) {
			t.Errorf("ForEach stopped at %q", seenItems)
		}
		names.Update(ctx, []string{"z"})
		if got := names.Get(ctx, nil); !slices.Equal(got, []string{"z"}) {
			t.Errorf("after Update = %q", got)
		}
		nums.AddAll(ctx, []int64{3, -4})
		nums.Add(ctx, 5)
	})
	if got := wasmstreamtest.List(h, nums, "k"); !slices.Equal(got, []int64{3, -4, 5}) {
		t.Errorf("nums = %v", got)
	}
	do(t, h, "k", func(ctx *wasmstream.Context) {
		names.Update(ctx, nil)
		if got := names.Get(ctx, nil); len(got) != 0 {
			t.Errorf("after empty Update = %q", got)
		}
		nums.Clear(ctx)
		if got := nums.Get(ctx, nil); len(got) != 0 {
			t.Errorf("after Clear = %v", got)
		}
	})
	if got := h.ListBytes("nums", "k"); len(got) != 0 {
		t.Errorf("stored nums after Clear = %q", got)
	}
}

func TestListForEachIsReentrant(t *testing.T) {
	h := start(t, nil)
	big := bytes.Repeat([]byte{'x'}, 3000)
	do(t, h, "k", func(ctx *wasmstream.Context) {
		chunks.AddAll(ctx, [][]byte{[]byte("one"), big, []byte("three")})
		blob.Update(ctx, bytes.Repeat([]byte{'y'}, 5000))
		var lens []int
		chunks.ForEach(ctx, func(b []byte) bool {
			lens = append(lens, len(b))
			// Reads and nested iterations inside the callback use their own
			// buffers.
			if v, _ := blob.Value(ctx); len(v) != 5000 {
				t.Errorf("nested Value: %d bytes", len(v))
			}
			n := 0
			chunks.ForEach(ctx, func([]byte) bool { n++; return true })
			if want := 3 + len(lens) - 1; n != want { // plus the items added so far
				t.Errorf("nested ForEach saw %d items, want %d", n, want)
			}
			chunks.Add(ctx, []byte("more")) // iterates over a snapshot
			return true
		})
		if !slices.Equal(lens, []int{3, 3000, 5}) {
			t.Errorf("ForEach item lengths = %v", lens)
		}
		if got := chunks.Get(ctx, nil); len(got) != 6 || string(got[5]) != "more" {
			t.Errorf("after adds in ForEach: %d items", len(got))
		}
	})
}

func TestMapState(t *testing.T) {
	h := start(t, nil)
	do(t, h, "u1", func(ctx *wasmstream.Context) {
		if !seen.IsEmpty(ctx) {
			t.Errorf("new map not empty")
		}
		if v, ok := seen.Get(ctx, "x"); ok || v != 0 {
			t.Errorf("absent Get = %d, %v", v, ok)
		}
		seen.Put(ctx, "b", 2)
		seen.Put(ctx, "a", 1)
		if n := seen.AddInt64(ctx, "c", 5); n != 5 {
			t.Errorf("AddInt64 new = %d", n)
		}
		if n := seen.AddInt64(ctx, "a", 10); n != 11 {
			t.Errorf("AddInt64 = %d", n)
		}
		if v, ok := seen.Get(ctx, "a"); !ok || v != 11 {
			t.Errorf("Get a = %d, %v", v, ok)
		}
		if !seen.Contains(ctx, "b") || seen.Contains(ctx, "zz") {
			t.Errorf("Contains wrong")
		}
		seen.Remove(ctx, "b")
		if seen.Contains(ctx, "b") || seen.IsEmpty(ctx) {
			t.Errorf("after Remove")
		}
		var keys []string
		var vals []int64
		seen.ForEach(ctx, func(k string, v int64) bool {
			keys = append(keys, k)
			vals = append(vals, v)
			return true
		})
		if !slices.Equal(keys, []string{"a", "c"}) || !slices.Equal(vals, []int64{11, 5}) {
			t.Errorf("ForEach = %v %v", keys, vals)
		}
		keys = keys[:0]
		seen.ForEachKey(ctx, func(k string) bool { keys = append(keys, k); return false })
		if !slices.Equal(keys, []string{"a"}) {
			t.Errorf("ForEachKey with early stop = %v", keys)
		}
		vals = vals[:0]
		seen.ForEachValue(ctx, func(v int64) bool { vals = append(vals, v); return true })
		if !slices.Equal(vals, []int64{11, 5}) {
			t.Errorf("ForEachValue = %v", vals)
		}
		if x := sums.AddFloat64(ctx, 7, 0.25); x != 0.25 {
			t.Errorf("AddFloat64 = %v", x)
		}
		docs.Put(ctx, 1, bytes.Repeat([]byte{'d'}, 4000))
		if v, ok := docs.Get(ctx, 1); !ok || len(v) != 4000 {
			t.Errorf("large map value: %d bytes, %v", len(v), ok)
		}
	})
	if got := wasmstreamtest.Map(h, seen, "u1"); len(got) != 2 || got["a"] != 11 || got["c"] != 5 {
		t.Errorf("stored seen = %v", got)
	}
	if got := wasmstreamtest.Map(h, seen, "u2"); len(got) != 0 {
		t.Errorf("other key's map = %v", got)
	}
	do(t, h, "u1", func(ctx *wasmstream.Context) {
		seen.Clear(ctx)
		if !seen.IsEmpty(ctx) {
			t.Errorf("not empty after Clear")
		}
		n := 0
		seen.ForEach(ctx, func(string, int64) bool { n++; return true })
		if n != 0 {
			t.Errorf("ForEach after Clear saw %d", n)
		}
	})
}

func TestStateUseOutsideProcessElementFails(t *testing.T) {
	var saved *wasmstream.Context
	h := start(t, nil)
	do(t, h, "k", func(ctx *wasmstream.Context) { saved = ctx })
	step = func(ctx *wasmstream.Context, _ *wasmstream.Event) error { return nil }
	func() {
		defer func() {
			r := recover()
			if r == nil || !strings.Contains(r.(error).Error(), "valid only during ProcessElement") {
				t.Errorf("state call after ProcessElement: %v", r)
			}
		}()
		counter.Value(saved)
	}()
}

func TestDeclaringAfterDescribePanics(t *testing.T) {
	start(t, nil)
	defer func() {
		r := recover()
		if r == nil || !strings.Contains(r.(string), "declared after the plugin was described") {
			t.Errorf("late declaration: %v", r)
		}
	}()
	wasmstream.NewValueState("late", wasmstream.Int64)
}

// TestStateOpsDoNotAllocate measures the SDK side of state calls. The
// operations measured are those the harness's in-memory backend serves
// without allocating for existing entries (its list writes copy items).
func TestStateOpsDoNotAllocate(t *testing.T) {
	h := start(t, nil)
	do(t, h, "k", func(ctx *wasmstream.Context) {
		counter.Update(ctx, 1)
		seen.Put(ctx, "a", 1)
		views.Put(ctx, 7, 1)
		nums.Update(ctx, []int64{1, 2, 3})
		blob.Update(ctx, []byte("abc"))
		dst := make([]int64, 0, 8)
		abc := []byte("abc")
		allocs := testing.AllocsPerRun(50, func() {
			counter.Value(ctx)
			counter.Update(ctx, 2)
			counter.AddInt64(ctx, 1)
			total.AddFloat64(ctx, 1)
			blob.Value(ctx)
			blob.Update(ctx, abc)
			seen.Get(ctx, "a")
			seen.Put(ctx, "a", 3)
			seen.Contains(ctx, "a")
			views.AddInt64(ctx, 7, 1)
			views.Get(ctx, 7)
			nums.Get(ctx, dst[:0])
		})
		if allocs != 0 {
			t.Errorf("%v allocations", allocs)
		}
	})
}
