package abi

import (
	"encoding/binary"
	"errors"
	"math"
)

// Batch layout, version 1 (all integers little-endian, offsets relative to
// the start of the batch buffer):
//
//	header (16 bytes)
//	  0  u32 count        number of records
//	  4  u32 nfields      extracted fields per record
//	  8  u32 record size  RecordFixed + 16*nfields
//	  12 u32 kind         BatchEvents, BatchEventTimers or BatchProcTimers
//	records, count × record size, starting at offset 16
//	  0  u64 stream sequence
//	  8  i64 timestamp, ms since the Unix epoch
//	  16 u32 key offset,     20 u32 key length
//	  24 u32 value offset,   28 u32 value length
//	  32 u32 subject offset, 36 u32 subject length
//	  40 fields: nfields × 16 bytes
//	     0 u8 FieldKind, 1..3 zero, 4 u32 length, 8 u64 payload
//	     payload: bool 0|1, int64 bits, float64 bits, or the offset of the
//	     string / raw JSON bytes
//	data area: key, value, subject and string bytes
const (
	BatchHeaderSize = 16
	RecordFixed     = 40
	FieldSlotSize   = 16
)

// Batch kinds. A timer batch holds fired timers of one time domain: the
// record's timestamp is the timer's, its key the timer's key, its value the
// timer's payload, its sequence the stream sequence of the event that made
// the timer fire (0 for processing-time timers), and it has no subject and
// no fields.
const (
	BatchEvents      = 0
	BatchEventTimers = 1
	BatchProcTimers  = 2
)

// FieldKind tells what a host-extracted field slot holds.
type FieldKind uint8

const (
	FieldAbsent FieldKind = 0 // the path is not in the event
	FieldNull   FieldKind = 1 // JSON null
	FieldBool   FieldKind = 2 // payload 0 or 1
	FieldInt    FieldKind = 3 // payload int64 bits (JSON integer that fits)
	FieldFloat  FieldKind = 4 // payload float64 bits (any other JSON number)
	FieldString FieldKind = 5 // payload offset, length: unescaped UTF-8
	FieldRaw    FieldKind = 6 // payload offset, length: raw JSON object or array
)

func (k FieldKind) String() string {
	switch k {
	case FieldAbsent:
		return "absent"
	case FieldNull:
		return "null"
	case FieldBool:
		return "bool"
	case FieldInt:
		return "int"
	case FieldFloat:
		return "float"
	case FieldString:
		return "string"
	case FieldRaw:
		return "raw"
	}
	return "invalid"
}

// ErrBadBatch is returned by ParseBatch for a buffer that does not hold a
// well-formed batch.
var ErrBadBatch = errors.New("wasmstream: malformed batch")

// Field is one extracted field as the host hands it over: Bits holds the
// bool/int/float payload, Str the string or raw JSON bytes.
type Field struct {
	Kind FieldKind
	Bits uint64
	Str  []byte
}

// Int returns an int64 field's value.
func (f Field) Int() int64 { return int64(f.Bits) }

// Float returns a float field's value.
func (f Field) Float() float64 { return math.Float64frombits(f.Bits) }

// BatchWriter encodes a batch into a reusable buffer. The zero value is not
// usable: call Reset first.
type BatchWriter struct {
	buf     []byte
	data    []byte
	count   int
	nfields int
	kind    uint32
}

// Reset starts a new batch of records with nfields field slots each.
func (w *BatchWriter) Reset(kind uint32, nfields int) {
	w.buf = w.buf[:0]
	w.data = w.data[:0]
	w.count = 0
	w.nfields = nfields
	w.kind = kind
}

// RecordSize returns the size of one record for the current field count.
func (w *BatchWriter) RecordSize() int { return RecordFixed + FieldSlotSize*w.nfields }

// Add appends one record. fields must have nfields entries.
func (w *BatchWriter) Add(seq uint64, ts int64, key, value, subject []byte, fields []Field) {
	rs := w.RecordSize()
	n := len(w.buf)
	w.buf = append(w.buf, make([]byte, rs)...)
	r := w.buf[n : n+rs]
	binary.LittleEndian.PutUint64(r[0:], seq)
	binary.LittleEndian.PutUint64(r[8:], uint64(ts))
	w.putBytes(r[16:], key)
	w.putBytes(r[24:], value)
	w.putBytes(r[32:], subject)
	for i := 0; i < w.nfields; i++ {
		s := r[RecordFixed+FieldSlotSize*i:]
		var f Field
		if i < len(fields) {
			f = fields[i]
		}
		s[0] = byte(f.Kind)
		switch f.Kind {
		case FieldString, FieldRaw:
			w.putBytes(s[4:], f.Str)
			// putBytes writes offset then length; slots hold length then offset.
			off := binary.LittleEndian.Uint32(s[4:])
			binary.LittleEndian.PutUint32(s[4:], uint32(len(f.Str)))
			binary.LittleEndian.PutUint64(s[8:], uint64(off))
		default:
			binary.LittleEndian.PutUint64(s[8:], f.Bits)
		}
	}
	w.count++
}

// putBytes records b in the data area and writes (offset, length) at dst.
// The offset is relative to the data area until Finish rebases it.
func (w *BatchWriter) putBytes(dst []byte, b []byte) {
	binary.LittleEndian.PutUint32(dst[0:], uint32(len(w.data)))
	binary.LittleEndian.PutUint32(dst[4:], uint32(len(b)))
	w.data = append(w.data, b...)
}

// Len returns the number of records added since Reset.
func (w *BatchWriter) Len() int { return w.count }

// Size returns the encoded size of the batch so far.
func (w *BatchWriter) Size() int { return BatchHeaderSize + len(w.buf) + len(w.data) }

// AppendTo appends the finished batch to dst and returns it.
func (w *BatchWriter) AppendTo(dst []byte) []byte {
	base := uint32(BatchHeaderSize + len(w.buf))
	var h [BatchHeaderSize]byte
	binary.LittleEndian.PutUint32(h[0:], uint32(w.count))
	binary.LittleEndian.PutUint32(h[4:], uint32(w.nfields))
	binary.LittleEndian.PutUint32(h[8:], uint32(w.RecordSize()))
	binary.LittleEndian.PutUint32(h[12:], w.kind)
	start := len(dst)
	dst = append(dst, h[:]...)
	dst = append(dst, w.buf...)
	dst = append(dst, w.data...)
	// Rebase data offsets to the start of the batch.
	rs := w.RecordSize()
	recs := dst[start+BatchHeaderSize : start+int(base)]
	for i := 0; i < w.count; i++ {
		r := recs[i*rs : (i+1)*rs]
		for _, o := range [3]int{16, 24, 32} {
			binary.LittleEndian.PutUint32(r[o:], binary.LittleEndian.Uint32(r[o:])+base)
		}
		for f := 0; f < w.nfields; f++ {
			s := r[RecordFixed+FieldSlotSize*f:]
			if k := FieldKind(s[0]); k == FieldString || k == FieldRaw {
				binary.LittleEndian.PutUint64(s[8:], binary.LittleEndian.Uint64(s[8:])+uint64(base))
			}
		}
	}
	return dst
}

// Batch is a read-only, allocation-free view of an encoded batch.
type Batch struct {
	b          []byte
	count      int
	nfields    int
	recordSize int
	kind       uint32
}

// ParseBatch checks the header and every record's bounds and returns a view.
// A Batch returned without error never panics on access.
func ParseBatch(b []byte) (Batch, error) {
	if len(b) < BatchHeaderSize {
		return Batch{}, ErrBadBatch
	}
	count := binary.LittleEndian.Uint32(b[0:])
	nfields := binary.LittleEndian.Uint32(b[4:])
	rs := binary.LittleEndian.Uint32(b[8:])
	kind := binary.LittleEndian.Uint32(b[12:])
	if nfields > MaxFields || uint64(rs) != RecordFixed+FieldSlotSize*uint64(nfields) {
		return Batch{}, ErrBadBatch
	}
	if uint64(count)*uint64(rs) > uint64(len(b)-BatchHeaderSize) {
		return Batch{}, ErrBadBatch
	}
	bt := Batch{b: b, count: int(count), nfields: int(nfields), recordSize: int(rs), kind: kind}
	for i := 0; i < bt.count; i++ {
		r := bt.rec(i)
		for _, o := range [3]int{16, 24, 32} {
			if !inBounds(b, uint64(binary.LittleEndian.Uint32(r[o:])), uint64(binary.LittleEndian.Uint32(r[o+4:]))) {
				return Batch{}, ErrBadBatch
			}
		}
		for f := 0; f < bt.nfields; f++ {
			s := r[RecordFixed+FieldSlotSize*f:]
			switch k := FieldKind(s[0]); k {
			case FieldAbsent, FieldNull, FieldBool, FieldInt, FieldFloat:
			case FieldString, FieldRaw:
				if !inBounds(b, binary.LittleEndian.Uint64(s[8:]), uint64(binary.LittleEndian.Uint32(s[4:]))) {
					return Batch{}, ErrBadBatch
				}
			default:
				return Batch{}, ErrBadBatch
			}
		}
	}
	return bt, nil
}

func inBounds(b []byte, off, n uint64) bool { return off+n <= uint64(len(b)) }

func (bt Batch) rec(i int) []byte {
	o := BatchHeaderSize + i*bt.recordSize
	return bt.b[o : o+bt.recordSize]
}

// Len returns the number of records.
func (bt Batch) Len() int { return bt.count }

// NumFields returns the number of field slots per record.
func (bt Batch) NumFields() int { return bt.nfields }

// Kind returns the batch kind: BatchEvents, BatchEventTimers or BatchProcTimers.
func (bt Batch) Kind() uint32 { return bt.kind }

// Seq returns record i's stream sequence.
func (bt Batch) Seq(i int) uint64 { return binary.LittleEndian.Uint64(bt.rec(i)[0:]) }

// Timestamp returns record i's timestamp in ms.
func (bt Batch) Timestamp(i int) int64 { return int64(binary.LittleEndian.Uint64(bt.rec(i)[8:])) }

func (bt Batch) slice(r []byte, o int) []byte {
	off := binary.LittleEndian.Uint32(r[o:])
	n := binary.LittleEndian.Uint32(r[o+4:])
	return bt.b[off : off+n : off+n]
}

// Key returns record i's key bytes (a view into the batch).
func (bt Batch) Key(i int) []byte { return bt.slice(bt.rec(i), 16) }

// Value returns record i's payload (a view into the batch).
func (bt Batch) Value(i int) []byte { return bt.slice(bt.rec(i), 24) }

// Subject returns record i's subject (a view into the batch).
func (bt Batch) Subject(i int) []byte { return bt.slice(bt.rec(i), 32) }

// Field returns field slot f of record i; string and raw payloads are views.
func (bt Batch) Field(i, f int) Field {
	if f < 0 || f >= bt.nfields {
		return Field{}
	}
	s := bt.rec(i)[RecordFixed+FieldSlotSize*f:]
	fl := Field{Kind: FieldKind(s[0])}
	switch fl.Kind {
	case FieldString, FieldRaw:
		off := binary.LittleEndian.Uint64(s[8:])
		n := uint64(binary.LittleEndian.Uint32(s[4:]))
		fl.Str = bt.b[off : off+n : off+n]
	default:
		fl.Bits = binary.LittleEndian.Uint64(s[8:])
	}
	return fl
}

// AsInt converts the field to an int64 the way SDKs read integer fields:
// JSON integers, floats that are integral and in range, and strings that
// hold a decimal integer ("123"). ok is false otherwise.
func (f Field) AsInt() (n int64, ok bool) {
	switch f.Kind {
	case FieldInt:
		return f.Int(), true
	case FieldFloat:
		return FloatToInt(f.Float())
	case FieldString:
		return ParseInt(f.Str)
	}
	return 0, false
}

// FloatToInt converts x when it is integral and fits an int64.
func FloatToInt(x float64) (int64, bool) {
	if x != math.Trunc(x) || x < -(1<<63) || x >= 1<<63 {
		return 0, false
	}
	return int64(x), true
}

// ParseInt parses an optionally negative decimal integer without
// allocating.
func ParseInt(b []byte) (int64, bool) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	var u uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		u = u*10 + uint64(c-'0')
	}
	if neg {
		if u > 1<<63 {
			return 0, false
		}
		return -int64(u), true
	}
	if u > math.MaxInt64 {
		return 0, false
	}
	return int64(u), true
}
