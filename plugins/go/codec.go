package wasmstream

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
)

// Codec encodes state values (and map keys) to the bytes the host stores.
// Append must append v's encoding to dst and return the extended slice
// (reusing dst's capacity keeps state writes allocation-free); Decode must
// accept every encoding Append produces. A codec's encoding is part of the
// state's durable format: changing it makes stored state unreadable.
type Codec[T any] interface {
	Append(dst []byte, v T) []byte
	Decode(b []byte) (T, error)
}

// Built-in codecs.
var (
	// Bytes stores byte slices as they are. Decoded slices are views into the
	// SDK's read buffer, valid until the next state call: copy them to keep
	// them.
	Bytes Codec[[]byte] = bytesCodec{}
	// String stores a string's bytes. Decoding copies (one allocation).
	String Codec[string] = stringCodec{}
	// Int64 stores 8 bytes little-endian, the format the host's AddInt64
	// operations work on. Encoding and decoding do not allocate.
	Int64 Codec[int64] = int64Codec{}
	// Float64 stores the IEEE 754 bits as 8 bytes little-endian, the format
	// of the host's AddFloat64 operations.
	Float64 Codec[float64] = float64Codec{}
	// Bool stores one byte, 0 or 1.
	Bool Codec[bool] = boolCodec{}
)

// JSONCodec returns a codec that stores values as JSON with encoding/json.
// It is convenient for structured state but slow inside Wasm (tens of
// microseconds per value, with allocations): prefer the built-in codecs or a
// hand-written one on the per-event path. Append panics when the value
// cannot be marshalled.
func JSONCodec[T any]() Codec[T] { return jsonCodec[T]{} }

// ErrCodec is wrapped by the built-in codecs' decode errors.
var ErrCodec = errors.New("wasmstream: cannot decode stored value")

type bytesCodec struct{}

func (bytesCodec) Append(dst []byte, v []byte) []byte { return append(dst, v...) }
func (bytesCodec) Decode(b []byte) ([]byte, error)    { return b, nil }

type stringCodec struct{}

func (stringCodec) Append(dst []byte, v string) []byte { return append(dst, v...) }
func (stringCodec) Decode(b []byte) (string, error)    { return string(b), nil }

type int64Codec struct{}

func (int64Codec) Append(dst []byte, v int64) []byte {
	return binary.LittleEndian.AppendUint64(dst, uint64(v))
}
func (int64Codec) Decode(b []byte) (int64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("%w: Int64 wants 8 bytes, got %d", ErrCodec, len(b))
	}
	return int64(binary.LittleEndian.Uint64(b)), nil
}

type float64Codec struct{}

func (float64Codec) Append(dst []byte, v float64) []byte {
	return binary.LittleEndian.AppendUint64(dst, math.Float64bits(v))
}
func (float64Codec) Decode(b []byte) (float64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("%w: Float64 wants 8 bytes, got %d", ErrCodec, len(b))
	}
	return math.Float64frombits(binary.LittleEndian.Uint64(b)), nil
}

type boolCodec struct{}

func (boolCodec) Append(dst []byte, v bool) []byte {
	if v {
		return append(dst, 1)
	}
	return append(dst, 0)
}
func (boolCodec) Decode(b []byte) (bool, error) {
	if len(b) != 1 || b[0] > 1 {
		return false, fmt.Errorf("%w: Bool wants one byte 0 or 1, got %x", ErrCodec, b)
	}
	return b[0] == 1, nil
}

type jsonCodec[T any] struct{}

func (jsonCodec[T]) Append(dst []byte, v T) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("wasmstream: JSONCodec[%s]: %v", reflect.TypeFor[T](), err))
	}
	return append(dst, b...)
}

func (jsonCodec[T]) Decode(b []byte) (T, error) {
	var v T
	err := json.Unmarshal(b, &v)
	return v, err
}

// numberCodec tells whether c is the built-in Int64 (isInt) or Float64
// codec, the encodings the host's Add operations require.
func numberCodec(c any) (isInt, isFloat bool) {
	switch c.(type) {
	case int64Codec:
		return true, false
	case float64Codec:
		return false, true
	}
	return false, false
}
