package jsonscan

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"

	"github.com/wasmstream/wasmstream/abi"
)

// MaxDepth is the deepest nesting of objects and arrays Scan accepts, the
// same limit encoding/json applies.
const MaxDepth = 10000

// SyntaxError describes malformed JSON: the byte offset where scanning
// stopped and a short reason.
type SyntaxError struct {
	Offset int
	Reason string
}

func (e *SyntaxError) Error() string {
	return "invalid JSON at byte " + strconv.Itoa(e.Offset) + ": " + e.Reason
}

// node is one segment of the compiled path tree.
type node struct {
	name     string
	slots    []int   // slots filled by the value at this path
	below    []int   // slots at this path and every path under it
	children []*node // longer paths through this object
}

type span struct {
	start, end int32
	scratch    bool
}

// Scanner extracts compiled paths from JSON documents. Its zero value is not
// usable: call Compile.
type Scanner struct {
	root    node
	paths   []string
	scratch []byte
	keybuf  []byte
	spans   []span
	out     []abi.Field
	data    []byte
	err     SyntaxError
}

// Compile returns a Scanner for paths; slot i of Scan's output holds
// paths[i]. A path is a dot-separated list of object keys; the same path may
// appear more than once (each occurrence gets its own slot).
func Compile(paths []string) (*Scanner, error) {
	s := &Scanner{paths: append([]string(nil), paths...), spans: make([]span, len(paths))}
	for slot, p := range paths {
		if p == "" {
			return nil, fmt.Errorf("jsonscan: path %d is empty: name a JSON key, e.g. \"user_no\" or \"user.id\"", slot)
		}
		n := &s.root
		for seg := range strings.SplitSeq(p, ".") {
			if seg == "" {
				return nil, fmt.Errorf("jsonscan: path %q has an empty segment: separate keys with single dots, e.g. \"user.id\"", p)
			}
			var next *node
			for _, c := range n.children {
				if c.name == seg {
					next = c
					break
				}
			}
			if next == nil {
				next = &node{name: seg}
				n.children = append(n.children, next)
			}
			n = next
		}
		n.slots = append(n.slots, slot)
	}
	var fillBelow func(n *node) []int
	fillBelow = func(n *node) []int {
		all := append([]int(nil), n.slots...)
		for _, c := range n.children {
			all = append(all, fillBelow(c)...)
		}
		n.below = all
		return all
	}
	fillBelow(&s.root)
	return s, nil
}

// NumSlots returns the number of compiled paths.
func (s *Scanner) NumSlots() int { return len(s.paths) }

// Paths returns the compiled paths in slot order.
func (s *Scanner) Paths() []string { return s.paths }

// Scan validates data as one JSON value and fills out[i] with paths[i]'s
// value, FieldAbsent when the path is not present. out must have at least
// NumSlots entries. String and raw slots are views into data, or into the
// scanner's scratch buffer for strings with escapes; both stay valid until
// the next Scan. A returned *SyntaxError is owned by the scanner and also
// valid until the next Scan; out is then partially filled.
func (s *Scanner) Scan(data []byte, out []abi.Field) error {
	n := len(s.paths)
	if len(out) < n {
		panic("jsonscan: Scan output has fewer entries than compiled paths")
	}
	clear(out[:n])
	clear(s.spans)
	s.out = out[:n]
	s.data = data
	// Unescaped strings are never longer than their source, so a scratch
	// buffer as long as the input never reallocates during one Scan and
	// earlier views into it stay valid.
	if cap(s.scratch) < len(data) {
		s.scratch = make([]byte, 0, len(data)+len(data)/2)
	}
	s.scratch = s.scratch[:0]
	i := s.ws(0)
	if i >= len(data) {
		return s.fail(i, "empty input: expected a JSON value")
	}
	var root *node
	if len(s.root.children) > 0 {
		root = &s.root
	}
	i, err := s.value(i, root, 0)
	if err != nil {
		return err
	}
	if i = s.ws(i); i != len(data) {
		return s.fail(i, "unexpected data after the JSON value")
	}
	return nil
}

// Literal returns the JSON text of slot's value after the last successful
// Scan: a number's literal, a string's contents without quotes (escapes
// undone only if it had any), an object's or array's text. It returns nil
// for an absent slot.
func (s *Scanner) Literal(slot int) []byte {
	sp := s.spans[slot]
	if sp.scratch {
		return s.out[slot].Str
	}
	if sp.end == 0 {
		return nil
	}
	return s.data[sp.start:sp.end:sp.end]
}

// Span reports where slot's string, number or raw value lies in the last
// scanned input: data[start:end], or inScratch when the value is an
// unescaped string held in the scratch buffer. ok is false for absent,
// null and bool slots.
func (s *Scanner) Span(slot int) (start, end int, inScratch, ok bool) {
	sp := s.spans[slot]
	if sp.scratch {
		return 0, 0, true, true
	}
	if sp.end == 0 {
		return 0, 0, false, false
	}
	return int(sp.start), int(sp.end), false, true
}

// Key returns slot's value as key bytes after the last successful Scan: a
// string's unescaped bytes or a number's literal text. For any other kind it
// returns nil and a short description of the problem ("is missing",
// "is null", ...), suitable after the field name in a message.
func (s *Scanner) Key(slot int) (key []byte, problem string) {
	f := s.out[slot]
	switch f.Kind {
	case abi.FieldString:
		return f.Str, ""
	case abi.FieldInt, abi.FieldFloat:
		return s.Literal(slot), ""
	case abi.FieldAbsent:
		return nil, "is missing"
	case abi.FieldNull:
		return nil, "is null"
	case abi.FieldBool:
		return nil, "is a bool, not a string or number"
	default:
		return nil, "is an object or array, not a string or number"
	}
}

func (s *Scanner) fail(off int, reason string) error {
	s.err = SyntaxError{Offset: off, Reason: reason}
	return &s.err
}

func (s *Scanner) ws(i int) int {
	d := s.data
	for i < len(d) {
		switch d[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// value parses the value at i. n, when not nil, is the path node whose
// children apply if the value is an object.
func (s *Scanner) value(i int, n *node, depth int) (int, error) {
	d := s.data
	if i >= len(d) {
		return i, s.fail(i, "unexpected end of input: expected a value")
	}
	switch c := d[i]; {
	case c == '{':
		return s.object(i, n, depth+1)
	case c == '[':
		return s.array(i, depth+1)
	case c == '"':
		j, _, _, err := s.str(i)
		return j, err
	case c == 't':
		return s.lit(i, "true")
	case c == 'f':
		return s.lit(i, "false")
	case c == 'n':
		return s.lit(i, "null")
	case c == '-' || c >= '0' && c <= '9':
		j, _, err := s.number(i)
		return j, err
	}
	return i, s.fail(i, "unexpected character "+quoteByte(d[i])+": expected a value")
}

func quoteByte(c byte) string {
	if c >= 0x20 && c < 0x7f {
		return "'" + string(rune(c)) + "'"
	}
	return "0x" + strconv.FormatUint(uint64(c), 16)
}

func (s *Scanner) lit(i int, word string) (int, error) {
	if len(s.data)-i < len(word) || string(s.data[i:i+len(word)]) != word {
		return i, s.fail(i, "invalid literal: expected "+word)
	}
	return i + len(word), nil
}

func (s *Scanner) object(i int, n *node, depth int) (int, error) {
	if depth > MaxDepth {
		return i, s.fail(i, "nested too deeply")
	}
	d := s.data
	i = s.ws(i + 1)
	if i < len(d) && d[i] == '}' {
		return i + 1, nil
	}
	for {
		if i >= len(d) {
			return i, s.fail(i, "unexpected end of input in object: expected a key")
		}
		if d[i] != '"' {
			return i, s.fail(i, "unexpected character "+quoteByte(d[i])+" in object: expected a quoted key")
		}
		kstart := i
		j, esc, nonASCII, err := s.str(i)
		if err != nil {
			return j, err
		}
		var child *node
		if n != nil {
			child = s.match(n, kstart, j, esc || nonASCII)
		}
		i = s.ws(j)
		if i >= len(d) || d[i] != ':' {
			return i, s.fail(i, "expected ':' after object key")
		}
		i = s.ws(i + 1)
		if child != nil {
			i, err = s.fill(i, child, depth)
		} else {
			i, err = s.value(i, nil, depth)
		}
		if err != nil {
			return i, err
		}
		i = s.ws(i)
		if i >= len(d) {
			return i, s.fail(i, "unexpected end of input in object: expected ',' or '}'")
		}
		switch d[i] {
		case ',':
			i = s.ws(i + 1)
		case '}':
			return i + 1, nil
		default:
			return i, s.fail(i, "unexpected character "+quoteByte(d[i])+" in object: expected ',' or '}'")
		}
	}
}

func (s *Scanner) array(i int, depth int) (int, error) {
	if depth > MaxDepth {
		return i, s.fail(i, "nested too deeply")
	}
	d := s.data
	i = s.ws(i + 1)
	if i < len(d) && d[i] == ']' {
		return i + 1, nil
	}
	for {
		var err error
		if i, err = s.value(i, nil, depth); err != nil {
			return i, err
		}
		i = s.ws(i)
		if i >= len(d) {
			return i, s.fail(i, "unexpected end of input in array: expected ',' or ']'")
		}
		switch d[i] {
		case ',':
			i = s.ws(i + 1)
		case ']':
			return i + 1, nil
		default:
			return i, s.fail(i, "unexpected character "+quoteByte(d[i])+" in array: expected ',' or ']'")
		}
	}
}

// match returns the child of n named by the key string d[start:end]
// (quotes included), or nil.
func (s *Scanner) match(n *node, start, end int, slow bool) *node {
	key := s.data[start+1 : end-1]
	if slow {
		s.keybuf = unquote(s.keybuf[:0], key)
		key = s.keybuf
	}
	for _, c := range n.children {
		if c.name == string(key) {
			return c
		}
	}
	return nil
}

// fill parses the value at i into the slots of path node c, after clearing
// every slot at or below c: a repeated key replaces the earlier value
// entirely, as encoding/json does.
func (s *Scanner) fill(i int, c *node, depth int) (int, error) {
	for _, sl := range c.below {
		s.out[sl] = abi.Field{}
		s.spans[sl] = span{}
	}
	d := s.data
	if i >= len(d) {
		return i, s.fail(i, "unexpected end of input: expected a value")
	}
	start := i
	var f abi.Field
	sp := span{start: int32(start)}
	var err error
	switch ch := d[i]; {
	case ch == '{':
		var sub *node
		if len(c.children) > 0 {
			sub = c
		}
		if i, err = s.object(i, sub, depth+1); err != nil {
			return i, err
		}
		f = abi.Field{Kind: abi.FieldRaw, Str: d[start:i:i]}
	case ch == '[':
		if i, err = s.array(i, depth+1); err != nil {
			return i, err
		}
		f = abi.Field{Kind: abi.FieldRaw, Str: d[start:i:i]}
	case ch == '"':
		var esc, nonASCII bool
		if i, esc, nonASCII, err = s.str(i); err != nil {
			return i, err
		}
		body := d[start+1 : i-1 : i-1]
		if esc || nonASCII && !utf8.Valid(body) {
			n := len(s.scratch)
			s.scratch = unquote(s.scratch, body)
			f = abi.Field{Kind: abi.FieldString, Str: s.scratch[n:len(s.scratch):len(s.scratch)]}
			sp = span{scratch: true}
		} else {
			f = abi.Field{Kind: abi.FieldString, Str: body}
			sp = span{start: int32(start + 1), end: int32(i - 1)}
		}
	case ch == 't':
		if i, err = s.lit(i, "true"); err != nil {
			return i, err
		}
		f = abi.Field{Kind: abi.FieldBool, Bits: 1}
		sp = span{}
	case ch == 'f':
		if i, err = s.lit(i, "false"); err != nil {
			return i, err
		}
		f = abi.Field{Kind: abi.FieldBool}
		sp = span{}
	case ch == 'n':
		if i, err = s.lit(i, "null"); err != nil {
			return i, err
		}
		f = abi.Field{Kind: abi.FieldNull}
		sp = span{}
	case ch == '-' || ch >= '0' && ch <= '9':
		var isInt bool
		if i, isInt, err = s.number(i); err != nil {
			return i, err
		}
		f, err = s.numField(start, i, isInt)
		if err != nil {
			return i, err
		}
	default:
		return i, s.fail(i, "unexpected character "+quoteByte(ch)+": expected a value")
	}
	if sp.end == 0 && !sp.scratch && f.Kind >= abi.FieldInt {
		sp.end = int32(i)
	}
	for _, sl := range c.slots {
		s.out[sl] = f
		s.spans[sl] = sp
	}
	return i, nil
}

func (s *Scanner) numField(start, end int, isInt bool) (abi.Field, error) {
	lit := s.data[start:end]
	if isInt {
		if v, ok := parseInt(lit); ok {
			return abi.Field{Kind: abi.FieldInt, Bits: uint64(v)}, nil
		}
	}
	v, err := strconv.ParseFloat(unsafe.String(&lit[0], len(lit)), 64)
	if err != nil {
		if errors.Is(err, strconv.ErrRange) {
			return abi.Field{}, s.fail(start, "number out of the float64 range")
		}
		return abi.Field{}, s.fail(start, "invalid number")
	}
	return abi.Field{Kind: abi.FieldFloat, Bits: math.Float64bits(v)}, nil
}

// parseInt parses a validated JSON integer literal; ok is false when it does
// not fit int64.
func parseInt(b []byte) (int64, bool) {
	neg := b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) > 19 {
		return 0, false
	}
	var u uint64
	for _, c := range b {
		u = u*10 + uint64(c-'0')
	}
	if neg {
		if u > 1<<63 {
			return 0, false
		}
		return -int64(u), true
	}
	if u > 1<<63-1 {
		return 0, false
	}
	return int64(u), true
}

// number validates the number at i and reports whether it is an integer
// literal (no fraction or exponent).
func (s *Scanner) number(i int) (int, bool, error) {
	d := s.data
	start := i
	if d[i] == '-' {
		i++
	}
	if i >= len(d) {
		return i, false, s.fail(i, "unexpected end of input in number")
	}
	switch {
	case d[i] == '0':
		i++
	case d[i] >= '1' && d[i] <= '9':
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
	default:
		return i, false, s.fail(start, "invalid number: expected a digit")
	}
	isInt := true
	if i < len(d) && d[i] == '.' {
		isInt = false
		i++
		if i >= len(d) || d[i] < '0' || d[i] > '9' {
			return i, false, s.fail(start, "invalid number: expected a digit after '.'")
		}
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		isInt = false
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		if i >= len(d) || d[i] < '0' || d[i] > '9' {
			return i, false, s.fail(start, "invalid number: expected a digit in the exponent")
		}
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
	}
	return i, isInt, nil
}

// str validates the string starting at the quote at i and returns the index
// after its closing quote, whether it has escapes, and whether it has bytes
// outside ASCII.
func (s *Scanner) str(i int) (end int, esc, nonASCII bool, err error) {
	d := s.data
	start := i
	i++
	for i < len(d) {
		c := d[i]
		switch {
		case c == '"':
			return i + 1, esc, nonASCII, nil
		case c == '\\':
			esc = true
			i++
			if i >= len(d) {
				return i, esc, nonASCII, s.fail(start, "unterminated string")
			}
			switch d[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i++
			case 'u':
				if len(d)-i < 5 || hex4(d[i+1:i+5]) < 0 {
					return i, esc, nonASCII, s.fail(i-1, "invalid \\u escape in string: expected 4 hex digits")
				}
				i += 5
			default:
				return i, esc, nonASCII, s.fail(i-1, "invalid escape "+quoteByte(d[i])+" in string")
			}
		case c < 0x20:
			return i, esc, nonASCII, s.fail(i, "control character in string: escape it")
		case c >= 0x80:
			nonASCII = true
			i++
		default:
			i++
		}
	}
	return i, esc, nonASCII, s.fail(start, "unterminated string")
}

func hex4(b []byte) rune {
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r<<4 | rune(c)
	}
	return r
}

// unquote appends the unescaped contents of a validated JSON string body to
// dst, replacing invalid UTF-8 and unpaired surrogates with U+FFFD exactly
// as encoding/json does.
func unquote(dst, b []byte) []byte {
	for i := 0; i < len(b); {
		c := b[i]
		switch {
		case c == '\\':
			switch b[i+1] {
			case '"', '\\', '/':
				dst = append(dst, b[i+1])
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
				r := hex4(b[i+2:])
				i += 6
				if utf16.IsSurrogate(r) {
					if len(b)-i >= 6 && b[i] == '\\' && b[i+1] == 'u' {
						if r2 := hex4(b[i+2:]); r2 >= 0 {
							if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
								dst = utf8.AppendRune(dst, dec)
								i += 6
								continue
							}
						}
					}
					r = utf8.RuneError
				}
				dst = utf8.AppendRune(dst, r)
				continue
			}
			i += 2
		case c < utf8.RuneSelf:
			dst = append(dst, c)
			i++
		default:
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size == 1 {
				dst = utf8.AppendRune(dst, utf8.RuneError)
			} else {
				dst = append(dst, b[i:i+size]...)
			}
			i += size
		}
	}
	return dst
}
