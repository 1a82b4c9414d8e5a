// Package job is the job configuration of wasmstream: a YAML file that names
// the source stream, how events are keyed, the plugin that processes them,
// the parallelism, the state backend, where outputs go and where events that
// cannot be processed are dead-lettered.
//
// A minimal job:
//
//	name: freqcap
//	source: {stream: FREQCAP, subjects: ["views.>"], create: true}
//	key: {field: user_no}
//	plugin: {path: plugin, config: {cap: 3}}
//	sinks:
//	  - {output: capped, type: jetstream, subject: freqcap.capped, create: true}
//
// Event time and late events, optional (defaults shown in comments):
//
//	event_time:
//	  field: ts                   # or header: Event-Time, or source: publish_time (default)
//	  format: auto                # epoch_ms | rfc3339 | auto, for field and header
//	  max_out_of_orderness: 5s    # default 0
//	  idle_timeout: 1m            # default 0: off
//	late:
//	  policy: side_output         # side_output (default) | process | drop
//	  subject: freqcap.late       # default <name>.late
//	  create: true
//
// State, optional (defaults shown in comments):
//
//	state:
//	  backend: pebble             # memory (default) | pebble
//	  dir: state/freqcap          # required for pebble, relative to this file
//	  block_cache_mb: 64          # Pebble's block cache
//	  memtable_mb: 16             # one Pebble memtable
//	  bloom_bits: 10              # bits per key; 0 = default, -1 = off
//	  compression: snappy         # zstd | snappy | none
//	  cache_mb: 256               # write-back cache of state in front of Pebble
//
// The memory backend takes none of the other state keys. A Pebble
// directory keeps the state across runs; it is refused when it was written
// for another max_parallelism or for states the plugin no longer declares
// the same way (states may only be added at the end).
//
// The former top-level "timestamp: <path>" still works and means
// event_time: {field: <path>, format: epoch_ms}.
//
// Parse and Load reject unknown keys (naming them), apply defaults and
// validate; every validation error names the field and how to fix it.
package job
