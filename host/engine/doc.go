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
