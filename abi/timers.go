package abi

import "math"

// JitterTime returns the effective time of a timer registered with jitter
// (timer_register): ts + h mod jitter, where h is the 64-bit FNV-1a hash of
// key, ts as 8 little-endian bytes and payload, in that order, taken as an
// unsigned number. It is deterministic, so a replay after a restore
// registers the same timers. A jitter ≤ 0 returns ts; a result past the
// largest int64 is clamped to it.
func JitterTime(key []byte, ts, jitter int64, payload []byte) int64 {
	if jitter <= 0 {
		return ts
	}
	const prime = 1099511628211
	h := uint64(14695981039346656037)
	for _, c := range key {
		h ^= uint64(c)
		h *= prime
	}
	for i := 0; i < 8; i++ {
		h ^= uint64(ts >> (8 * i) & 0xff)
		h *= prime
	}
	for _, c := range payload {
		h ^= uint64(c)
		h *= prime
	}
	d := int64(h % uint64(jitter))
	if ts > math.MaxInt64-d {
		return math.MaxInt64
	}
	return ts + d
}
