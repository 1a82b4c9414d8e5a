package wasmstream_test

import (
	"encoding/json"
	"math"
	"strconv"
	"testing"
	"unicode/utf8"
	"unsafe"

	"github.com/wasmstream/wasmstream/abi"
	wasmstream "github.com/wasmstream/wasmstream/plugins/go"
)

const doc = ` { "a" : { "b" : [ 10, {"c":"x\"y"}, -2.5e1 ] , "n":null },
  "s":"plain", "t":true, "f":false, "big":12345678901234567890, "num":"17",
  "esc\u0061ped":"\u00e9\ud83d\ude00\n", "emptyobj":{}, "emptyarr":[], "e":"" } `

func TestJSONGet(t *testing.T) {
	j := wasmstream.JSON(doc)
	for _, c := range []struct {
		path string
		raw  string
		kind abi.FieldKind
	}{
		{"a.b.0", "10", abi.FieldInt},
		{"a.b.1.c", `"x\"y"`, abi.FieldString},
		{"a.b.2", "-2.5e1", abi.FieldFloat},
		{"a.b", `[ 10, {"c":"x\"y"}, -2.5e1 ]`, abi.FieldRaw},
		{"a.n", "null", abi.FieldNull},
		{"t", "true", abi.FieldBool},
		{"big", "12345678901234567890", abi.FieldFloat},
		{"escaped", `"\u00e9\ud83d\ude00\n"`, abi.FieldString},
		{"emptyobj", "{}", abi.FieldRaw},
		{"e", `""`, abi.FieldString},
		{"a.b.3", "", abi.FieldAbsent},
		{"a.b.x", "", abi.FieldAbsent},
		{"a.b.-1", "", abi.FieldAbsent},
		{"s.x", "", abi.FieldAbsent},
		{"missing", "", abi.FieldAbsent},
		{"a.", "", abi.FieldAbsent},
		{"emptyarr.0", "", abi.FieldAbsent},
	} {
		v := j.Get(c.path)
		if string(v.Raw()) != c.raw || v.Kind() != c.kind || v.Exists() != (c.raw != "") {
			t.Errorf("Get(%q) = %q kind %v exists %v; want %q %v", c.path, v.Raw(), v.Kind(), v.Exists(), c.raw, c.kind)
		}
	}
	if j.Get("").Kind() != abi.FieldRaw || !j.Get("a").Get("b.1").Get("c").Exists() {
		t.Errorf("chained Get")
	}

	if n, ok := j.Get("a.b.0").Int(); !ok || n != 10 {
		t.Errorf("Int = %d, %v", n, ok)
	}
	if n, ok := j.Get("num").Int(); !ok || n != 17 {
		t.Errorf("Int of a decimal string = %d, %v", n, ok)
	}
	if n, ok := j.Get("a.b.2").Int(); !ok || n != -25 {
		t.Errorf("Int of -2.5e1 = %d, %v; want -25", n, ok)
	}
	if _, ok := wasmstream.JSON("2.5").Int(); ok {
		t.Errorf("Int of 2.5 succeeded")
	}
	if x, ok := j.Get("a.b.2").Float(); !ok || x != -25 {
		t.Errorf("Float = %v, %v", x, ok)
	}
	if _, ok := j.Get("big").Int(); ok {
		t.Errorf("Int of an out-of-range integer succeeded")
	}
	if x, ok := j.Get("num").Float(); !ok || x != 17 {
		t.Errorf("Float of a string = %v, %v", x, ok)
	}
	if s, ok := j.Get("s").String(); !ok || s != "plain" {
		t.Errorf("String = %q, %v", s, ok)
	}
	if s, ok := j.Get("a.b.1.c").String(); !ok || s != `x"y` {
		t.Errorf("escaped String = %q, %v", s, ok)
	}
	if s, ok := j.Get("escaped").String(); !ok || s != "é😀\n" {
		t.Errorf("unicode String = %q, %v", s, ok)
	}
	if _, ok := j.Get("t").String(); ok {
		t.Errorf("String of a bool")
	}
	if b, ok := j.Get("t").Bool(); !ok || !b {
		t.Errorf("Bool true = %v, %v", b, ok)
	}
	if b, ok := j.Get("f").Bool(); !ok || b {
		t.Errorf("Bool false = %v, %v", b, ok)
	}
	if _, ok := j.Get("s").Bool(); ok {
		t.Errorf("Bool of a string")
	}
	if !j.Get("a.n").IsNull() || j.Get("t").IsNull() {
		t.Errorf("IsNull")
	}
	if x, ok := wasmstream.JSON(`1e400`).Float(); ok {
		t.Errorf("Float out of range = %v", x)
	}
	if n, ok := wasmstream.JSON(`2e3`).Int(); !ok || n != 2000 {
		t.Errorf("Int of 2e3 = %d, %v", n, ok)
	}
}

func TestJSONStringIsZeroCopy(t *testing.T) {
	b := []byte(`{"k":"value"}`)
	s, _ := wasmstream.JSON(b).Get("k").String()
	if unsafe.StringData(s) != &b[6] {
		t.Errorf("String copied an unescaped string")
	}
}

func TestJSONMalformed(t *testing.T) {
	for _, d := range []string{``, `{`, `{"a"`, `{"a":`, `{"a":1`, `{"a" 1}`, `[1,2`, `"abc`, `{"a":"\`, `}`, `{,}`, `{"a":1,,"b":2}`, `nul`, `{"a":[1,}`} {
		j := wasmstream.JSON(d)
		for _, p := range []string{"", "a", "b", "0", "a.b"} {
			v := j.Get(p)
			v.Int()
			v.Float()
			v.String()
			v.Bool()
			v.Kind()
		}
	}
	if wasmstream.JSON(`{"a":1,"b"}`).Get("b").Exists() {
		t.Errorf("member without a value exists")
	}
	if !wasmstream.JSON(`{"a":1,"b":2`).Get("a").Exists() {
		t.Errorf("a complete member before a truncation was not found")
	}
}

func TestJSONDoesNotAllocate(t *testing.T) {
	j := wasmstream.JSON(doc)
	n := testing.AllocsPerRun(100, func() {
		j.Get("a.b.1.c").Raw()
		j.Get("escaped").Exists()
		j.Get("a.b.2").Float()
		j.Get("a.b.0").Int()
		j.Get("num").Int()
		j.Get("s").String()
		j.Get("t").Bool()
	})
	if n != 0 {
		t.Errorf("%v allocations", n)
	}
}

func FuzzJSONGet(f *testing.F) {
	f.Add([]byte(doc), "a.b.1.c")
	f.Add([]byte(`{"a":{"b":[1,2,{"c":"\u00e9"}]}}`), "a.b.2.c")
	f.Add([]byte(`[1,"2",3.5,true,null]`), "1")
	f.Add([]byte(`{"k\u002e":1}`), "k.")
	f.Add([]byte(`{"a":-0.0e-0}`), "a")
	f.Fuzz(func(t *testing.T, data []byte, path string) {
		v := wasmstream.JSON(data).Get(path)
		n, intOK := v.Int()
		x, floatOK := v.Float()
		s, strOK := v.String()
		b, boolOK := v.Bool()
		kind := v.Kind()
		if !json.Valid(data) || !v.Exists() {
			return
		}
		raw := v.Raw()
		if !json.Valid(raw) {
			t.Fatalf("Get(%q) of valid JSON returned invalid JSON %q", path, raw)
		}
		var want any
		dec := json.NewDecoder(bytesReader(raw))
		dec.UseNumber()
		if err := dec.Decode(&want); err != nil {
			t.Fatal(err)
		}
		switch w := want.(type) {
		case string:
			if !strOK && utf8.Valid(raw) {
				t.Fatalf("String of %q failed", raw)
			}
			if strOK && s != w && utf8.ValidString(w) && utf8.Valid(raw) {
				t.Fatalf("String of %q = %q, encoding/json says %q", raw, s, w)
			}
			if kind != abi.FieldString {
				t.Fatalf("Kind of %q = %v", raw, kind)
			}
		case json.Number:
			wf, err := strconv.ParseFloat(string(w), 64)
			if err == nil && (!floatOK || x != wf) {
				t.Fatalf("Float of %q = %v,%v; want %v", raw, x, floatOK, wf)
			}
			if wi, err := strconv.ParseInt(string(w), 10, 64); err == nil && (!intOK || n != wi) {
				t.Fatalf("Int of %q = %d,%v; want %d", raw, n, intOK, wi)
			}
			if intOK && float64(n) != math.Trunc(wf) {
				t.Fatalf("Int of %q = %d, value %v", raw, n, wf)
			}
		case bool:
			if !boolOK || b != w {
				t.Fatalf("Bool of %q = %v,%v", raw, b, boolOK)
			}
		case nil:
			if !v.IsNull() || kind != abi.FieldNull {
				t.Fatalf("null %q not null", raw)
			}
		}
	})
}
