package statestore

// KeyGroupHash names the hash that assigns keys to key groups. It is part of
// every durable format that stores key groups: changing it is a format break.
const KeyGroupHash = "fnv1a64-fmix"

// KeyGroup returns the key group of key: a 64-bit FNV-1a hash with a final
// avalanche mix, modulo maxParallelism.
func KeyGroup(key []byte, maxParallelism int) uint16 {
	h := uint64(14695981039346656037)
	for _, c := range key {
		h ^= uint64(c)
		h *= 1099511628211
	}
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	return uint16(h % uint64(maxParallelism))
}

// WorkerOf returns the worker that owns key group kg, as Flink assigns key
// groups to operator instances: contiguous ranges of key groups per worker.
func WorkerOf(kg uint16, maxParallelism, parallelism int) int {
	return int(kg) * parallelism / maxParallelism
}
