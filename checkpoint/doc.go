// Package checkpoint stores the durable half of wasmstream's checkpoints:
// the snapshot files of the state backends, the checkpoint metadata that
// makes a checkpoint complete, and the retention of old checkpoints, in a
// local directory or a NATS Object Store bucket.
//
// # Protocol
//
// wasmstream gets exactly-once results from JetStream replay plus barrier
// snapshots (Chandy-Lamport, as in Flink). The coordinator picks the source
// sequence S and a barrier follows event S into every worker. A checkpoint
// then runs through this package as follows:
//
//  1. Store.Begin opens a Pending checkpoint with the next id.
//  2. At the barrier each worker captures its key groups for the backend's
//     snapshot (statestore.Snapshot.Capture), copy-on-write, between its
//     batches; processing goes on.
//  3. Asynchronously each snapshot is written through Pending.Target(part)
//     (statestore.Snapshot.Write), which stores new files and refers to
//     shared files earlier checkpoints stored already; sinks stage their
//     outputs of the epoch and describe them in Metadata.Sinks.
//  4. When every part is written, Store.Commit writes the metadata, last:
//     from then on the checkpoint is complete, and the sinks may publish
//     the epoch's staged outputs. Commit then applies retention. A
//     checkpoint that fails is dropped with Pending.Abort, which deletes
//     what it wrote.
//
// Restore: Store.RestoreLatest (or Store.Latest) finds the newest complete
// checkpoint whose files verify, the backend restores each part from
// Store.Source, the source consumer resumes at Metadata.Sequence+1, and the
// sinks finish any epoch of Metadata.Sinks not yet marked committed. A
// checkpoint that is damaged (its metadata fails its checksum, a file is
// missing or differs from its size or SHA-256) is skipped with a warning
// naming the bad file, and the one before it is used.
//
// # Layout
//
// Object names use "/" in both storages (a local directory maps them to
// subdirectories):
//
//	<job>/chk-<id>/_metadata        the metadata, written last: its presence
//	                                makes checkpoint <id> complete
//	<job>/chk-<id>/<part>/<file>    files private to the checkpoint (a
//	                                memory snapshot, Pebble's MANIFEST,
//	                                OPTIONS and write-ahead log)
//	<job>/shared/<file>             files checkpoints share (Pebble tables,
//	                                named by database instance and file
//	                                number, so a name never means two
//	                                different contents)
//
// Checkpoint ids increase: Begin takes one more than any id present,
// complete or not. A checkpoint directory without _metadata is partial (a
// crash during a checkpoint) and is ignored, then deleted by the next
// retention.
//
// # Retention
//
// After each commit the newest Options.Retain complete checkpoints are kept
// and older ones deleted (their metadata first, so a crash half way leaves
// a partial checkpoint, never a complete one missing files). A shared file
// is deleted when no kept checkpoint and no pending one refers to it: the
// references are counted from the kept checkpoints' metadata each time, so
// the count survives crashes.
//
// # Durable formats
//
// The metadata and this layout are durable formats. Backwards incompatible
// changes are gated behind a new format version: a reader refuses a version
// it does not know, naming the version found and the one it supports. The
// metadata file, format version 1, is the JSON object
//
//	{"format": 1, "sha256": "<hex of the metadata bytes>", "metadata": {…}}
//
// where "metadata" is Metadata as JSON and the checksum covers its bytes
// exactly as stored. The snapshot files have the formats of their backends
// (statestore/memory, statestore/pebble).
package checkpoint
