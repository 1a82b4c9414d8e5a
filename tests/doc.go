// Package tests holds wasmstream's end-to-end tests. Each runs real parts
// only: an embedded NATS server with JetStream storing in a temporary
// directory, events published to it, and jobs started through host/runner
// with Wasm plugins built from source by the Go toolchain.
//
// freqcap_test.go runs the frequency-capping example job with its Wasm
// plugin at parallelism 1 and 2 and with the native Go operator, and checks
// the records on the capped subject against the plain-Go oracle (same pairs,
// each once, well-formed values and keys); it also checks that malformed,
// unkeyable and plugin-rejected events reach the dead-letter subject with
// their reasons while the rest is processed.
//
// isolation_test.go runs a plugin that panics or exits on one event next to
// a healthy freqcap job in the same process and on the same server: the
// failing job stops with an error naming the plugin, the export and the
// event's stream sequence, and the healthy job keeps running and finishes
// with the oracle's result.
//
// The plugins under testdata are built for wasip1 only; go test ./... does
// not compile them as Go packages of this module.
package tests
