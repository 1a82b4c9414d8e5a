// Package jsonscan extracts a fixed set of fields from JSON events in one
// pass, without allocating.
//
// A Scanner is compiled once from dotted paths ("user_no", "user.id"). Scan
// walks an event's bytes once, validates the whole document, and fills one
// abi.Field slot per path: null, bool, int (an integer literal that fits
// int64), float (any other number), string (unescaped) or raw (the JSON text
// of an object or array). A path that is not in the event leaves its slot
// FieldAbsent.
//
// String slots are views into the event when the string has no escapes, and
// views into the scanner's scratch buffer otherwise; the scratch buffer is
// overwritten by the next Scan. Paths match object keys exactly (after
// unescaping); when a key repeats, the last occurrence wins, as with
// encoding/json.
//
// A Scanner is not safe for concurrent use: give each goroutine its own.
package jsonscan
