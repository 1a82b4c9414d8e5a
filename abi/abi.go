package abi

// Version is the ABI version this package describes.
const Version = 1

// ImportModule is the Wasm import module name of the wasmstream host functions.
const ImportModule = "wasmstream"

// ExtismModule is the import module of the Extism host functions the host
// implements natively, so plugins written with an Extism PDK can read config
// and log.
const ExtismModule = "extism:host/env"

// WASIModule is the WASI preview1 import module.
const WASIModule = "wasi_snapshot_preview1"

// Plugin exports.
const (
	// ExportDescribe: () -> i64. Returns (ptr<<32 | len) of the contract JSON
	// in guest memory.
	ExportDescribe = "ws_describe"
	// ExportBuffer: (size i32) -> i32. Returns a pointer to a guest-owned
	// buffer of at least size bytes, valid until the next ws_buffer call.
	ExportBuffer = "ws_buffer"
	// ExportOpen: (ptr i32, len i32) -> i32. Opens the function with the
	// encoded OpenInfo. Returns 0, or non-zero after calling fail.
	ExportOpen = "ws_open"
	// ExportProcess: (ptr i32, len i32) -> i32. Processes one batch of events.
	ExportProcess = "ws_process"
	// ExportOnTimer: (ptr i32, len i32) -> i32. Delivers a batch of fired
	// timers (batch kind BatchEventTimers or BatchProcTimers). Required when
	// the plugin imports timer_register.
	ExportOnTimer = "ws_on_timer"
	// ExportClose: () -> i32. Closes the function.
	ExportClose = "ws_close"
	// ExportInitialize is the WASI reactor initializer, run once after
	// instantiation when present.
	ExportInitialize = "_initialize"
)

// Host functions of module "wasmstream". All pointers and lengths are i32
// offsets into the guest's linear memory. st is a state id (the index of the
// state in the contract), ev the index of the event within the current batch.
const (
	FnValueGet    = "value_get"     // (st, ev, out, cap) -> i32 len | NotFound
	FnValueSet    = "value_set"     // (st, ev, ptr, len)
	FnValueClear  = "value_clear"   // (st, ev)
	FnValueAddI64 = "value_add_i64" // (st, ev, delta i64) -> i64
	FnValueAddF64 = "value_add_f64" // (st, ev, delta f64) -> f64

	FnListGet    = "list_get"     // (st, ev, out, cap) -> i32 len of encoded list
	FnListAdd    = "list_add"     // (st, ev, ptr, len)
	FnListAddAll = "list_add_all" // (st, ev, ptr, len) encoded list
	FnListUpdate = "list_update"  // (st, ev, ptr, len) encoded list
	FnListClear  = "list_clear"   // (st, ev)

	FnMapGet      = "map_get"      // (st, ev, k, klen, out, cap) -> i32 len | NotFound
	FnMapPut      = "map_put"      // (st, ev, k, klen, v, vlen)
	FnMapRemove   = "map_remove"   // (st, ev, k, klen)
	FnMapContains = "map_contains" // (st, ev, k, klen) -> i32 0|1
	FnMapAddI64   = "map_add_i64"  // (st, ev, k, klen, delta i64) -> i64
	FnMapAddF64   = "map_add_f64"  // (st, ev, k, klen, delta f64) -> f64
	FnMapIter     = "map_iter"     // (st, ev, what, out, cap) -> i32 len of encoded entries
	FnMapIsEmpty  = "map_is_empty" // (st, ev) -> i32 0|1
	FnMapClear    = "map_clear"    // (st, ev)

	// Timers, for the key of record ev. domain is TimeDomainEvent or
	// TimeDomainProcessing; p/plen is an optional payload (≤ MaxTimerPayload
	// bytes) handed back when the timer fires.
	FnTimerRegister = "timer_register" // (domain, ev, ts i64, jitter i64, p, plen) -> i64 effective ts
	FnTimerDelete   = "timer_delete"   // (domain, ev, ts i64, p, plen)
	FnWatermarkMs   = "watermark_ms"   // () -> i64 (NoWatermark before the first)

	FnEmit   = "emit"   // (ev, out, k, klen, v, vlen)
	FnReject = "reject" // (ev, reason, len)
	FnNowMs  = "now_ms" // () -> i64
	FnLog    = "log"    // (level, ptr, len)
	FnFail   = "fail"   // (ptr, len)
)

// Time domains of timers.
const (
	TimeDomainEvent      = 0
	TimeDomainProcessing = 1
)

// NoWatermark is what watermark_ms answers before the first watermark:
// the smallest int64.
const NoWatermark = -1 << 63

// MaxTimerPayload bounds a timer's payload.
const MaxTimerPayload = 1024

// Status codes returned by host functions that answer with a length.
const (
	// NotFound: the value, map entry or state is absent.
	NotFound = -1
)

// Map iteration modes for map_iter.
const (
	IterKeys    = 0
	IterValues  = 1
	IterEntries = 2
)

// Log levels for the log host function, lowest first.
const (
	LogTrace = 0
	LogDebug = 1
	LogInfo  = 2
	LogWarn  = 3
	LogError = 4
)

// Output port 0 is the main output; side outputs are numbered from 1 in
// contract order.
const MainOutput = 0

// Limits the host enforces on a contract.
const (
	MaxNameLen     = 128
	MaxStates      = 1024
	MaxOutputs     = 256
	MaxFields      = 256
	MaxContractLen = 1 << 20
)
