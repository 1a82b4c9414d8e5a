package wasmstream

import (
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"

	"github.com/wasmstream/wasmstream/abi"
)

// JSON is a JSON value in its encoded form, read lazily: Get scans only as
// far as the path it looks up, and the accessors parse only the value they
// return. Nothing allocates except String on a string containing escapes
// (and Float on a number beyond the float64 range).
// Use it for event fields the host does not extract:
//
//	os, ok := ev.JSON().Get("device.os").String()
//
// JSON does not validate the document: a malformed document yields absent
// values, never a panic.
type JSON []byte

// Get returns the value at a dotted path: object member names separated by
// '.', and decimal indexes for arrays ("items.0.sku"). A member name that
// contains '.' cannot be addressed. An empty path returns the value itself.
// The result is absent (Exists false) when the path does not resolve.
func (j JSON) Get(path string) JSON {
	if path == "" {
		return j.token()
	}
	// The document is scanned only as far as the path needs.
	v := j[skipWS(j, 0):]
	for len(v) > 0 {
		seg, rest, more := strings.Cut(path, ".")
		v = lookup(v, seg)
		if !more {
			return v
		}
		path = rest
	}
	return nil
}

// token returns the value with surrounding whitespace removed, or nil when
// it does not start a value.
func (j JSON) token() JSON {
	i := skipWS(j, 0)
	if i >= len(j) {
		return nil
	}
	end := skipValue(j, i)
	if end < 0 {
		return nil
	}
	return j[i:end:end]
}

// Exists reports whether the value is present.
func (j JSON) Exists() bool { return len(j.token()) > 0 }

// Raw returns the value's encoded bytes without surrounding whitespace (nil
// when absent).
func (j JSON) Raw() []byte { return j.token() }

// IsNull reports whether the value is JSON null.
func (j JSON) IsNull() bool { return string(j.token()) == "null" }

// Kind classifies the value like a host-extracted field: FieldAbsent,
// FieldNull, FieldBool, FieldInt (an integer that fits int64), FieldFloat
// (any other number), FieldString, or FieldRaw (object, array, or anything
// unrecognised).
func (j JSON) Kind() abi.FieldKind {
	t := j.token()
	if len(t) == 0 {
		return abi.FieldAbsent
	}
	switch string(t) {
	case "null":
		return abi.FieldNull
	case "true", "false":
		return abi.FieldBool
	}
	switch c := t[0]; {
	case c == '"':
		return abi.FieldString
	case c == '-' || c >= '0' && c <= '9':
		if _, ok := abi.ParseInt(t); ok {
			return abi.FieldInt
		}
		if isNumber(t) {
			return abi.FieldFloat
		}
	}
	return abi.FieldRaw
}

// Int returns the value as an int64: a JSON integer, a number with an
// integral value in range (2.0, 1e3), or a string holding a decimal
// integer.
func (j JSON) Int() (int64, bool) {
	t := j.token()
	if len(t) == 0 {
		return 0, false
	}
	if t[0] == '"' {
		s, ok := rawString(t)
		if !ok {
			return 0, false
		}
		return abi.ParseInt(s)
	}
	if n, ok := abi.ParseInt(t); ok {
		return n, true
	}
	x, ok := parseFloat(t)
	if !ok {
		return 0, false
	}
	return abi.FloatToInt(x)
}

// Float returns the value as a float64: a JSON number, or a string holding
// one.
func (j JSON) Float() (float64, bool) {
	t := j.token()
	if len(t) > 0 && t[0] == '"' {
		s, ok := rawString(t)
		if !ok {
			return 0, false
		}
		t = s
	}
	return parseFloat(t)
}

// Bool returns a JSON boolean.
func (j JSON) Bool() (v, ok bool) {
	switch string(j.token()) {
	case "true":
		return true, true
	case "false":
		return false, true
	}
	return false, false
}

// String returns a JSON string's text. Without escape sequences the string
// shares j's memory (no copy: valid as long as j's bytes are, which for
// event data means during ProcessElement); with escapes it is decoded into a
// new string. ok is false for other kinds and malformed escapes.
func (j JSON) String() (string, bool) {
	t := j.token()
	if len(t) < 2 || t[0] != '"' {
		return "", false
	}
	if s, ok := rawString(t); ok {
		return unsafe.String(unsafe.SliceData(s), len(s)), true
	}
	b, ok := appendUnescaped(nil, t[1:len(t)-1])
	if !ok {
		return "", false
	}
	return string(b), true
}

// rawString returns the contents of a string token that has no escapes.
func rawString(t []byte) ([]byte, bool) {
	if len(t) < 2 || t[0] != '"' || t[len(t)-1] != '"' {
		return nil, false
	}
	s := t[1 : len(t)-1]
	for _, c := range s {
		if c == '\\' {
			return nil, false
		}
	}
	return s, true
}

func skipWS(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// skipString returns the index after the string starting at b[i] == '"',
// or -1 when it is unterminated.
func skipString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return -1
}

// skipValue returns the index after the value starting at b[i], or -1.
func skipValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				e := skipString(b, i)
				if e < 0 {
					return -1
				}
				i = e - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
		}
		return -1
	case '}', ']', ',', ':':
		return -1
	}
	// Number or literal: up to the next delimiter.
	s := i
	for ; i < len(b); i++ {
		switch b[i] {
		case ' ', '\t', '\n', '\r', ',', '}', ']', ':', '"', '{', '[':
			return i
		}
	}
	if i == s {
		return -1
	}
	return i
}

// lookup finds member seg of the object, or element seg of the array, v.
func lookup(v []byte, seg string) JSON {
	switch v[0] {
	case '{':
		i := skipWS(v, 1)
		for i < len(v) && v[i] == '"' {
			ke := skipString(v, i)
			if ke < 0 {
				return nil
			}
			key := v[i+1 : ke-1]
			i = skipWS(v, ke)
			if i >= len(v) || v[i] != ':' {
				return nil
			}
			i = skipWS(v, i+1)
			if i >= len(v) {
				return nil
			}
			ve := skipValue(v, i)
			if ve < 0 {
				return nil
			}
			if keyEqual(key, seg) {
				return v[i:ve:ve]
			}
			i = skipWS(v, ve)
			if i >= len(v) || v[i] != ',' {
				return nil
			}
			i = skipWS(v, i+1)
		}
	case '[':
		n, ok := parseIndex(seg)
		if !ok {
			return nil
		}
		i := skipWS(v, 1)
		for k := int64(0); i < len(v) && v[i] != ']'; k++ {
			ve := skipValue(v, i)
			if ve < 0 {
				return nil
			}
			if k == n {
				return v[i:ve:ve]
			}
			i = skipWS(v, ve)
			if i >= len(v) || v[i] != ',' {
				return nil
			}
			i = skipWS(v, i+1)
		}
	}
	return nil
}

// parseIndex parses an array index: decimal digits only.
func parseIndex(s string) (int64, bool) {
	if len(s) == 0 || len(s) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int64(s[i]-'0')
	}
	return n, true
}

// keyEqual compares an encoded member name with seg, decoding escapes.
func keyEqual(key []byte, seg string) bool {
	for _, c := range key {
		if c == '\\' {
			var tmp [128]byte
			u, ok := appendUnescaped(tmp[:0], key)
			return ok && string(u) == seg
		}
	}
	return string(key) == seg
}

// appendUnescaped decodes the contents of a JSON string (without quotes)
// onto dst. Invalid surrogates decode to U+FFFD, as encoding/json does.
func appendUnescaped(dst, s []byte) ([]byte, bool) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			dst = append(dst, c)
			continue
		}
		i++
		if i >= len(s) {
			return dst, false
		}
		switch s[i] {
		case '"', '\\', '/':
			dst = append(dst, s[i])
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, ok := hex4(s, i+1)
			if !ok {
				return dst, false
			}
			i += 4
			if utf16.IsSurrogate(r) {
				if r2, ok := hex4(s, i+3); ok && i+2 < len(s) && s[i+1] == '\\' && s[i+2] == 'u' {
					if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
						r = d
						i += 6
					} else {
						r = utf8.RuneError
					}
				} else {
					r = utf8.RuneError
				}
			}
			dst = utf8.AppendRune(dst, r)
		default:
			return dst, false
		}
	}
	return dst, true
}

func hex4(s []byte, i int) (rune, bool) {
	if i < 0 || i+4 > len(s) {
		return 0, false
	}
	var r rune
	for _, c := range s[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// isNumber reports whether b is a JSON number.
func isNumber(b []byte) bool {
	i := 0
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		s := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == s {
			return false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		s := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == s {
			return false
		}
	}
	return i == len(b)
}

// parseFloat parses a JSON number without allocating.
func parseFloat(b []byte) (float64, bool) {
	if !isNumber(b) {
		return 0, false
	}
	x, err := strconv.ParseFloat(unsafe.String(unsafe.SliceData(b), len(b)), 64)
	if err != nil {
		// Out of range: ParseFloat returns ±Inf, which is not a JSON value.
		return 0, false
	}
	return x, true
}
