package abi

import (
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// Contract is what a plugin declares about itself through ws_describe: the
// ABI version it speaks, its states, side outputs and the event fields it
// wants the host to extract. It travels as JSON (see ABI.md); the host checks
// it at load and, once checkpoints exist, against the checkpoint it restores.
type Contract struct {
	ABI     int         `json:"abi"`
	Name    string      `json:"name"`
	States  []StateDesc `json:"states"`
	Outputs []string    `json:"outputs"`
	Fields  []FieldDesc `json:"fields"`
}

// StateKind is the kind of a keyed state.
type StateKind string

const (
	KindValue StateKind = "value"
	KindList  StateKind = "list"
	KindMap   StateKind = "map"
)

// StateDesc describes one keyed state. Its id is its index in
// Contract.States.
type StateDesc struct {
	Name string    `json:"name"`
	Kind StateKind `json:"kind"`
	TTL  *TTL      `json:"ttl,omitempty"`
}

// TTL is a state's time-to-live, as in Flink's StateTtlConfig.
type TTL struct {
	Millis     int64  `json:"ms"`
	Update     string `json:"update,omitempty"`     // TTLOnCreateAndWrite (default) | TTLOnReadAndWrite
	Visibility string `json:"visibility,omitempty"` // TTLNeverReturnExpired (default) | TTLReturnExpiredIfNotCleanedUp
	Domain     string `json:"domain,omitempty"`     // TimeProcessing (default) | TimeEvent
}

// TTL option values.
const (
	TTLOnCreateAndWrite            = "on_create_and_write"
	TTLOnReadAndWrite              = "on_read_and_write"
	TTLNeverReturnExpired          = "never_return_expired"
	TTLReturnExpiredIfNotCleanedUp = "return_expired_if_not_cleaned_up"
	TimeProcessing                 = "processing"
	TimeEvent                      = "event"
)

// FieldDesc names an event field the host extracts from each JSON event and
// delivers in the batch, in slot order. Path is a dotted JSON path
// ("user.id"); empty means the same as Name. A job config may override Path.
type FieldDesc struct {
	Name string `json:"name"`
	Path string `json:"path,omitempty"`
}

// ErrBadContract is wrapped by every contract validation error.
var ErrBadContract = errors.New("wasmstream: invalid plugin contract")

// SupportedABI reports whether this package's host side speaks version v.
func SupportedABI(v int) bool { return v == Version }

// Validate checks the contract's limits and names and returns an error that
// names the offending entry.
func (c *Contract) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBadContract, fmt.Sprintf(format, args...))
	}
	if !SupportedABI(c.ABI) {
		return bad("abi version %d is not supported by this host (supports %d): rebuild the plugin with a matching SDK", c.ABI, Version)
	}
	if err := checkName(c.Name); err != nil {
		return bad("name: %v", err)
	}
	if len(c.States) > MaxStates {
		return bad("%d states, at most %d allowed", len(c.States), MaxStates)
	}
	if len(c.Outputs) > MaxOutputs {
		return bad("%d side outputs, at most %d allowed", len(c.Outputs), MaxOutputs)
	}
	if len(c.Fields) > MaxFields {
		return bad("%d fields, at most %d allowed", len(c.Fields), MaxFields)
	}
	seen := map[string]bool{}
	for i, s := range c.States {
		if err := checkName(s.Name); err != nil {
			return bad("states[%d].name: %v", i, err)
		}
		if seen[s.Name] {
			return bad("states[%d]: duplicate state name %q", i, s.Name)
		}
		seen[s.Name] = true
		switch s.Kind {
		case KindValue, KindList, KindMap:
		default:
			return bad("states[%d] %q: kind %q, want value, list or map", i, s.Name, s.Kind)
		}
		if t := s.TTL; t != nil {
			if t.Millis <= 0 {
				return bad("states[%d] %q: ttl.ms must be positive, got %d", i, s.Name, t.Millis)
			}
			switch t.Update {
			case "", TTLOnCreateAndWrite, TTLOnReadAndWrite:
			default:
				return bad("states[%d] %q: ttl.update %q, want %s or %s", i, s.Name, t.Update, TTLOnCreateAndWrite, TTLOnReadAndWrite)
			}
			switch t.Visibility {
			case "", TTLNeverReturnExpired, TTLReturnExpiredIfNotCleanedUp:
			default:
				return bad("states[%d] %q: ttl.visibility %q, want %s or %s", i, s.Name, t.Visibility, TTLNeverReturnExpired, TTLReturnExpiredIfNotCleanedUp)
			}
			switch t.Domain {
			case "", TimeProcessing, TimeEvent:
			default:
				return bad("states[%d] %q: ttl.domain %q, want %s or %s", i, s.Name, t.Domain, TimeProcessing, TimeEvent)
			}
		}
	}
	outs := map[string]bool{"main": true}
	for i, o := range c.Outputs {
		if err := checkName(o); err != nil {
			return bad("outputs[%d]: %v", i, err)
		}
		if outs[o] {
			return bad("outputs[%d]: duplicate or reserved output name %q", i, o)
		}
		outs[o] = true
	}
	fields := map[string]bool{}
	for i, f := range c.Fields {
		if err := checkName(f.Name); err != nil {
			return bad("fields[%d].name: %v", i, err)
		}
		if fields[f.Name] {
			return bad("fields[%d]: duplicate field %q", i, f.Name)
		}
		fields[f.Name] = true
		if len(f.Path) > 1024 {
			return bad("fields[%d] %q: path longer than 1024 bytes", i, f.Name)
		}
		if !utf8.ValidString(f.Path) {
			return bad("fields[%d] %q: path is not valid UTF-8", i, f.Name)
		}
	}
	return nil
}

// Output returns the port number of the named output: 0 for "main", i+1 for
// Outputs[i], or -1.
func (c *Contract) Output(name string) int {
	if name == "main" {
		return MainOutput
	}
	for i, o := range c.Outputs {
		if o == name {
			return i + 1
		}
	}
	return -1
}

// OutputName returns the name of output port p.
func (c *Contract) OutputName(p int) string {
	if p == MainOutput {
		return "main"
	}
	if p > 0 && p <= len(c.Outputs) {
		return c.Outputs[p-1]
	}
	return "#" + strconv.Itoa(p)
}

func checkName(s string) error {
	if s == "" {
		return errors.New("empty")
	}
	if len(s) > MaxNameLen {
		return fmt.Errorf("%q is longer than %d bytes", s[:16]+"…", MaxNameLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return fmt.Errorf("%q: only letters, digits, '_', '-' and '.' are allowed", s)
		}
	}
	return nil
}

// AppendJSON appends the contract as JSON, without reflection, so guest SDKs
// can describe themselves without linking encoding/json.
func (c *Contract) AppendJSON(b []byte) []byte {
	b = append(b, `{"abi":`...)
	b = strconv.AppendInt(b, int64(c.ABI), 10)
	b = append(b, `,"name":`...)
	b = appendJSONString(b, c.Name)
	b = append(b, `,"states":[`...)
	for i, s := range c.States {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"name":`...)
		b = appendJSONString(b, s.Name)
		b = append(b, `,"kind":`...)
		b = appendJSONString(b, string(s.Kind))
		if t := s.TTL; t != nil {
			b = append(b, `,"ttl":{"ms":`...)
			b = strconv.AppendInt(b, t.Millis, 10)
			for _, kv := range [3][2]string{{"update", t.Update}, {"visibility", t.Visibility}, {"domain", t.Domain}} {
				if kv[1] != "" {
					b = append(b, `,"`...)
					b = append(b, kv[0]...)
					b = append(b, `":`...)
					b = appendJSONString(b, kv[1])
				}
			}
			b = append(b, '}')
		}
		b = append(b, '}')
	}
	b = append(b, `],"outputs":[`...)
	for i, o := range c.Outputs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, o)
	}
	b = append(b, `],"fields":[`...)
	for i, f := range c.Fields {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"name":`...)
		b = appendJSONString(b, f.Name)
		if f.Path != "" {
			b = append(b, `,"path":`...)
			b = appendJSONString(b, f.Path)
		}
		b = append(b, '}')
	}
	return append(b, "]}"...)
}

// appendJSONString appends s as a JSON string: quotes, backslashes and
// control characters escaped, other bytes (including UTF-8) as they are.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20 || c == 0x7f:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}
