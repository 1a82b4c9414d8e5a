// Package process defines the seam between the engine and a keyed process
// function: the batch of keyed events a worker hands over, the collector the
// function emits into, and the Function interface that both the Wasm host and
// native Go operators implement.
//
// A Function instance belongs to one worker and is called from one goroutine.
package process

import (
	"context"

	"github.com/wasmstream/wasmstream/abi"
	"github.com/wasmstream/wasmstream/statestore"
)

// Event is one keyed event of a batch. Its byte slices point into the
// batch's arena and are valid only during the ProcessBatch call.
type Event struct {
	Seq      uint64 // stream sequence
	Time     int64  // timestamp, ms since the Unix epoch
	KeyGroup uint16
	Key      []byte
	Value    []byte
	Subject  []byte
	Fields   []abi.Field // extracted fields, in contract slot order
}

// Output is one emitted record. Key may be nil.
type Output struct {
	Port  int    // abi.MainOutput or a side output number
	Seq   uint64 // sequence of the event that produced it
	Key   []byte
	Value []byte
}

// Collector receives what a function emits. Emit and Reject copy their
// arguments: callers may reuse them after the call returns.
type Collector interface {
	// Emit records an output.
	Emit(port int, seq uint64, key, value []byte)
	// Reject sends the event to the dead-letter subject with a reason.
	Reject(ev *Event, reason string)
}

// Env is what a worker gives its function when opening it.
type Env struct {
	Job         string
	Worker      int
	Parallelism int
	Config      map[string]string
	// Fields are the names of the extracted fields, in slot order.
	Fields []string
	// State is the keyed state backend. The function only touches key groups
	// of the events it is handed.
	State statestore.Backend
	// Now returns the processing time in ms.
	Now func() int64
	// Log receives the function's log lines.
	Log func(level int, msg string)
	// Timers stores the worker's timers; nil when the job has none.
	Timers statestore.TimerStore
	// Watermark returns the worker's current event-time watermark in ms, or
	// abi.NoWatermark before the first.
	Watermark func() int64
}

// Function is a keyed process function instance.
type Function interface {
	Open(ctx context.Context, env Env) error
	// ProcessBatch processes events in order. An error stops the job: it is
	// for failures of the function itself; a bad event is rejected through
	// the collector instead.
	ProcessBatch(ctx context.Context, events []Event, out Collector) error
	Close(ctx context.Context) error
}

// TimerFunction is a Function that registers timers. Fired timers are
// delivered as events: Time is the timer's time, KeyGroup and Key its key
// group and key, Value its payload, Seq the sequence of the event whose
// watermark fired it (0 for processing-time timers), and Fields and Subject
// are empty. The function may use state, emit and register or delete timers
// for the keys of the timers it is handed, as for events.
type TimerFunction interface {
	Function
	// OnTimers handles fired timers of one domain (abi.TimeDomainEvent or
	// abi.TimeDomainProcessing), in timestamp order per key group.
	OnTimers(ctx context.Context, domain int, timers []Event, out Collector) error
}
