package statestore

// Timer is a registered timer: at most one exists per (key group, domain,
// time, key, payload).
type Timer struct {
	Domain  int   // abi.TimeDomainEvent or abi.TimeDomainProcessing
	Time    int64 // ms since the Unix epoch (event time or processing time)
	Key     []byte
	Payload []byte
}

// TimerStore keeps timers per key group, ordered by time, so firing is a
// range scan. Timers are keyed state: a checkpoint snapshots them with the
// key group they belong to. Like Backend, calls for distinct key groups may
// run concurrently; calls for one key group never do.
type TimerStore interface {
	// RegisterTimer adds t. It reports false when the same timer exists.
	RegisterTimer(kg uint16, t Timer) (added bool, err error)
	// DeleteTimer removes t. It reports false when there was no such timer.
	DeleteTimer(kg uint16, t Timer) (deleted bool, err error)
	// PopTimers removes and hands to fn, in (Time, Key, Payload) order, up to
	// limit timers of domain in kg with Time <= upTo. fn's slices are valid
	// only during the call. A limit ≤ 0 means no limit. It returns how many
	// it removed.
	PopTimers(kg uint16, domain int, upTo int64, limit int, fn func(Timer)) (int, error)
	// NextTimer returns the earliest time of a timer of domain in kg.
	NextTimer(kg uint16, domain int) (t int64, ok bool, err error)
	// TimerCount returns the number of registered timers.
	TimerCount() int64
}
