package plugin

import (
	"sort"

	"github.com/tetratelabs/wazero/api"

	"github.com/wasmstream/wasmstream/abi"
)

// The Extism host functions (module "extism:host/env") work on a host memory
// arena per instance: blocks allocated by the guest and addressed by nonzero
// i64 offsets. The arena is emptied at the start of every export call;
// variables (var_get/var_set) persist for the life of the instance.

// arenaBase is the offset of the arena's first byte; offsets stay nonzero
// and 8-byte aligned.
const arenaBase = 8

// maxVarBytes caps the total size of an instance's Extism variables.
const maxVarBytes = 1 << 20

type extismState struct {
	buf      []byte
	blocks   []extBlock // in offset order
	vars     map[string][]byte
	varBytes int
}

type extBlock struct {
	off, n uint64
	freed  bool
}

func (x *extismState) reset() {
	if len(x.blocks) == 0 {
		return
	}
	if cap(x.buf) > 1<<20 {
		x.buf = nil
	}
	x.buf = x.buf[:0]
	x.blocks = x.blocks[:0]
}

func (in *instance) arenaLimit() int { return in.p.opts.MemoryLimitMB << 20 }

// alloc reserves n bytes and returns their offset.
func (in *instance) alloc(fn string, n uint64) uint64 {
	x := &in.extism
	size := (max(n, 1) + 7) &^ 7
	if uint64(len(x.buf))+size > uint64(in.arenaLimit()) {
		panic(badArg(fn, "%d bytes would grow the host memory arena past its %d-byte limit", n, in.arenaLimit()))
	}
	off := arenaBase + uint64(len(x.buf))
	x.buf = append(x.buf, make([]byte, size)...)
	x.blocks = append(x.blocks, extBlock{off: off, n: n})
	return off
}

func (in *instance) allocBytes(fn string, b []byte) uint64 {
	off := in.alloc(fn, uint64(len(b)))
	copy(in.extism.buf[off-arenaBase:], b)
	return off
}

// block returns the live block starting at off.
func (x *extismState) block(off uint64) (*extBlock, bool) {
	i := sort.Search(len(x.blocks), func(i int) bool { return x.blocks[i].off >= off })
	if i < len(x.blocks) && x.blocks[i].off == off && !x.blocks[i].freed {
		return &x.blocks[i], true
	}
	return nil, false
}

// blockBytes returns the contents of the block at off, or aborts the call.
func (in *instance) blockBytes(fn string, off uint64) []byte {
	b, ok := in.extism.block(off)
	if !ok {
		panic(badArg(fn, "offset %#x is not an allocated block of the host memory arena", off))
	}
	i := b.off - arenaBase
	return in.extism.buf[i : i+b.n : i+b.n]
}

// arenaSpan checks that n bytes at off lie inside the arena.
func (in *instance) arenaSpan(fn string, off, n uint64) uint64 {
	i := off - arenaBase
	if off < arenaBase || i > uint64(len(in.extism.buf)) || n > uint64(len(in.extism.buf))-i {
		panic(badArg(fn, "offset %#x length %d outside the host memory arena (%d bytes)", off, n, len(in.extism.buf)))
	}
	return i
}

// extismFuncs lists the host functions of module "extism:host/env", with the
// signatures of the Extism PDKs (go-pdk v1.1.3).
func extismFuncs() []hostFunc {
	logFn := func(name string, level int) hostFunc {
		return hostFunc{name, sig(i64), nil, func(in *instance, s []uint64) {
			if level >= in.p.opts.LogLevel {
				in.logf(level, string(in.blockBytes(name, s[0])))
			}
		}}
	}
	return []hostFunc{
		{"alloc", sig(i64), sig(i64), func(in *instance, s []uint64) {
			s[0] = in.alloc("alloc", s[0])
		}},
		{"free", sig(i64), nil, func(in *instance, s []uint64) {
			if b, ok := in.extism.block(s[0]); ok {
				b.freed = true
			}
		}},
		{"length", sig(i64), sig(i64), func(in *instance, s []uint64) {
			if b, ok := in.extism.block(s[0]); ok {
				s[0] = b.n
			} else {
				s[0] = 0
			}
		}},
		{"length_unsafe", sig(i64), sig(i64), func(in *instance, s []uint64) {
			if b, ok := in.extism.block(s[0]); ok {
				s[0] = b.n
			} else {
				s[0] = 0
			}
		}},
		{"load_u8", sig(i64), sig(i32), func(in *instance, s []uint64) {
			s[0] = uint64(in.extism.buf[in.arenaSpan("load_u8", s[0], 1)])
		}},
		{"load_u64", sig(i64), sig(i64), func(in *instance, s []uint64) {
			i := in.arenaSpan("load_u64", s[0], 8)
			b := in.extism.buf[i : i+8]
			s[0] = uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
				uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
		}},
		{"store_u8", sig(i64, i32), nil, func(in *instance, s []uint64) {
			in.extism.buf[in.arenaSpan("store_u8", s[0], 1)] = byte(s[1])
		}},
		{"store_u64", sig(i64, i64), nil, func(in *instance, s []uint64) {
			i := in.arenaSpan("store_u64", s[0], 8)
			b, v := in.extism.buf[i:i+8], s[1]
			b[0], b[1], b[2], b[3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
			b[4], b[5], b[6], b[7] = byte(v>>32), byte(v>>40), byte(v>>48), byte(v>>56)
		}},
		{"input_length", nil, sig(i64), func(in *instance, s []uint64) {
			s[0] = 0 // wasmstream passes no Extism input
		}},
		{"input_load_u8", sig(i64), sig(i32), func(in *instance, s []uint64) {
			panic(badArg("input_load_u8", "offset %d outside the input (0 bytes)", s[0]))
		}},
		{"input_load_u64", sig(i64), sig(i64), func(in *instance, s []uint64) {
			panic(badArg("input_load_u64", "offset %d outside the input (0 bytes)", s[0]))
		}},
		{"output_set", sig(i64, i64), nil, func(in *instance, s []uint64) {
			in.arenaSpan("output_set", s[0], s[1]) // wasmstream has no use for Extism output
		}},
		{"error_set", sig(i64), nil, func(in *instance, s []uint64) {
			if s[0] == 0 {
				in.failMsg = ""
				return
			}
			in.failMsg = string(in.blockBytes("error_set", s[0]))
		}},
		{"config_get", sig(i64), sig(i64), func(in *instance, s []uint64) {
			v, ok := in.config[string(in.blockBytes("config_get", s[0]))]
			if !ok {
				s[0] = 0
				return
			}
			s[0] = in.allocBytes("config_get", []byte(v))
		}},
		{"var_get", sig(i64), sig(i64), func(in *instance, s []uint64) {
			v, ok := in.extism.vars[string(in.blockBytes("var_get", s[0]))]
			if !ok {
				s[0] = 0
				return
			}
			s[0] = in.allocBytes("var_get", v)
		}},
		{"var_set", sig(i64, i64), nil, func(in *instance, s []uint64) {
			x := &in.extism
			k := string(in.blockBytes("var_set", s[0]))
			if old, ok := x.vars[k]; ok {
				x.varBytes -= len(k) + len(old)
				delete(x.vars, k)
			}
			if s[1] == 0 {
				return
			}
			v := in.blockBytes("var_set", s[1])
			if x.varBytes+len(k)+len(v) > maxVarBytes {
				panic(badArg("var_set", "variable %q of %d bytes exceeds the %d-byte limit on an instance's variables", k, len(v), maxVarBytes))
			}
			if x.vars == nil {
				x.vars = map[string][]byte{}
			}
			x.vars[k] = append([]byte(nil), v...)
			x.varBytes += len(k) + len(v)
		}},
		logFn("log_trace", abi.LogTrace),
		logFn("log_debug", abi.LogDebug),
		logFn("log_info", abi.LogInfo),
		logFn("log_warn", abi.LogWarn),
		logFn("log_error", abi.LogError),
		{"get_log_level", nil, sig(i32), func(in *instance, s []uint64) {
			s[0] = api.EncodeI32(int32(in.p.opts.LogLevel))
		}},
		{"http_request", sig(i64, i64), sig(i64), func(in *instance, s []uint64) {
			panic(badArg("http_request", "outbound HTTP is not allowed for wasmstream plugins"))
		}},
		{"http_status_code", nil, sig(i32), func(in *instance, s []uint64) {
			s[0] = 0
		}},
		{"http_headers", nil, sig(i64), func(in *instance, s []uint64) {
			s[0] = 0
		}},
	}
}
