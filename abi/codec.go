package abi

import (
	"encoding/binary"
	"errors"
)

// Encoded lists and map iterations (list_get, list_add_all, list_update,
// map_iter) are a sequence of length-prefixed items:
//
//	item: u32 length, then that many bytes
//
// map_iter with IterEntries yields key and value items alternately.

// ErrBadList is returned for a buffer that is not a well-formed encoded list.
var ErrBadList = errors.New("wasmstream: malformed encoded list")

// AppendItem appends one length-prefixed item to dst.
func AppendItem(dst, item []byte) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(item)))
	return append(dst, item...)
}

// NextItem splits the first item off an encoded list. It returns ok=false
// at the end of b and ErrBadList for a truncated item.
func NextItem(b []byte) (item, rest []byte, ok bool, err error) {
	if len(b) == 0 {
		return nil, nil, false, nil
	}
	if len(b) < 4 {
		return nil, nil, false, ErrBadList
	}
	n := binary.LittleEndian.Uint32(b)
	if uint64(n) > uint64(len(b)-4) {
		return nil, nil, false, ErrBadList
	}
	return b[4 : 4+n : 4+n], b[4+n:], true, nil
}

// CountItems validates an encoded list and returns its number of items.
func CountItems(b []byte) (int, error) {
	n := 0
	for {
		_, rest, ok, err := NextItem(b)
		if err != nil {
			return 0, err
		}
		if !ok {
			return n, nil
		}
		n++
		b = rest
	}
}

// OpenInfo is what ws_open hands the plugin: the job's plugin config, the
// names of the extracted fields in slot order, and where the instance runs.
//
// Encoding: an encoded list (see AppendItem) of
//
//	"job", job name, "worker", decimal index, "parallelism", decimal count,
//	"fields", decimal n, n field names,
//	"config", decimal n, n × (key, value)
type OpenInfo struct {
	Job         string
	Worker      int
	Parallelism int
	Fields      []string
	Config      map[string]string
}

// ErrBadOpenInfo is returned by DecodeOpenInfo for a malformed payload.
var ErrBadOpenInfo = errors.New("wasmstream: malformed open info")

// Append encodes o onto dst. Config entries are written in sorted key order
// so the encoding is deterministic.
func (o *OpenInfo) Append(dst []byte) []byte {
	dst = AppendItem(dst, []byte("job"))
	dst = AppendItem(dst, []byte(o.Job))
	dst = AppendItem(dst, []byte("worker"))
	dst = AppendItem(dst, itoa(o.Worker))
	dst = AppendItem(dst, []byte("parallelism"))
	dst = AppendItem(dst, itoa(o.Parallelism))
	dst = AppendItem(dst, []byte("fields"))
	dst = AppendItem(dst, itoa(len(o.Fields)))
	for _, f := range o.Fields {
		dst = AppendItem(dst, []byte(f))
	}
	keys := make([]string, 0, len(o.Config))
	for k := range o.Config {
		keys = append(keys, k)
	}
	sortStrings(keys)
	dst = AppendItem(dst, []byte("config"))
	dst = AppendItem(dst, itoa(len(keys)))
	for _, k := range keys {
		dst = AppendItem(dst, []byte(k))
		dst = AppendItem(dst, []byte(o.Config[k]))
	}
	return dst
}

// DecodeOpenInfo parses an encoded OpenInfo.
func DecodeOpenInfo(b []byte) (OpenInfo, error) {
	var o OpenInfo
	next := func() (string, bool) {
		item, rest, ok, err := NextItem(b)
		if err != nil || !ok {
			return "", false
		}
		b = rest
		return string(item), true
	}
	num := func() (int, bool) {
		s, ok := next()
		if !ok {
			return 0, false
		}
		return atoi(s)
	}
	for len(b) > 0 {
		tag, ok := next()
		if !ok {
			return OpenInfo{}, ErrBadOpenInfo
		}
		switch tag {
		case "job":
			if o.Job, ok = next(); !ok {
				return OpenInfo{}, ErrBadOpenInfo
			}
		case "worker":
			if o.Worker, ok = num(); !ok {
				return OpenInfo{}, ErrBadOpenInfo
			}
		case "parallelism":
			if o.Parallelism, ok = num(); !ok {
				return OpenInfo{}, ErrBadOpenInfo
			}
		case "fields":
			n, ok := num()
			if !ok || n > MaxFields {
				return OpenInfo{}, ErrBadOpenInfo
			}
			o.Fields = make([]string, 0, n)
			for i := 0; i < n; i++ {
				f, ok := next()
				if !ok {
					return OpenInfo{}, ErrBadOpenInfo
				}
				o.Fields = append(o.Fields, f)
			}
		case "config":
			n, ok := num()
			if !ok || n > len(b) {
				return OpenInfo{}, ErrBadOpenInfo
			}
			o.Config = make(map[string]string, n)
			for i := 0; i < n; i++ {
				k, ok1 := next()
				v, ok2 := next()
				if !ok1 || !ok2 {
					return OpenInfo{}, ErrBadOpenInfo
				}
				o.Config[k] = v
			}
		default:
			// Unknown tags are skipped with their single value, so a newer
			// host can add information an older SDK ignores.
			if _, ok := next(); !ok {
				return OpenInfo{}, ErrBadOpenInfo
			}
		}
	}
	return o, nil
}

func itoa(n int) []byte {
	if n == 0 {
		return []byte("0")
	}
	neg := n < 0
	if neg {
		n = -n
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	if neg {
		i--
		b[i] = '-'
	}
	return append([]byte(nil), b[i:]...)
}

func atoi(s string) (int, bool) {
	if s == "" || len(s) > 9 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}
