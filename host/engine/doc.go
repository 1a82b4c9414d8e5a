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
// # Stopping
//
// Run returns when its context is done, when UntilCaughtUp is set and every
// event that was in the stream when Run started has been processed, or when
// a function fails. In every case the batches already handed to workers are
// finished (unless a function failed), functions are closed, and Run waits
// for the acknowledgements of everything it published.
package engine
