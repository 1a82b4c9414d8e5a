// Package pebble is the durable keyed state backend: value, list and map
// state and timers in a Pebble (github.com/cockroachdb/pebble/v2) database,
// behind a bounded write-back cache so that hot keys are served, and
// aggregated, at memory speed.
//
// # Cache
//
// The state engine is the one the memory backend uses
// (statestore/internal/core). A record (what one key holds in one state: a
// value, a whole list or a whole map) is read from Pebble on first use and
// then kept in memory; changes are written back in one Pebble batch per key
// group when the key group's share of Options.CacheBytes is exceeded (the
// least recently used records are then evicted), on Flush and on Close.
// Reads always see the job's own writes. A record is loaded whole, so a map
// or list larger than a key group's share of the cache is read in full on
// each miss; appends and single-entry writes never rewrite a whole list or
// map.
//
// # Timers
//
// Timer writes are buffered in a Pebble batch per key group, committed when
// it outgrows the key group's share of Options.TimerBatchBytes and on Flush,
// so a timer registered before Flush is durable after it and in the next
// Checkpoint. In front of Pebble, the earliest timers of each key group and
// domain are kept in memory (up to their share of Options.TimerCacheBytes):
// popping and NextTimer read them, and registering or deleting a timer no
// later than the last one held reads nothing from Pebble; when they run out,
// the next ones are read by one range scan. A later timer is looked up in
// Pebble to deduplicate it only when an in-memory bloom filter of the key
// group's timers (about 1.25 to 5 bytes per timer) says it may exist, so
// registering a new timer normally reads nothing either.
//
// # Durable format, version 1
//
// This layout is a durable format. Backwards incompatible changes are gated
// behind a new format version: Open refuses a directory whose version it
// does not know, naming the version found and the one supported.
//
// Every key starts with its key group, so a key group is one contiguous key
// range (to snapshot, hand over on rescale or delete it):
//
//	kg     uint16 big-endian, 0 ≤ kg < 32768
//	st     uint16 big-endian, the state id (index in the contract's states)
//	klen   uvarint, the length of key
//	key    the key's bytes
//
// A key is followed by nothing for value state, by the user key's bytes for
// a map entry (so a map's entries are one range sorted by user key), and by
// the element's sequence number (uint64 big-endian, increasing in append
// order) for a list element. The length prefix makes the key prefix-free:
// no key's range contains another key's entries.
//
// Stored values start with a flags byte. Flags 0: the payload follows.
// Flags 1: the expiry time follows (uint64 big-endian, ms since the Unix
// epoch, in the state's TTL time domain), then the payload. Other flags are
// refused. Every stored value carries the flags byte whether or not its
// state has a TTL, so TTL can be added to or removed from a state: a value
// stored without an expiry does not expire until it is next written (or, with
// update on_read_and_write, read); an expiry stored for a state that no longer
// has a TTL is ignored and dropped at the next write.
//
// The expiry index of a key group lives in its range, under state id 0xFFFF
// (no state has that id):
//
//	kg 0xFFFF domain(1 byte: 0 processing, 1 event) expiry(uint64 big-endian,
//	sign bit flipped) st klen key suffix
//
// with an empty value. It holds one entry per stored cell with an expiry,
// ordered by expiry, so cleanup reads exactly the entries that have expired.
//
// Timers (statestore.TimerStore) live in their key group's range too, under
// the timer tag 0xFFFE (no state has that id):
//
//	kg 0xFFFE domain time key 0x00 0x01 payload
//
//	domain   1 byte, as the ABI: 0 event time, 1 processing time
//	time     uint64 big-endian with the sign bit flipped, so byte order is
//	         numeric order, negative times included
//	key      the timer's key, each 0x00 byte written as 0x00 0xFF
//	0x00 0x01 ends the key
//	payload  the payload's bytes, to the end of the stored key
//
// with an empty value. Escaping the key instead of prefixing its length
// keeps byte order equal to the firing order (time, key, payload) of
// statestore.TimerStore, and the terminator keeps the key prefix-free: a key
// sorts before every longer key it is a prefix of, whatever the payloads.
// The timers of a domain due at a time are thus one range at the start of
// the domain's range; a timer exists at most once because it is its own
// key.
//
// Keys outside every key group (first two bytes 0xFFFF) hold metadata:
//
//	0xFFFF "format"          the format version, decimal ("1")
//	0xFFFF "max_parallelism" the number of key groups, decimal
//	0xFFFF "states"          the states, "name:kind" joined by "\n"
//	0xFFFF "stats" st        keys and bytes of state st, two uvarints,
//	                         written by Flush
//	0xFFFF "timers"          the number of timers, decimal, written by
//	                         Flush
//
// Open refuses a directory written for another number of key groups (keys
// would belong to other key groups) or whose states, by id, have other
// names or kinds than the contract's; states added at the end are accepted.
package pebble
