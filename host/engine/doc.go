// Package engine is the wasmstream runtime: it reads a JetStream stream,
// keys each JSON event, routes it to the worker that owns the event's key
// group, runs the job's keyed process function over batches of events, and
// publishes what the function emits to the job's sinks.
//
// # Data path
//
// One source goroutine reads the stream through an ordered consumer (no
// acks). For each message it takes the stream sequence, publish time and
// pending count from the reply subject, extracts the plugin's fields and the
// key with one jsonscan pass, computes the key group
// (statestore.KeyGroup) and the owning worker (statestore.WorkerOf), and
// appends the event to that worker's current batch, copying its bytes into
// the batch's arena. A batch is handed to its worker when it is full, when
// the source has nothing more pending, or when it has waited for the job's
// linger. Batches are recycled, so the steady state allocates nothing per
// event in the engine itself.
//
// Each worker goroutine owns one process.Function and calls ProcessBatch;
// emitted records go to the sinks of their output port (JetStream with
// bounded asynchronous publishing, or stdout). Events that cannot be parsed
// or keyed, and events the function rejects, are published to the
// dead-letter subject with the original payload and the headers
// Wasmstream-Dlq-Reason, Wasmstream-Source-Subject and Wasmstream-Source-Seq.
//
// # Event time and watermarks
//
// The source gives every event its event time: a JSON field (epoch ms or
// RFC 3339), a header, or the publish time (job event_time). Events whose
// time cannot be read are dead-lettered. The source keeps the watermark as
// Flink's bounded out-of-orderness generator does: the largest event time
// seen minus event_time.max_out_of_orderness minus 1ms, never going back.
//
// Watermarks travel in the batches, so they stay in order with the events:
// when the source hands a worker a batch, the batch carries the watermark
// as of that moment, which covers every event before it. A worker with no
// events pending still needs the watermark: on each linger tick the source
// sends every worker whose last batch carried an older watermark an empty
// batch holding only the watermark (skipping a worker whose batches are all
// in use; the next tick tries again). So watermarks cost one comparison
// per event and at most one extra channel send per worker per linger tick.
// A worker applies a batch's watermark after the batch's events;
// process.Env.Watermark answers it.
//
// With event_time.idle_timeout set, when no event has arrived for that
// long (by Config.Clock) the source advances the watermark to the
// processing time minus the bound minus 1ms, as if an event stamped "now"
// had arrived, so event-time timers fire on a quiet stream. Flink instead
// marks an idle input as idle so it does not hold back other inputs, which
// never advances the watermark of a job with a single input; wasmstream
// reads one stream, so it trades that for progress. Events stamped earlier
// than the advanced watermark that arrive later are late. While the source
// waits for a busy worker it does not count as idle.
//
// # Late events
//
// An event whose time is at or below the watermark when the source reads it
// is late (as in Flink: a watermark w says no more events at or before w
// will come, and timers up to w have fired). late.policy decides: publish
// it, with its headers plus Wasmstream-Event-Time and Wasmstream-Watermark,
// to the late subject (side_output, the default); hand it to the function
// anyway (process); or drop it (drop). Summary.Late counts late events.
//
// # Timers
//
// When the function implements process.TimerFunction and the state backend
// implements statestore.TimerStore, each worker fires the timers of its key
// groups, always from its own goroutine, never during ProcessBatch:
// event-time timers after a batch whose watermark reached them, with Seq
// set to the event that raised the watermark; processing-time timers after
// a batch and when Config.Clock reaches them, with Seq 0. Timers are popped
// in batches of at most 256, merged across the worker's key groups in time
// order, until none is due; a due timer registered while firing fires in
// the same round. Emitted records go to the sinks like any other; a timer
// the function rejects is dead-lettered with its payload, key, domain and
// time (headers Wasmstream-Key, Wasmstream-Timer-Domain,
// Wasmstream-Timer-Time).
//
// # State
//
// Unless Config.Backend gives one, Run opens the backend the job's state
// section names for the function's states, its max_parallelism and the
// engine's Clock: an in-memory one, or Pebble in state.dir (Pebble's log
// lines go to Config.Logf). A Pebble directory written for another
// max_parallelism or other states is refused with the backend's error
// before anything runs. When Run ends, after the workers stopped, it
// flushes and closes that backend, so the state is durable in state.dir.
// Timers live in the backend too (statestore.TimerStore); a function that
// handles or registers timers (process.TimerFunction, Config.UsesTimers)
// is refused a backend without timers.
//
// When a state has a TTL, each worker removes expired entries of its key
// groups after every batch and every second while idle, at most 64 per key
// group each time (statestore.Backend.CleanupExpired), so the cost follows
// what expires. Summary.State reports, per state, keys, bytes, cache hits
// and misses and the entries expired.
//
// # Checkpoints
//
// With checkpoint.interval set, a coordinator goroutine takes a barrier
// checkpoint every interval, one at a time (Chandy-Lamport, as Flink's
// aligned checkpoints):
//
//  1. It begins checkpoint N in the checkpoint store (package checkpoint)
//     and a snapshot of the state backend (statestore.Snapshotter), and
//     asks the source for a barrier. The source, holding its lock, notes
//     the sequence S of the last event it handled and its watermark,
//     and hands every worker its partial batch, or an empty one, carrying
//     the barrier: in order, like the watermark-only batches, so a worker
//     sees every event up to S before the barrier and none after it.
//  2. A worker applies the batch's events, watermark and due timers, then
//     at the barrier (fault point checkpoint.after-barrier) seals its
//     staged exactly-once records of the epoch and begins the capture of
//     its key groups (statestore.Snapshot.Capture), which only marks them.
//     It goes on processing and steps the capture in slices of about 1ms:
//     after each batch, and continuously while no batch waits. A record or
//     timer it is about to change is captured first (copy-on-write). When
//     the capture is done it acks. No worker waits for another.
//  3. Asynchronously, the coordinator writes the snapshot (with Pebble:
//     flush the memtable, hard-link the files, then let the writes held
//     since each worker's barrier go) and each
//     worker's staged records per exactly-once sink as files of the
//     checkpoint (fault point checkpoint.after-snapshot), then commits the
//     metadata: S, the watermark, the plugin's hash and contract, the state
//     parts and, in Metadata.Sinks, the staged files per sink. The
//     checkpoint is then complete (fault point checkpoint.after-commit).
//     A checkpoint that fails or outlasts checkpoint.timeout is aborted
//     (its files deleted), its staged records are kept for the next one,
//     and the job goes on.
//  4. The coordinator publishes the epoch's staged records (below); the
//     next checkpoint waits until they are published.
//
// Summary.Checkpoints counts them and gives the last one's id, sequence,
// duration, size, alignment (first to last worker at the barrier) and
// capture time (the longest a worker took to capture its key groups), and
// the 50th and 99th percentiles of the processing pause: the longest time
// a worker stopped processing at once for a checkpoint (the start of its
// capture, or one slice of capture steps).
//
// A bounded run ends with one more checkpoint after its last event and
// final watermark, so its exactly-once records are all published when Run
// returns. A run stopped through its context takes none: its records
// since the last checkpoint are produced again after a restore.
//
// # Restore
//
// When Run starts a job with checkpoints, it restores the newest complete
// checkpoint (Config.RestoreFrom names another; Config.NoRestore starts
// afresh). It refuses, naming both, a checkpoint whose states the plugin
// does not keep (states may be added at the end only) or whose backend is
// not state.backend. The memory backend is rebuilt from the parts; Pebble
// is restored into state.dir, taking files from the local disk where they
// are (local recovery). A damaged checkpoint (a file missing or failing its
// checksum) is skipped with a warning naming the file (Config.Warnf) and
// the one before it is used. The source then resumes at S+1 and the
// source's and workers' watermarks start at the checkpoint's. With no
// checkpoint the job starts per source.start.
//
// # Exactly-once sinks
//
// A sink with mode: exactly_once stages its records in memory until the
// barrier of their epoch; they are written with the checkpoint and
// published only once it is complete, each with the message id
// Nats-Msg-Id "<job>/<checkpoint>/<worker>/<ordinal>", the ordinal
// counting the worker's staged records of the checkpoint across its
// exactly-once sinks. The stream's duplicate window drops a record
// published twice. When all are acknowledged (fault points
// sink.mid-publish after the first half, sink.after-publish after all),
// the sink's committed-epoch marker, key KVKey("<job>.<sink name>") in
// the KV bucket MarkerBucket, is set to the checkpoint id with
// compare-and-set. An epoch at or below the marker is never published
// again, even after the duplicate window.
//
// A NATS outage while an epoch is published does not fail the job: the
// coordinator retries until the records are published, each attempt
// bounded by checkpoint.timeout and the pause between attempts doubling
// from 100ms to 5s, with a warning on the first failure and then at most
// every 30s. A retry reads the marker again and sends only the records
// JetStream has not acknowledged, with the same message ids. The workers
// go on meanwhile, their outputs staged in memory. A job stopped while
// retrying takes no further checkpoint, so a restart restores this one
// and publishes its records. Only a marker that holds no checkpoint id,
// or one that keeps changing under compare-and-set (another process
// running the job), fails the job.
//
// After a restore, the restored checkpoint's staged records are published
// first when its id is above the marker; the records of later epochs need
// not be, as the replay from S+1 produces them again. A kv sink works the
// same way: its records are puts to "$KV.<bucket>.<KVKey(key)>",
// idempotent by key.
//
// Limits: a crash (or a stop while retrying) in the middle of publishing
// an epoch and a restart after the stream's duplicate window (2 minutes by
// default) publishes the epoch's records that had landed again. Falling
// back to an older checkpoint than the marker (a damaged newest
// checkpoint, or --from) publishes again the records of the events
// between the two.
// Dead letters and late events on the late subject stay at-least-once,
// as do at_least_once sinks, which publish as records are emitted.
//
// # Stopping
//
// Run returns when its context is done, when UntilCaughtUp is set and every
// event that was in the stream when Run started has been processed, when
// UntilSeq is set and the events up to that sequence are processed, or when
// a function fails. In every case the batches already handed to workers are
// finished (unless a function failed), functions are closed, and Run waits
// for the acknowledgements of everything it published.
//
// A bounded run (UntilCaughtUp or UntilSeq) that reaches its end raises the
// watermark to math.MaxInt64 after the last event, so every remaining
// event-time timer fires, attributed to the last event read. Processing-time
// timers do not fire at the end; they stay in the backend. A function that
// keeps registering due event-time timers while the watermark is at the
// maximum keeps the run from ending.
package engine
