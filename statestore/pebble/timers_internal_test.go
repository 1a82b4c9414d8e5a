package pebble

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/wasmstream/wasmstream/statestore"
)

func TestTimerKeyRoundTrip(t *testing.T) {
	for _, key := range []string{"", "k", "\x00", "\x00\x00", "a\x00b", "\x00\x01", "\x00\xff", "\xff", "ab\x00"} {
		for _, payload := range []string{"", "p", "\x00", "\x00\x01"} {
			for _, ms := range []int64{-1 << 63, -1, 0, 1, 1<<63 - 1} {
				tr := statestore.Timer{Domain: 1, Time: ms, Key: []byte(key), Payload: []byte(payload)}
				k := appendTimerKey(nil, 7, &tr)
				if !bytes.HasPrefix(k, appendTimerPrefix(nil, 7, 1)) {
					t.Fatalf("%x: no prefix", k)
				}
				gt, gk, gp, _, err := decodeTimerKey(k, nil)
				if err != nil || gt != ms || string(gk) != key || string(gp) != payload {
					t.Fatalf("%d %q %q: decoded %d %q %q %v", ms, key, payload, gt, gk, gp, err)
				}
				if keyTime(string(k)) != ms {
					t.Fatalf("keyTime %d, want %d", keyTime(string(k)), ms)
				}
			}
		}
	}
	for _, bad := range []string{"", "\x00\x07\xff\xfe\x00", "\x00\x07\xff\xfe\x00\x80\x00\x00\x00\x00\x00\x00\x00k\x00\x02",
		"\x00\x07\xff\xfe\x00\x80\x00\x00\x00\x00\x00\x00\x00kkk", "\x00\x07\xff\xfe\x00\x80\x00\x00\x00\x00\x00\x00\x00k\x00\xffk\x00"} {
		if _, _, _, _, err := decodeTimerKey([]byte(bad), nil); err == nil {
			t.Errorf("%q decoded", bad)
		}
	}
}

func TestTimerFilter(t *testing.T) {
	var f timerFilter
	key := func(i int) []byte { return fmt.Appendf(nil, "timer-%d", i) }
	var hashes []uint64
	for i := range 1000 {
		hashes = append(hashes, hashKey(key(i)))
	}
	f.build(hashes)
	for i := range 999 {
		f.add(key(1000 + i))
	}
	if !f.built {
		t.Fatal("the filter needs rebuilding before it holds what it is sized for")
	}
	f.add(key(1999))
	if f.built {
		t.Error("a full filter still claims to be built")
	}
	for i := range 2000 {
		if !f.mayContain(key(i)) {
			t.Fatalf("false negative for %s", key(i))
		}
	}
	fp := 0
	for i := range 100_000 {
		if f.mayContain(key(-1 - i)) {
			fp++
		}
	}
	if fp > 2000 {
		t.Errorf("%d false positives in 100000", fp)
	}
}
