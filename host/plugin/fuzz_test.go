package plugin

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"
)

func FuzzParseContract(f *testing.F) {
	f.Add([]byte(minimalContract))
	f.Add([]byte(`{"abi":1,"name":"x","states":[{"name":"s","kind":"map","ttl":{"ms":5,"update":"on_read_and_write"}}],"outputs":["late"],"fields":[{"name":"u","path":"user.id"}]}`))
	f.Add([]byte(`{"abi":2}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := parseContract(b)
		if err != nil {
			return
		}
		// A valid contract survives its own JSON encoding.
		j := c.AppendJSON(nil)
		c2, err := parseContract(j)
		if err != nil {
			t.Fatalf("re-parsing %s: %v", j, err)
		}
		if j2 := c2.AppendJSON(nil); !bytes.Equal(j, j2) {
			t.Fatalf("round trip\n%s\n%s", j, j2)
		}
	})
}

// FuzzGuestSpan checks the decoding of guest pointer/length pairs against
// wazero's own bounds check and the error a host function aborts with.
func FuzzGuestSpan(f *testing.F) {
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	defer rt.Close(ctx)
	mod, err := rt.Instantiate(ctx, (&wModule{}).encode())
	if err != nil {
		f.Fatal(err)
	}
	mem := mod.Memory()
	in := &instance{mem: mem}
	f.Add(uint64(0), uint64(0))
	f.Add(uint64(65535), uint64(1))
	f.Add(uint64(65535), uint64(2))
	f.Add(uint64(0x7fff0000), uint64(12))
	f.Add(uint64(10), uint64(0xffffffff))
	f.Add(uint64(0xffffffff_00000010), uint64(0xffffffff_00000004))
	f.Fuzz(func(t *testing.T, ptr, n uint64) {
		off, l, neg, ok := guestSpan(ptr, n, mem.Size())
		if neg != (int32(uint32(n)) < 0) {
			t.Fatalf("neg %v for %#x", neg, n)
		}
		_, wok := mem.Read(uint32(ptr), uint32(n))
		if !neg && ok != wok {
			t.Fatalf("span(%#x, %#x) ok=%v, wazero says %v", ptr, n, ok, wok)
		}
		if ok && (uint64(off)+uint64(l) > uint64(mem.Size()) || off != uint32(ptr) || l != uint32(n)) {
			t.Fatalf("span(%#x, %#x) = %d, %d", ptr, n, off, l)
		}
		got, msg := func() (b []byte, msg string) {
			defer func() {
				if r := recover(); r != nil {
					msg = r.(error).Error()
				}
			}()
			return in.bytes("value_set", "value", ptr, n), ""
		}()
		switch {
		case ok && (msg != "" || len(got) != int(l)):
			t.Fatalf("bytes(%#x, %#x): %d bytes, %q", ptr, n, len(got), msg)
		case !ok && neg && !strings.HasPrefix(msg, "value_set: value length -"):
			t.Fatalf("bytes(%#x, %#x): %q", ptr, n, msg)
		case !ok && !neg && !strings.Contains(msg, "outside guest memory (65536 bytes)"):
			t.Fatalf("bytes(%#x, %#x): %q", ptr, n, msg)
		}
	})
}
