package jsonscan

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/wasmstream/wasmstream/abi"
)

func mustCompile(t testing.TB, paths ...string) *Scanner {
	t.Helper()
	s, err := Compile(paths)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestCompileErrors(t *testing.T) {
	for _, p := range []string{"", "a..b", ".a", "a."} {
		if _, err := Compile([]string{p}); err == nil {
			t.Errorf("Compile(%q): no error", p)
		}
	}
}

func str(s string) abi.Field  { return abi.Field{Kind: abi.FieldString, Str: []byte(s)} }
func i64(v int64) abi.Field   { return abi.Field{Kind: abi.FieldInt, Bits: uint64(v)} }
func f64(v float64) abi.Field { return abi.Field{Kind: abi.FieldFloat, Bits: math.Float64bits(v)} }
func raw(s string) abi.Field  { return abi.Field{Kind: abi.FieldRaw, Str: []byte(s)} }
func boolean(b bool) abi.Field {
	f := abi.Field{Kind: abi.FieldBool}
	if b {
		f.Bits = 1
	}
	return f
}

var (
	absent = abi.Field{}
	null   = abi.Field{Kind: abi.FieldNull}
)

func sameField(a, b abi.Field) bool {
	return a.Kind == b.Kind && a.Bits == b.Bits && bytes.Equal(a.Str, b.Str)
}

func TestScan(t *testing.T) {
	paths := []string{"user_no", "da_id", "u.id", "u", "s", "x.y.z"}
	tests := []struct {
		in   string
		want []abi.Field
	}{
		{`{"user_no":42,"da_id":7,"log_time":1700000000000}`, []abi.Field{i64(42), i64(7), absent, absent, absent, absent}},
		{` { "user_no" : -9223372036854775808 , "da_id" : 9223372036854775808 } `, []abi.Field{i64(math.MinInt64), f64(9223372036854775808), absent, absent, absent, absent}},
		{`{"user_no":1.5,"da_id":1e3}`, []abi.Field{f64(1.5), f64(1000), absent, absent, absent, absent}},
		{`{"user_no":"abc","da_id":"a\"b\\c\u00e9\n"}`, []abi.Field{str("abc"), str("a\"b\\cé\n"), absent, absent, absent, absent}},
		{`{"u":{"id":"x","z":[1,{"id":2}]}}`, []abi.Field{absent, absent, str("x"), raw(`{"id":"x","z":[1,{"id":2}]}`), absent, absent}},
		{`{"u":[1,2],"s":true,"x":{"y":{"z":null}}}`, []abi.Field{absent, absent, absent, raw(`[1,2]`), boolean(true), null}},
		{`{"s":false,"x":{"y":3}}`, []abi.Field{absent, absent, absent, absent, boolean(false), absent}},
		{`{"u":{"id":1},"u":{"other":2}}`, []abi.Field{absent, absent, absent, raw(`{"other":2}`), absent, absent}},
		{`{"user_no":1,"user_no":2}`, []abi.Field{i64(2), absent, absent, absent, absent, absent}},
		{`{"user\u005fno":"esc-key"}`, []abi.Field{str("esc-key"), absent, absent, absent, absent, absent}},
		{`{"da_id":"\ud83d\ude00 \ud800x"}`, []abi.Field{absent, str("😀 \uFFFDx"), absent, absent, absent, absent}},
		{`[{"user_no":1}]`, []abi.Field{absent, absent, absent, absent, absent, absent}},
		{`"top"`, []abi.Field{absent, absent, absent, absent, absent, absent}},
	}
	s := mustCompile(t, paths...)
	out := make([]abi.Field, len(paths))
	for _, tc := range tests {
		if err := s.Scan([]byte(tc.in), out); err != nil {
			t.Errorf("Scan(%s): %v", tc.in, err)
			continue
		}
		for i := range paths {
			if !sameField(out[i], tc.want[i]) {
				t.Errorf("Scan(%s) %s = %v %q %d, want %v %q %d", tc.in, paths[i], out[i].Kind, out[i].Str, out[i].Bits, tc.want[i].Kind, tc.want[i].Str, tc.want[i].Bits)
			}
		}
	}
}

func TestScanErrors(t *testing.T) {
	s := mustCompile(t, "a")
	out := make([]abi.Field, 1)
	for _, in := range []string{
		``, ` `, `{`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{"a":1 "b":2}`, `{a:1}`, `[1,]`, `[1 2]`,
		`{"a":01}`, `{"a":-}`, `{"a":1.}`, `{"a":1e}`, `{"a":.5}`, `{"a":+1}`, `{"a":tru}`, `{"a":nul}`,
		`{"a":"x\qy"}`, `{"a":"\u12"}`, "{\"a\":\"x\ny\"}", `{"a":"open}`, `{"a":1}x`, `{"a":1}{}`, `{"a":1e999}`,
		strings.Repeat("[", MaxDepth+1) + strings.Repeat("]", MaxDepth+1),
	} {
		err := s.Scan([]byte(in), out)
		if err == nil {
			t.Errorf("Scan(%q): no error", in)
			continue
		}
		if json.Valid([]byte(in)) && !strings.Contains(in, "1e999") {
			t.Errorf("Scan(%q) = %v but encoding/json accepts it", in, err)
		}
		if !strings.HasPrefix(err.Error(), "invalid JSON at byte ") {
			t.Errorf("Scan(%q): error %q lacks the offset", in, err)
		}
	}
}

func TestKey(t *testing.T) {
	s := mustCompile(t, "k")
	out := make([]abi.Field, 1)
	for in, want := range map[string]string{
		`{"k":"a\tb"}`:          "a\tb",
		`{"k":123}`:             "123",
		`{"k":-1.50e2}`:         "-1.50e2",
		`{"k":"plain"}`:         "plain",
		`{"k":"\u00e9t\u00e9"}`: "été",
	} {
		if err := s.Scan([]byte(in), out); err != nil {
			t.Fatal(err)
		}
		k, problem := s.Key(0)
		if problem != "" || string(k) != want {
			t.Errorf("Key(%s) = %q, %q; want %q", in, k, problem, want)
		}
	}
	for in, want := range map[string]string{
		`{}`:            "is missing",
		`{"k":null}`:    "is null",
		`{"k":true}`:    "is a bool, not a string or number",
		`{"k":[1]}`:     "is an object or array, not a string or number",
		`{"k":{"a":1}}`: "is an object or array, not a string or number",
	} {
		if err := s.Scan([]byte(in), out); err != nil {
			t.Fatal(err)
		}
		if _, problem := s.Key(0); problem != want {
			t.Errorf("Key(%s) problem %q, want %q", in, problem, want)
		}
	}
}

func TestSpan(t *testing.T) {
	s := mustCompile(t, "a", "b", "c")
	out := make([]abi.Field, 3)
	in := []byte(`{"a":"xy","b":12,"c":"q\n"}`)
	if err := s.Scan(in, out); err != nil {
		t.Fatal(err)
	}
	if st, en, sc, ok := s.Span(0); !ok || sc || string(in[st:en]) != "xy" {
		t.Errorf("Span(a) = %d %d %v %v", st, en, sc, ok)
	}
	if st, en, sc, ok := s.Span(1); !ok || sc || string(in[st:en]) != "12" {
		t.Errorf("Span(b) = %d %d %v %v", st, en, sc, ok)
	}
	if _, _, sc, ok := s.Span(2); !ok || !sc {
		t.Errorf("Span(c) not in scratch")
	}
}

func TestScanAllocs(t *testing.T) {
	s := mustCompile(t, "user_no", "da_id", "name")
	out := make([]abi.Field, 3)
	in := []byte(`{"user_no":12345,"da_id":678,"log_time":1700000000000,"name":"a\u00e9b","f":1.25e3}`)
	_ = s.Scan(in, out)
	if n := testing.AllocsPerRun(100, func() {
		if err := s.Scan(in, out); err != nil {
			t.Fatal(err)
		}
		s.Key(0)
	}); n != 0 {
		t.Errorf("Scan allocates %v times per event", n)
	}
	bad := []byte(`{"user_no":12345,`)
	if n := testing.AllocsPerRun(100, func() { _ = s.Scan(bad, out) }); n != 0 {
		t.Errorf("Scan of malformed JSON allocates %v times", n)
	}
}

var fuzzPaths = []string{"a", "b", "a.b", "c.d.e", "é", "a.b.c", "b"}

func FuzzScan(f *testing.F) {
	for _, seed := range []string{
		`{"a":1,"b":"x"}`, `{"a":{"b":{"c":[1,2]}},"c":{"d":{"e":null}}}`, `{"é":"\u00e9","b":1e5}`,
		`{"a":-0,"b":123456789012345678901234}`, `{"a":"\ud800\udc00"}`, `[1,2,3]`, `{"a":{"b":1},"a":2}`,
		`{"b":"\xff\xfe"}`, `{"a" : true , "b" : false}`, `1.5e-400`, `{"a":"\\\/\b\f\n\r\t"}`,
	} {
		f.Add([]byte(seed))
	}
	s, err := Compile(fuzzPaths)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		out := make([]abi.Field, len(fuzzPaths))
		err := s.Scan(data, out)
		valid := json.Valid(data)
		if err != nil {
			if valid && !strings.Contains(err.Error(), "out of the float64 range") {
				t.Fatalf("Scan(%q) = %v, encoding/json accepts it", data, err)
			}
			return
		}
		if !valid {
			t.Fatalf("Scan(%q) accepted input encoding/json rejects", data)
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("encoding/json: %v", err)
		}
		for slot, p := range fuzzPaths {
			want, ok := lookup(v, p)
			checkField(t, data, p, out[slot], s.Literal(slot), want, ok)
		}
	})
}

func lookup(v any, path string) (any, bool) {
	for seg := range strings.SplitSeq(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = m[seg]; !ok {
			return nil, false
		}
	}
	return v, true
}

func checkField(t *testing.T, data []byte, path string, got abi.Field, lit []byte, want any, present bool) {
	t.Helper()
	fail := func() {
		t.Fatalf("Scan(%q) %s = %v %q %d; encoding/json has %#v (present %v)", data, path, got.Kind, got.Str, got.Bits, want, present)
	}
	if !present {
		if got.Kind != abi.FieldAbsent {
			fail()
		}
		return
	}
	switch w := want.(type) {
	case nil:
		if got.Kind != abi.FieldNull {
			fail()
		}
	case bool:
		if got.Kind != abi.FieldBool || (got.Bits == 1) != w {
			fail()
		}
	case string:
		if got.Kind != abi.FieldString || string(got.Str) != w {
			fail()
		}
	case json.Number:
		if string(lit) != w.String() {
			fail()
		}
		switch got.Kind {
		case abi.FieldInt:
			n, err := strconv.ParseInt(w.String(), 10, 64)
			if err != nil || n != got.Int() {
				fail()
			}
		case abi.FieldFloat:
			if _, err := strconv.ParseInt(w.String(), 10, 64); err == nil {
				fail() // an integer that fits must be FieldInt
			}
			x, err := w.Float64()
			if err != nil || x != got.Float() {
				fail()
			}
		default:
			fail()
		}
	case map[string]any, []any:
		if got.Kind != abi.FieldRaw {
			fail()
		}
		dec := json.NewDecoder(bytes.NewReader(got.Str))
		dec.UseNumber()
		var r any
		if err := dec.Decode(&r); err != nil || !reflect.DeepEqual(r, w) {
			fail()
		}
	default:
		fail()
	}
}

func BenchmarkScan(b *testing.B) {
	s := mustCompile(b, "user_no", "da_id", "log_time")
	out := make([]abi.Field, 3)
	in := []byte(`{"user_no":48213,"da_id":417,"log_time":1700000123456}`)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Scan(in, out); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkScanOneField(b *testing.B) {
	s := mustCompile(b, "da_id")
	out := make([]abi.Field, 1)
	in := []byte(`{"user_no":48213,"da_id":417,"log_time":1700000123456}`)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Scan(in, out); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodingJSON(b *testing.B) {
	in := []byte(`{"user_no":48213,"da_id":417,"log_time":1700000123456}`)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	var v struct {
		UserNo  int64 `json:"user_no"`
		DaID    int64 `json:"da_id"`
		LogTime int64 `json:"log_time"`
	}
	for b.Loop() {
		if err := json.Unmarshal(in, &v); err != nil {
			b.Fatal(err)
		}
	}
}
