package wasmstream

import (
	"encoding/binary"
	"strconv"
	"time"

	"github.com/wasmstream/wasmstream/abi"
)

// Keyed state is declared with NewValueState, NewListState and NewMapState
// as package-level variables. Each declaration is a state of the plugin's
// contract; its id is its position in declaration order, so reordering or
// removing declarations changes which stored state a name refers to in a
// restored checkpoint (the host checks names against the checkpoint).
//
// Every operation acts on the state of the current event's key (the key of
// ctx) and is one host call. Reads answer into a buffer the SDK reuses: a
// decoded value that aliases it (the Bytes codec) is valid until the next
// state call.

// StateOption configures a state declaration.
type StateOption struct{ apply func(*abi.StateDesc) }

// TTLOption refines WithTTL.
type TTLOption struct{ apply func(*abi.TTL) }

// WithTTL gives the state a time-to-live, as Flink's StateTtlConfig: a value
// (a list, a map entry) expires d after it was last written. Options change
// what refreshes the timer, whether expired values may still be read, and
// the time domain. The host enforces TTL; d is rounded up to whole
// milliseconds.
func WithTTL(d time.Duration, opts ...TTLOption) StateOption {
	if d < time.Millisecond {
		panic("wasmstream: WithTTL(" + d.String() + "): the TTL must be at least 1ms")
	}
	t := abi.TTL{Millis: int64((d + time.Millisecond - 1) / time.Millisecond)}
	for _, o := range opts {
		o.apply(&t)
	}
	return StateOption{func(s *abi.StateDesc) { c := t; s.TTL = &c }}
}

// TTLUpdateOnCreateAndWrite refreshes the TTL when the value is written
// (the default).
func TTLUpdateOnCreateAndWrite() TTLOption {
	return TTLOption{func(t *abi.TTL) { t.Update = abi.TTLOnCreateAndWrite }}
}

// TTLUpdateOnReadAndWrite refreshes the TTL on reads as well as writes.
func TTLUpdateOnReadAndWrite() TTLOption {
	return TTLOption{func(t *abi.TTL) { t.Update = abi.TTLOnReadAndWrite }}
}

// TTLNeverReturnExpired hides expired values from reads (the default).
func TTLNeverReturnExpired() TTLOption {
	return TTLOption{func(t *abi.TTL) { t.Visibility = abi.TTLNeverReturnExpired }}
}

// TTLReturnExpiredIfNotCleanedUp lets reads see an expired value until the
// host has removed it.
func TTLReturnExpiredIfNotCleanedUp() TTLOption {
	return TTLOption{func(t *abi.TTL) { t.Visibility = abi.TTLReturnExpiredIfNotCleanedUp }}
}

// TTLProcessingTime measures the TTL in processing time (the default).
func TTLProcessingTime() TTLOption {
	return TTLOption{func(t *abi.TTL) { t.Domain = abi.TimeProcessing }}
}

// TTLEventTime measures the TTL in event time.
func TTLEventTime() TTLOption {
	return TTLOption{func(t *abi.TTL) { t.Domain = abi.TimeEvent }}
}

// newState appends a state to the contract and returns its id.
func newState(name string, kind abi.StateKind, opts []StateOption) int32 {
	declare("state", name)
	d := abi.StateDesc{Name: name, Kind: kind}
	for _, o := range opts {
		o.apply(&d)
	}
	states := append(registry.states[:len(registry.states):len(registry.states)], d)
	c := abi.Contract{ABI: abi.Version, Name: "x", States: states}
	if err := c.Validate(); err != nil {
		panic("wasmstream: declaring " + string(kind) + " state " + strconv.Quote(name) + ": " + err.Error())
	}
	registry.states = states
	return int32(len(states) - 1)
}

// Scratch buffers, reused across calls so state access does not allocate
// once they have grown to the largest value seen.
var (
	keyBuf   = make([]byte, 0, 64)   // encoded map keys
	valBuf   = make([]byte, 0, 256)  // encoded values and lists
	readBuf  = make([]byte, 0, 1024) // point reads
	iterBufs [][]byte                // held by running ForEach loops
)

// growTo returns a buffer with capacity for n bytes.
func growTo(n int32) []byte { return make([]byte, 0, int(n)+int(n)/4) }

func takeIter() []byte {
	if n := len(iterBufs); n > 0 {
		b := iterBufs[n-1]
		iterBufs = iterBufs[:n-1]
		return b
	}
	return make([]byte, 0, 1024)
}

func giveIter(b []byte) { iterBufs = append(iterBufs, b[:0]) }

// appendItems appends vs as an abi encoded list.
func appendItems[T any](dst []byte, c Codec[T], vs []T) []byte {
	for _, v := range vs {
		n := len(dst)
		dst = append(dst, 0, 0, 0, 0)
		dst = c.Append(dst, v)
		binary.LittleEndian.PutUint32(dst[n:], uint32(len(dst)-n-4))
	}
	return dst
}

func decodeFailed(name string, err error) {
	panic("wasmstream: state " + strconv.Quote(name) + ": " + err.Error() +
		": the stored bytes were written with another codec; keep a state's codec stable or declare a new state")
}

func badList(name string) {
	panic("wasmstream: state " + strconv.Quote(name) + ": the host returned a malformed encoded list")
}

func needCodec(name, op, codec string) {
	panic("wasmstream: state " + strconv.Quote(name) + ": " + op + " needs the " + codec +
		" codec (8 bytes little-endian, the host adds in place): declare the state with wasmstream." + codec)
}

// ValueState holds one value per key.
type ValueState[T any] struct {
	id           int32
	name         string
	codec        Codec[T]
	isInt, isFlt bool
}

// NewValueState declares a value state named name whose values codec
// encodes.
func NewValueState[T any](name string, codec Codec[T], opts ...StateOption) *ValueState[T] {
	s := &ValueState[T]{id: newState(name, abi.KindValue, opts), name: name, codec: codec}
	s.isInt, s.isFlt = numberCodec(codec)
	return s
}

// Name returns the state's name.
func (s *ValueState[T]) Name() string { return s.name }

// Codec returns the state's codec.
func (s *ValueState[T]) Codec() Codec[T] { return s.codec }

// Value returns the current key's value; ok is false when there is none.
// It panics when the stored bytes do not decode with the state's codec.
func (s *ValueState[T]) Value(ctx *Context) (v T, ok bool) {
	for {
		n := valueGet(s.id, ctx.ev, ptr(readBuf), int32(cap(readBuf)))
		if n < 0 {
			return v, false
		}
		if int(n) <= cap(readBuf) {
			v, err := s.codec.Decode(readBuf[:n])
			if err != nil {
				decodeFailed(s.name, err)
			}
			return v, true
		}
		readBuf = growTo(n)
	}
}

// Update sets the current key's value.
func (s *ValueState[T]) Update(ctx *Context, v T) {
	valBuf = s.codec.Append(valBuf[:0], v)
	valueSet(s.id, ctx.ev, ptr(valBuf), int32(len(valBuf)))
}

// Clear removes the current key's value.
func (s *ValueState[T]) Clear(ctx *Context) { valueClear(s.id, ctx.ev) }

// AddInt64 adds delta to the current key's value (absent counts as 0) and
// returns the sum, in one host call. The state must use the Int64 codec.
func (s *ValueState[T]) AddInt64(ctx *Context, delta int64) int64 {
	if !s.isInt {
		needCodec(s.name, "AddInt64", "Int64")
	}
	return valueAddI64(s.id, ctx.ev, delta)
}

// AddFloat64 adds delta to the current key's value (absent counts as 0) and
// returns the sum, in one host call. The state must use the Float64 codec.
func (s *ValueState[T]) AddFloat64(ctx *Context, delta float64) float64 {
	if !s.isFlt {
		needCodec(s.name, "AddFloat64", "Float64")
	}
	return valueAddF64(s.id, ctx.ev, delta)
}

// ListState holds a list of values per key.
type ListState[T any] struct {
	id    int32
	name  string
	codec Codec[T]
}

// NewListState declares a list state named name whose items codec encodes.
func NewListState[T any](name string, codec Codec[T], opts ...StateOption) *ListState[T] {
	return &ListState[T]{id: newState(name, abi.KindList, opts), name: name, codec: codec}
}

// Name returns the state's name.
func (s *ListState[T]) Name() string { return s.name }

// Codec returns the state's item codec.
func (s *ListState[T]) Codec() Codec[T] { return s.codec }

// read fetches the encoded list into buf, growing it as needed.
func (s *ListState[T]) read(ctx *Context, buf []byte) []byte {
	for {
		n := listGet(s.id, ctx.ev, ptr(buf), int32(cap(buf)))
		if n < 0 {
			return buf[:0]
		}
		if int(n) <= cap(buf) {
			return buf[:n]
		}
		buf = growTo(n)
	}
}

// Get appends the current key's items to dst and returns it; it allocates
// only when dst lacks room. An absent list yields dst unchanged.
func (s *ListState[T]) Get(ctx *Context, dst []T) []T {
	readBuf = s.read(ctx, readBuf)
	for b := readBuf; ; {
		item, rest, ok, err := abi.NextItem(b)
		if err != nil {
			badList(s.name)
		}
		if !ok {
			return dst
		}
		v, derr := s.codec.Decode(item)
		if derr != nil {
			decodeFailed(s.name, derr)
		}
		dst = append(dst, v)
		b = rest
	}
}

// ForEach calls fn with each item in order until fn returns false. fn may
// use any state, including this one: it iterates over a snapshot.
func (s *ListState[T]) ForEach(ctx *Context, fn func(T) bool) {
	buf := s.read(ctx, takeIter())
	for b := buf; ; {
		item, rest, ok, err := abi.NextItem(b)
		if err != nil {
			badList(s.name)
		}
		if !ok {
			break
		}
		v, derr := s.codec.Decode(item)
		if derr != nil {
			decodeFailed(s.name, derr)
		}
		if !fn(v) {
			break
		}
		b = rest
	}
	giveIter(buf)
}

// Add appends v to the current key's list.
func (s *ListState[T]) Add(ctx *Context, v T) {
	valBuf = s.codec.Append(valBuf[:0], v)
	listAdd(s.id, ctx.ev, ptr(valBuf), int32(len(valBuf)))
}

// AddAll appends vs to the current key's list in one host call.
func (s *ListState[T]) AddAll(ctx *Context, vs []T) {
	valBuf = appendItems(valBuf[:0], s.codec, vs)
	listAddAll(s.id, ctx.ev, ptr(valBuf), int32(len(valBuf)))
}

// Update replaces the current key's list with vs (an empty vs clears it).
func (s *ListState[T]) Update(ctx *Context, vs []T) {
	valBuf = appendItems(valBuf[:0], s.codec, vs)
	listUpdate(s.id, ctx.ev, ptr(valBuf), int32(len(valBuf)))
}

// Clear removes the current key's list.
func (s *ListState[T]) Clear(ctx *Context) { listClear(s.id, ctx.ev) }

// MapState holds a map from user keys to values per key. The host keeps
// entries sorted by encoded user key: iteration follows that byte order
// (for the Int64 codec, little-endian, so not numeric order).
type MapState[K, V any] struct {
	id           int32
	name         string
	kc           Codec[K]
	vc           Codec[V]
	isInt, isFlt bool
}

// NewMapState declares a map state named name; keyCodec encodes user keys
// and valueCodec values.
func NewMapState[K, V any](name string, keyCodec Codec[K], valueCodec Codec[V], opts ...StateOption) *MapState[K, V] {
	s := &MapState[K, V]{id: newState(name, abi.KindMap, opts), name: name, kc: keyCodec, vc: valueCodec}
	s.isInt, s.isFlt = numberCodec(valueCodec)
	return s
}

// Name returns the state's name.
func (s *MapState[K, V]) Name() string { return s.name }

// KeyCodec returns the user key codec.
func (s *MapState[K, V]) KeyCodec() Codec[K] { return s.kc }

// ValueCodec returns the value codec.
func (s *MapState[K, V]) ValueCodec() Codec[V] { return s.vc }

func (s *MapState[K, V]) key(k K) []byte {
	keyBuf = s.kc.Append(keyBuf[:0], k)
	return keyBuf
}

// Get returns the value of user key k; ok is false when absent.
func (s *MapState[K, V]) Get(ctx *Context, k K) (v V, ok bool) {
	kb := s.key(k)
	for {
		n := mapGet(s.id, ctx.ev, ptr(kb), int32(len(kb)), ptr(readBuf), int32(cap(readBuf)))
		if n < 0 {
			return v, false
		}
		if int(n) <= cap(readBuf) {
			v, err := s.vc.Decode(readBuf[:n])
			if err != nil {
				decodeFailed(s.name, err)
			}
			return v, true
		}
		readBuf = growTo(n)
	}
}

// Put sets user key k to v.
func (s *MapState[K, V]) Put(ctx *Context, k K, v V) {
	kb := s.key(k)
	valBuf = s.vc.Append(valBuf[:0], v)
	mapPut(s.id, ctx.ev, ptr(kb), int32(len(kb)), ptr(valBuf), int32(len(valBuf)))
}

// Remove deletes user key k.
func (s *MapState[K, V]) Remove(ctx *Context, k K) {
	kb := s.key(k)
	mapRemove(s.id, ctx.ev, ptr(kb), int32(len(kb)))
}

// Contains reports whether user key k is present.
func (s *MapState[K, V]) Contains(ctx *Context, k K) bool {
	kb := s.key(k)
	return mapContains(s.id, ctx.ev, ptr(kb), int32(len(kb))) != 0
}

// AddInt64 adds delta to the value of user key k (absent counts as 0) and
// returns the sum, in one host call. The value codec must be Int64.
func (s *MapState[K, V]) AddInt64(ctx *Context, k K, delta int64) int64 {
	if !s.isInt {
		needCodec(s.name, "AddInt64", "Int64")
	}
	kb := s.key(k)
	return mapAddI64(s.id, ctx.ev, ptr(kb), int32(len(kb)), delta)
}

// AddFloat64 adds delta to the value of user key k (absent counts as 0) and
// returns the sum, in one host call. The value codec must be Float64.
func (s *MapState[K, V]) AddFloat64(ctx *Context, k K, delta float64) float64 {
	if !s.isFlt {
		needCodec(s.name, "AddFloat64", "Float64")
	}
	kb := s.key(k)
	return mapAddF64(s.id, ctx.ev, ptr(kb), int32(len(kb)), delta)
}

// iter fetches keys, values or entries (abi.Iter*) into a buffer taken from
// the iteration pool; the caller gives it back.
func (s *MapState[K, V]) iter(ctx *Context, what int32) []byte {
	buf := takeIter()
	for {
		n := mapIter(s.id, ctx.ev, what, ptr(buf), int32(cap(buf)))
		if n < 0 {
			return buf[:0]
		}
		if int(n) <= cap(buf) {
			return buf[:n]
		}
		buf = growTo(n)
	}
}

func (s *MapState[K, V]) next(b []byte) (item, rest []byte, ok bool) {
	item, rest, ok, err := abi.NextItem(b)
	if err != nil {
		badList(s.name)
	}
	return item, rest, ok
}

// ForEach calls fn with each entry in user key order until fn returns
// false, in one host call. fn may use any state, including this one: it
// iterates over a snapshot.
func (s *MapState[K, V]) ForEach(ctx *Context, fn func(K, V) bool) {
	buf := s.iter(ctx, abi.IterEntries)
	for b := buf; ; {
		kb, rest, ok := s.next(b)
		if !ok {
			break
		}
		vb, rest, ok := s.next(rest)
		if !ok {
			badList(s.name)
		}
		k, err := s.kc.Decode(kb)
		if err != nil {
			decodeFailed(s.name, err)
		}
		v, err := s.vc.Decode(vb)
		if err != nil {
			decodeFailed(s.name, err)
		}
		if !fn(k, v) {
			break
		}
		b = rest
	}
	giveIter(buf)
}

// ForEachKey calls fn with each user key in order until fn returns false.
func (s *MapState[K, V]) ForEachKey(ctx *Context, fn func(K) bool) {
	buf := s.iter(ctx, abi.IterKeys)
	for b := buf; ; {
		kb, rest, ok := s.next(b)
		if !ok {
			break
		}
		k, err := s.kc.Decode(kb)
		if err != nil {
			decodeFailed(s.name, err)
		}
		if !fn(k) {
			break
		}
		b = rest
	}
	giveIter(buf)
}

// ForEachValue calls fn with each value in user key order until fn returns
// false.
func (s *MapState[K, V]) ForEachValue(ctx *Context, fn func(V) bool) {
	buf := s.iter(ctx, abi.IterValues)
	for b := buf; ; {
		vb, rest, ok := s.next(b)
		if !ok {
			break
		}
		v, err := s.vc.Decode(vb)
		if err != nil {
			decodeFailed(s.name, err)
		}
		if !fn(v) {
			break
		}
		b = rest
	}
	giveIter(buf)
}

// IsEmpty reports whether the current key's map has no entries.
func (s *MapState[K, V]) IsEmpty(ctx *Context) bool { return mapIsEmpty(s.id, ctx.ev) != 0 }

// Clear removes all entries of the current key's map.
func (s *MapState[K, V]) Clear(ctx *Context) { mapClear(s.id, ctx.ev) }
