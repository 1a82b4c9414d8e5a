package wasmstream

import (
	"unsafe"

	"github.com/wasmstream/wasmstream/abi"
)

// Event is one input event. Its byte slices and strings are views into the
// batch the host handed over, valid only during ProcessElement; copy what
// you keep. Event is reused for the next event.
type Event struct {
	b abi.Batch
	i int
}

// Seq returns the event's stream sequence number.
func (e *Event) Seq() uint64 { return e.b.Seq(e.i) }

// Timestamp returns the event time in ms since the Unix epoch.
func (e *Event) Timestamp() int64 { return e.b.Timestamp(e.i) }

// Key returns the event's key as the host extracted it.
func (e *Event) Key() []byte { return e.b.Key(e.i) }

// Value returns the event's payload (usually a JSON document).
func (e *Event) Value() []byte { return e.b.Value(e.i) }

// Subject returns the subject the event was published on.
func (e *Event) Subject() []byte { return e.b.Subject(e.i) }

// JSON returns the event's payload for allocation-free lookups of fields the
// host did not extract: ev.JSON().Get("device.os").
func (e *Event) JSON() JSON { return JSON(e.b.Value(e.i)) }

// Field is an event field the host extracts from each JSON event before the
// plugin sees it, so reading it costs no parsing and no host call. Declare
// fields as package-level variables; declaration order is slot order.
type Field struct {
	slot int
	name string
}

// NewField declares a field whose JSON path is its name ("amount", or a
// dotted path such as "user.id").
func NewField(name string) Field { return NewFieldPath(name, "") }

// NewFieldPath declares a field named name read from the dotted JSON path
// path. The job config may override the path; the name stays.
func NewFieldPath(name, path string) Field {
	declare("field", name)
	c := abi.Contract{ABI: abi.Version, Name: "x", Fields: append(registry.fields[:len(registry.fields):len(registry.fields)], abi.FieldDesc{Name: name, Path: path})}
	if err := c.Validate(); err != nil {
		panic("wasmstream: NewField: " + err.Error())
	}
	registry.fields = c.Fields
	return Field{slot: len(registry.fields) - 1, name: name}
}

// Name returns the field's name.
func (f Field) Name() string { return f.name }

func (e *Event) field(f Field) abi.Field {
	if f.name == "" {
		panic("wasmstream: zero Field: declare fields with NewField as package-level variables")
	}
	return e.b.Field(e.i, f.slot)
}

// Kind returns what the field holds in this event; abi.FieldAbsent when the
// event does not have it.
func (e *Event) Kind(f Field) abi.FieldKind { return e.field(f).Kind }

// Int returns the field as an int64. It accepts JSON integers, floats with
// an integral value in range, and strings holding a decimal integer
// ("123"); ok is false otherwise.
func (e *Event) Int(f Field) (n int64, ok bool) { return e.field(f).AsInt() }

// Float returns the field as a float64. It accepts JSON numbers and strings
// holding a JSON number ("1.5"); ok is false otherwise.
func (e *Event) Float(f Field) (x float64, ok bool) {
	fl := e.field(f)
	switch fl.Kind {
	case abi.FieldFloat:
		return fl.Float(), true
	case abi.FieldInt:
		return float64(fl.Int()), true
	case abi.FieldString:
		return parseFloat(fl.Str)
	}
	return 0, false
}

// String returns a string field without copying: the string shares the
// batch's memory and is valid only during ProcessElement (clone it with
// strings.Clone to keep it). ok is false for non-string fields.
func (e *Event) String(f Field) (s string, ok bool) {
	fl := e.field(f)
	if fl.Kind != abi.FieldString {
		return "", false
	}
	return unsafe.String(unsafe.SliceData(fl.Str), len(fl.Str)), true
}

// Bytes returns a string field's bytes, or the raw JSON text of an object or
// array field, as a view valid during ProcessElement. ok is false for other
// kinds.
func (e *Event) Bytes(f Field) (b []byte, ok bool) {
	fl := e.field(f)
	if fl.Kind != abi.FieldString && fl.Kind != abi.FieldRaw {
		return nil, false
	}
	return fl.Str, true
}

// Bool returns a JSON boolean field; ok is false for other kinds.
func (e *Event) Bool(f Field) (v bool, ok bool) {
	fl := e.field(f)
	if fl.Kind != abi.FieldBool {
		return false, false
	}
	return fl.Bits != 0, true
}
