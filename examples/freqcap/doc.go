// Package freqcap is the advertisement frequency-capping example job of
// wasmstream, in plain Go: an event generator, an oracle that computes the
// expected result directly, a native process function doing exactly what
// the Wasm plugin in ./plugin does, the plugin's contract, a publishing
// helper and the job config.
//
// Events are JSON objects {"user_no":<int>,"da_id":<int>,"log_time":<epoch
// ms>}, keyed by user_no. The function counts views per (user, ad) in the map
// state "views" (user key: da_id as an 8-byte little-endian int64) and, when a
// count reaches the cap, emits one record to the side output "capped" with
// key "<user_no>.<da_id>" and value {"user_no":..,"da_id":..,"count":<cap>}.
package freqcap
