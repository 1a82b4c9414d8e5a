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
// timejobs_test.go runs the field examples (sliding-window freqcap,
// notification fatigue, sessions) on shuffled streams in bounded runs and
// compares them with their oracles; backends_test.go runs freqcap on memory
// and Pebble state; checkpoint_test.go stops a job mid-stream and restores
// it from its checkpoints; readme_test.go builds the README's plugin and
// parses its job config.
//
// crash_test.go kills a job in a child process with SIGKILL, at random
// moments and at named points of its checkpoints and sink commits, restarts
// NATS under it, and compares the sinks with the oracle: exactly-once sinks
// must match exactly. It runs in a reduced form by default; set
// WASMSTREAM_CRASH_FULL=1 for the full form (200k events, 20+ kills per
// variant). See the comment at the top of that file.
//
// outage_test.go takes the NATS server down, for longer than
// checkpoint.timeout, while a job publishes a complete checkpoint's
// exactly-once records (a fault point hook in the test's process): the job
// must ride the outage out, or stop cleanly when stopped during it, and its
// sinks must then hold exactly the oracle's records.
//
// The plugins under testdata are built for wasip1 only; go test ./... does
// not compile them as Go packages of this module.
package tests
