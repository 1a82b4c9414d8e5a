// Package freqcap is the advertisement frequency-capping example job of
// wasmstream, in plain Go: an event generator (in order or shuffled within a
// bound), an oracle that computes the expected records directly, a native
// process function doing exactly what the Wasm plugin in ./plugin does, the
// plugin's contract, a publishing helper and the job config.
//
// Events are JSON objects {"user_no":<int>,"da_id":<int>,"log_time":<epoch
// ms>}, keyed by user_no, with log_time as their event time. The function
// counts views per (user, ad) over a sliding window of event time: a view at
// t counts during [t, t+window). Each view registers an event-time timer at
// t that adds it to the count in the map state "views" (user key: da_id as
// an 8-byte little-endian int64) and one at t+window that removes it; the
// timer payload carries the ad id, so no reverse index is needed. Timers
// fire in event-time order once the watermark passes them, removals before
// additions within a millisecond, so the counts follow event time whatever
// the arrival order within the job's max_out_of_orderness.
//
// When a count rises to the cap the function emits to the side output
// "capped" the key "<user_no>.<da_id>" and {"user_no":..,"da_id":..,
// "count":<cap>}; when it falls below the cap, to "released" the same key
// and {"user_no":..,"da_id":..,"count":<cap-1>,"time":<ms>}, time being when
// the view that kept it at the cap expired. An entry whose count drops to
// zero is removed. A bounded run ends with the watermark at its maximum:
// every window then closes and every capped pair is released.
package freqcap
