// Package job is the job configuration of wasmstream: a YAML file that names
// the source stream, how events are keyed, the plugin that processes them,
// the parallelism, the state backend, where outputs go and where events that
// cannot be processed are dead-lettered.
//
// A minimal job:
//
//	name: freqcap
//	source: {stream: FREQCAP, subjects: ["views.>"], create: true}
//	key: {field: user_no}
//	plugin: {path: plugin, config: {cap: 3}}
//	sinks:
//	  - {output: capped, type: jetstream, subject: freqcap.capped, create: true}
//
// Parse and Load reject unknown keys (naming them), apply defaults and
// validate; every validation error names the field and how to fix it.
package job
