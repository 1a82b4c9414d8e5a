package wasmstream_test

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"

	wasmstream "github.com/wasmstream/wasmstream/plugins/go"
)

func roundTrip[T comparable](t *testing.T, c wasmstream.Codec[T], v T, enc []byte) {
	t.Helper()
	b := c.Append([]byte("pre"), v)
	if !bytes.Equal(b[3:], enc) || string(b[:3]) != "pre" {
		t.Errorf("Append(%v) = %x, want pre+%x", v, b, enc)
	}
	got, err := c.Decode(enc)
	if err != nil || got != v {
		t.Errorf("Decode(%x) = %v, %v; want %v", enc, got, err, v)
	}
}

func TestCodecs(t *testing.T) {
	roundTrip(t, wasmstream.Int64, -2, []byte{0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	roundTrip(t, wasmstream.Int64, math.MaxInt64, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f})
	roundTrip(t, wasmstream.Float64, 1.5, []byte{0, 0, 0, 0, 0, 0, 0xf8, 0x3f})
	roundTrip(t, wasmstream.String, "ü", []byte("ü"))
	roundTrip(t, wasmstream.String, "", nil)
	roundTrip(t, wasmstream.Bool, true, []byte{1})
	roundTrip(t, wasmstream.Bool, false, []byte{0})
	type point struct{ X, Y int }
	roundTrip(t, wasmstream.JSONCodec[point](), point{1, 2}, []byte(`{"X":1,"Y":2}`))

	b := []byte("view")
	if got, _ := wasmstream.Bytes.Decode(b); &got[0] != &b[0] {
		t.Errorf("Bytes.Decode copied")
	}
	if got := wasmstream.Bytes.Append(nil, []byte("ab")); string(got) != "ab" {
		t.Errorf("Bytes.Append = %q", got)
	}

	for _, bad := range []func() error{
		func() error { _, err := wasmstream.Int64.Decode([]byte{1}); return err },
		func() error { _, err := wasmstream.Float64.Decode(make([]byte, 9)); return err },
		func() error { _, err := wasmstream.Bool.Decode([]byte{2}); return err },
		func() error { _, err := wasmstream.Bool.Decode(nil); return err },
	} {
		if err := bad(); !errors.Is(err, wasmstream.ErrCodec) {
			t.Errorf("decode error %v does not wrap ErrCodec", err)
		}
	}
	if _, err := wasmstream.JSONCodec[profile]().Decode([]byte("{")); err == nil {
		t.Errorf("JSONCodec decoded garbage")
	}
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "JSONCodec[func()]") {
			t.Errorf("JSONCodec of a func: %v", r)
		}
	}()
	wasmstream.JSONCodec[func()]().Append(nil, func() {})
}

func TestCodecsDoNotAllocate(t *testing.T) {
	buf := make([]byte, 0, 64)
	n := testing.AllocsPerRun(100, func() {
		b := wasmstream.Int64.Append(buf[:0], 42)
		b = wasmstream.Float64.Append(b, 1.5)
		b = wasmstream.Bool.Append(b, true)
		b = wasmstream.String.Append(b, "key")
		_, _ = wasmstream.Int64.Decode(b[:8])
		_, _ = wasmstream.Float64.Decode(b[8:16])
		_, _ = wasmstream.Bool.Decode(b[16:17])
	})
	if n != 0 {
		t.Errorf("%v allocations", n)
	}
}
