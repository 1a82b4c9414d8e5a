// Package plugin is the WebAssembly host of wasmstream: it loads a plugin
// module, checks it against ABI v1 (package abi), and runs it as a keyed
// process function (process.Function), one Wasm instance per worker.
//
// # Loading
//
// Load compiles a module once (through a compilation cache shared by every
// Load in the process that names the same cache directory), checks its imports
// and exports before anything runs, then instantiates a probe instance to read
// the plugin's contract through ws_describe. Each loaded plugin gets its own
// wazero runtime, because the memory limit is a runtime setting.
//
// A plugin may import from three modules only:
//
//   - "wasmstream": the state, timer, output and logging functions of ABI v1;
//   - "extism:host/env": the Extism host functions, implemented natively
//     here so plugins written with an Extism PDK can read config, log and
//     keep variables (outbound HTTP is refused);
//   - "wasi_snapshot_preview1": the functions a Go (wasip1) or TinyGo guest
//     links, see AllowedWASI. Instances get no filesystem, no environment,
//     no arguments and no sockets; stdout and stderr become log lines;
//     clocks follow the host clock and random numbers come from crypto/rand.
//
// # Running
//
// NewFunction returns an unopened instance. Open instantiates the module,
// runs _initialize and hands ws_open the encoded abi.OpenInfo. ProcessBatch
// encodes the events with abi.BatchWriter straight into the guest's batch
// buffer and calls ws_process once per batch; the host functions the guest
// calls during the batch address state by the key group and key of the event
// index they are given.
//
// Every instance is also a process.TimerFunction: OnTimers encodes fired
// timers as a timer batch (abi.BatchEventTimers or abi.BatchProcTimers) and
// calls ws_on_timer. timer_register and timer_delete store timers in
// process.Env.Timers for the key of the record they name, and watermark_ms
// answers process.Env.Watermark. A plugin that imports timer_register must
// export ws_on_timer (UsesTimers reports the import).
//
// A guest that returns non-zero from an export (after fail or Extism's
// error_set), traps, exits, or passes a host function a bad argument fails the
// call with a *CallError. Every failure but a clean non-zero return leaves the
// instance dead: later calls return the same error. The host process itself
// never panics because of a guest.
//
// Options.CallTimeout bounds each export call and makes a canceled context
// stop a running call. It is off by default because the runtime then checks
// for termination at every loop header of the guest, which roughly triples
// the per-event cost of a Go guest.
package plugin
