package abi

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// touchBatch reads every record and field of a parsed batch.
func touchBatch(bt Batch) {
	for i := 0; i < bt.Len(); i++ {
		_ = bt.Seq(i)
		_ = bt.Timestamp(i)
		_ = bt.Key(i)
		_ = bt.Value(i)
		_ = bt.Subject(i)
		for f := -1; f <= bt.NumFields(); f++ {
			_ = bt.Field(i, f)
		}
	}
}

type fuzzRecord struct {
	seq                 uint64
	ts                  int64
	key, value, subject []byte
	fields              []Field
}

// recordsFrom derives up to 8 records with nfields fields from b.
func recordsFrom(b []byte) (nfields int, recs []fuzzRecord) {
	take := func(n int) []byte {
		n = min(n, len(b))
		s := b[:n]
		b = b[n:]
		return s
	}
	if len(b) > 0 {
		nfields = int(b[0] % 4)
		b = b[1:]
	}
	for len(b) > 0 && len(recs) < 8 {
		var r fuzzRecord
		h := take(3)
		for len(h) < 3 {
			h = append(h, 0)
		}
		r.seq = uint64(h[0]) << 40
		r.ts = -int64(h[1])
		r.key = take(int(h[2] % 5))
		r.value = take(int(h[2] % 7))
		r.subject = take(int(h[2] % 3))
		for f := 0; f < nfields && f < int(h[0]%5); f++ {
			k := take(1)
			if len(k) == 0 {
				break
			}
			fl := Field{Kind: FieldKind(k[0] % 7)}
			switch fl.Kind {
			case FieldString, FieldRaw:
				fl.Str = take(int(k[0] % 6))
			case FieldAbsent, FieldNull:
			default:
				fl.Bits = uint64(k[0]) * 0x0101010101
			}
			r.fields = append(r.fields, fl)
		}
		recs = append(recs, r)
	}
	return nfields, recs
}

func FuzzParseBatch(f *testing.F) {
	var w BatchWriter
	w.Reset(BatchEvents, 2)
	w.Add(7, 1000, []byte("k"), []byte(`{"a":1}`), []byte("s"), []Field{{Kind: FieldString, Str: []byte("x")}, {Kind: FieldInt, Bits: 5}})
	f.Add(w.AppendTo(nil))
	f.Add([]byte{})
	f.Add(make([]byte, BatchHeaderSize))
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 40, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		// Arbitrary bytes: parse, and if accepted, never panic on access.
		if bt, err := ParseBatch(b); err == nil {
			touchBatch(bt)
		}

		// Round trip of records derived from the input, appended after a
		// prefix to check that offsets are relative to the batch.
		nfields, recs := recordsFrom(b)
		var w BatchWriter
		w.Reset(BatchEvents, nfields)
		for _, r := range recs {
			w.Add(r.seq, r.ts, r.key, r.value, r.subject, r.fields)
		}
		prefix := []byte("prefix")
		enc := w.AppendTo(append([]byte(nil), prefix...))
		if len(enc)-len(prefix) != w.Size() {
			t.Fatalf("Size %d, encoded %d", w.Size(), len(enc)-len(prefix))
		}
		bt, err := ParseBatch(enc[len(prefix):])
		if err != nil {
			t.Fatalf("ParseBatch of a written batch: %v", err)
		}
		if bt.Len() != len(recs) || bt.NumFields() != nfields || bt.Kind() != BatchEvents {
			t.Fatalf("header: %d records, %d fields", bt.Len(), bt.NumFields())
		}
		for i, r := range recs {
			if bt.Seq(i) != r.seq || bt.Timestamp(i) != r.ts || !bytes.Equal(bt.Key(i), r.key) ||
				!bytes.Equal(bt.Value(i), r.value) || !bytes.Equal(bt.Subject(i), r.subject) {
				t.Fatalf("record %d differs", i)
			}
			for fi := 0; fi < nfields; fi++ {
				var want Field
				if fi < len(r.fields) {
					want = r.fields[fi]
				}
				got := bt.Field(i, fi)
				if got.Kind != want.Kind || got.Bits != want.Bits || !bytes.Equal(got.Str, want.Str) {
					t.Fatalf("record %d field %d: got %+v want %+v", i, fi, got, want)
				}
			}
		}
		// Any corruption of the header or of one record is either rejected
		// or still safe to read.
		if len(enc) > len(prefix)+BatchHeaderSize {
			c := append([]byte(nil), enc[len(prefix):]...)
			i := int(binary.LittleEndian.Uint16(append(append([]byte(nil), b...), 0, 0))) % len(c)
			c[i] ^= 0xa5
			if bt, err := ParseBatch(c); err == nil {
				touchBatch(bt)
			}
		}
	})
}

func FuzzNextItem(f *testing.F) {
	f.Add(AppendItem(AppendItem(nil, []byte("a")), []byte("")))
	f.Add([]byte{1, 0, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		var items [][]byte
		rest := b
		var err error
		for {
			var item []byte
			var ok bool
			item, rest, ok, err = NextItem(rest)
			if err != nil || !ok {
				break
			}
			items = append(items, item)
		}
		n, cerr := CountItems(b)
		if (err != nil) != (cerr != nil) {
			t.Fatalf("NextItem error %v, CountItems error %v", err, cerr)
		}
		if err != nil {
			return
		}
		if n != len(items) {
			t.Fatalf("CountItems %d, NextItem found %d", n, len(items))
		}
		var enc []byte
		for _, it := range items {
			enc = AppendItem(enc, it)
		}
		if !bytes.Equal(enc, b) {
			t.Fatalf("re-encoding differs")
		}
	})
}

func sameOpenInfo(a, b OpenInfo) bool {
	if a.Job != b.Job || a.Worker != b.Worker || a.Parallelism != b.Parallelism ||
		len(a.Fields) != len(b.Fields) || len(a.Config) != len(b.Config) {
		return false
	}
	for i := range a.Fields {
		if a.Fields[i] != b.Fields[i] {
			return false
		}
	}
	for k, v := range a.Config {
		if w, ok := b.Config[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func FuzzDecodeOpenInfo(f *testing.F) {
	o := OpenInfo{Job: "j", Worker: 3, Parallelism: 8, Fields: []string{"a", "b"}, Config: map[string]string{"k": "v", "a": ""}}
	f.Add(o.Append(nil))
	f.Add([]byte{})
	f.Add(AppendItem(AppendItem(nil, []byte("fields")), []byte("999999999")))
	f.Add(AppendItem(AppendItem(nil, []byte("future")), []byte("x")))
	f.Fuzz(func(t *testing.T, b []byte) {
		// Arbitrary bytes: decoded ones re-encode to the same information.
		if o, err := DecodeOpenInfo(b); err == nil {
			o2, err := DecodeOpenInfo(o.Append(nil))
			if err != nil || !sameOpenInfo(o, o2) {
				t.Fatalf("round trip of %+v: %+v, %v", o, o2, err)
			}
		}
		// An OpenInfo built from the input round-trips.
		var o OpenInfo
		_, recs := recordsFrom(b)
		for i, r := range recs {
			switch i % 3 {
			case 0:
				o.Job = string(r.key)
				o.Worker = int(r.seq >> 40)
				o.Parallelism = int(-r.ts)
			case 1:
				o.Fields = append(o.Fields, string(r.value))
			case 2:
				if o.Config == nil {
					o.Config = map[string]string{}
				}
				o.Config[string(r.key)] = string(r.subject)
			}
		}
		o2, err := DecodeOpenInfo(o.Append(nil))
		if err != nil || !sameOpenInfo(o, o2) {
			t.Fatalf("round trip of %+v: %+v, %v", o, o2, err)
		}
	})
}
