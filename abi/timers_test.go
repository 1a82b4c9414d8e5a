package abi

import (
	"encoding/binary"
	"hash/fnv"
	"math"
	"testing"
)

func TestJitterTime(t *testing.T) {
	ref := func(key []byte, ts, jitter int64, payload []byte) int64 {
		h := fnv.New64a()
		h.Write(key)
		h.Write(binary.LittleEndian.AppendUint64(nil, uint64(ts)))
		h.Write(payload)
		return ts + int64(h.Sum64()%uint64(jitter))
	}
	seen := map[int64]bool{}
	for i := range 1000 {
		key := []byte{byte(i), byte(i >> 8), 'k'}
		ts := int64(1_700_000_000_000 + i*7919)
		for _, jitter := range []int64{1, 2, 1000, 60_000, math.MaxInt32} {
			got := JitterTime(key, ts, jitter, []byte("p"))
			if want := ref(key, ts, jitter, []byte("p")); got != want {
				t.Fatalf("JitterTime(%q, %d, %d) = %d, want %d", key, ts, jitter, got, want)
			}
			if got < ts || got >= ts+jitter {
				t.Fatalf("JitterTime(%q, %d, %d) = %d outside [ts, ts+jitter)", key, ts, jitter, got)
			}
			if jitter == 60_000 {
				seen[got-ts] = true
			}
		}
	}
	if len(seen) < 900 {
		t.Errorf("1000 keys spread over only %d offsets of 60000", len(seen))
	}
	// Fixed values: effective times are durable (checkpoints hold them), so
	// the function must never change.
	if got := JitterTime([]byte("user-1"), 1000, 60_000, []byte("x")); got != 8663 {
		t.Errorf("JitterTime(user-1, 1000, 60000, x) = %d, want 8663", got)
	}
	if got := JitterTime([]byte("user-1"), 1_700_000_000_000, 3_600_000, nil); got != 1_700_000_259_932 {
		t.Errorf("JitterTime(user-1, 1700000000000, 3600000) = %d, want 1700000259932", got)
	}
	for _, jitter := range []int64{0, -5, math.MinInt64} {
		if got := JitterTime([]byte("k"), 42, jitter, nil); got != 42 {
			t.Errorf("jitter %d: %d, want ts", jitter, got)
		}
	}
	if a, b := JitterTime([]byte("k"), 42, 1000, []byte("a")), JitterTime([]byte("k"), 42, 1000, []byte("b")); a == b {
		t.Logf("payloads a and b collide at %d (allowed, but unlikely)", a)
	}
	if got := JitterTime([]byte("k"), math.MaxInt64-1, math.MaxInt64, nil); got != math.MaxInt64 && got != math.MaxInt64-1 {
		t.Errorf("near the end of time: %d", got)
	}
}
