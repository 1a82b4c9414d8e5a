// Package bridge connects the wasmstream Go SDK to an in-process host when
// the SDK is compiled natively (not to Wasm): the SDK's host-function stubs
// dispatch to Current, and the SDK publishes its export entry points in
// Plugin so the wasmstreamtest harness can drive it exactly as the Wasm host
// drives the exports.
//
// All byte slices passed to Host methods alias guest memory: a Host copies
// what it keeps, and writes into out buffers only when the answer fits.
package bridge

// Host is the native counterpart of the "wasmstream" import module (and of
// the Extism config lookup). Method signatures mirror abi/abi.go with
// (pointer, length) pairs turned into slices.
type Host interface {
	ValueGet(st, ev int32, out []byte) int32
	ValueSet(st, ev int32, v []byte)
	ValueClear(st, ev int32)
	ValueAddI64(st, ev int32, delta int64) int64
	ValueAddF64(st, ev int32, delta float64) float64

	ListGet(st, ev int32, out []byte) int32
	ListAdd(st, ev int32, item []byte)
	ListAddAll(st, ev int32, encoded []byte)
	ListUpdate(st, ev int32, encoded []byte)
	ListClear(st, ev int32)

	MapGet(st, ev int32, k, out []byte) int32
	MapPut(st, ev int32, k, v []byte)
	MapRemove(st, ev int32, k []byte)
	MapContains(st, ev int32, k []byte) int32
	MapAddI64(st, ev int32, k []byte, delta int64) int64
	MapAddF64(st, ev int32, k []byte, delta float64) float64
	MapIter(st, ev, what int32, out []byte) int32
	MapIsEmpty(st, ev int32) int32
	MapClear(st, ev int32)

	TimerRegister(domain, ev int32, ts, jitter int64, payload []byte) int64
	TimerDelete(domain, ev int32, ts int64, payload []byte)
	WatermarkMs() int64

	Emit(ev, out int32, k, v []byte)
	Reject(ev int32, reason []byte)
	NowMs() int64
	Log(level int32, msg []byte)
	Fail(msg []byte)

	// Config is the Extism config_get lookup (pdk.GetConfig in Wasm).
	Config(key string) (string, bool)
}

// Current is the host the native SDK calls. The wasmstreamtest harness sets
// it; nil means no host is installed.
var Current Host

// Guest holds the SDK's export entry points, the same functions the Wasm
// exports call.
type Guest struct {
	// Describe returns the contract JSON (ws_describe).
	Describe func() []byte
	// Buffer returns the guest buffer of at least size bytes (ws_buffer).
	Buffer func(size int) []byte
	// Open opens the function with an encoded abi.OpenInfo (ws_open).
	Open func(info []byte) int32
	// Process processes one encoded batch (ws_process).
	Process func(batch []byte) int32
	// OnTimer handles one encoded timer batch (ws_on_timer).
	OnTimer func(batch []byte) int32
	// Close closes the function (ws_close).
	Close func() int32
	// Register replaces the registered function; fn must implement the SDK's
	// Function interface. An empty name keeps the current one.
	Register func(name string, fn any)
	// Registered returns the registered name and function (nil when none).
	Registered func() (name string, fn any)
}

// Plugin is set by the SDK's package initialisation.
var Plugin Guest
