package plugin

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/wasmstream/wasmstream/abi"
)

func TestRawModuleLoads(t *testing.T) {
	p, err := loadRaw(t, rawModule(minimalContract, nil), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if c := p.Contract(); c.Name != "raw" || c.ABI != 1 {
		t.Fatalf("contract %+v", c)
	}
	if len(p.Hash()) != 64 {
		t.Fatalf("hash %q", p.Hash())
	}
	var names []string
	for _, e := range p.Exports() {
		names = append(names, e.String())
	}
	want := "ws_buffer (i32) -> i32,ws_close () -> i32,ws_describe () -> i64,ws_open (i32, i32) -> i32,ws_process (i32, i32) -> i32"
	if got := strings.Join(names, ","); got != want {
		t.Fatalf("exports\n got %s\nwant %s", got, want)
	}
	h := open(t, p, nil)
	h.mustRun(events("k", "x")...)
	if err := h.f.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := h.run(events("k", "x")...); !errors.Is(err, errNotOpen) {
		t.Fatalf("after Close: %v", err)
	}
}

func TestValidationErrors(t *testing.T) {
	base := rawModule(minimalContract, nil)
	cases := []struct {
		name string
		m    *wModule
		want []string
	}{
		{"missing ws_process", base.without(abi.ExportProcess),
			[]string{"does not export ws_process (i32, i32) -> i32"}},
		{"missing memory", func() *wModule { m := *base; m.noMem = true; m.data = nil; return &m }(),
			[]string{`does not export its linear memory as "memory"`}},
		{"wrong export signature", base.with(wFunc{abi.ExportClose, nil, nil, nil}),
			[]string{"exports ws_close () -> (), want () -> i32"}},
		{"wrong optional export", base.with(wFunc{abi.ExportOnTimer, []byte{tI32}, []byte{tI32}, i32Const(0)}),
			[]string{"exports ws_on_timer (i32) -> i32, want (i32, i32) -> i32"}},
		{"command module", base.without(abi.ExportOpen).with(wFunc{"_start", nil, nil, nil}),
			[]string{"does not export ws_open", "build it as a reactor"}},
		{"made-up module", base.importing(wImport{"env", "frobnicate", []byte{tI32}, []byte{tI32}}),
			[]string{`import "env"."frobnicate" (i32) -> i32: module "env" is not provided by this host; plugins may import only from "wasmstream", "extism:host/env" and "wasi_snapshot_preview1"`}},
		{"wrong timer signature", base.importing(wImport{"wasmstream", "timer_register", []byte{tI32, tI64}, nil}).
			with(wFunc{abi.ExportOnTimer, []byte{tI32, tI32}, []byte{tI32}, i32Const(0)}),
			[]string{`import "wasmstream"."timer_register" (i32, i64) -> (): wrong signature, this host provides "wasmstream"."timer_register" (i32, i32, i64, i64, i32, i32) -> i64`}},
		{"timers without ws_on_timer", base.importing(wImport{"wasmstream", "timer_register", []byte{tI32, tI32, tI64, tI64, tI32, tI32}, []byte{tI64}}),
			[]string{`imports timer_register but does not export ws_on_timer (i32, i32) -> i32: a plugin that registers timers must export ws_on_timer to receive them when they fire`}},
		{"unknown wasmstream function", base.importing(wImport{"wasmstream", "value_frob", nil, nil}),
			[]string{`module "wasmstream" has no function "value_frob"; it provides emit, fail, list_add`}},
		{"wrong host signature", base.importing(wImport{"wasmstream", "value_get", []byte{tI32}, nil}),
			[]string{`import "wasmstream"."value_get" (i32) -> (): wrong signature, this host provides "wasmstream"."value_get" (i32, i32, i32, i32) -> i32`}},
		{"wrong extism signature", base.importing(wImport{"extism:host/env", "load_u8", []byte{tI64}, []byte{tI64}}),
			[]string{`wrong signature, this host provides "extism:host/env"."load_u8" (i64) -> i32`}},
		{"wasi socket", base.importing(wImport{"wasi_snapshot_preview1", "sock_accept", []byte{tI32, tI32, tI32}, []byte{tI32}}),
			[]string{`"sock_accept" (i32, i32, i32) -> i32: WASI sockets are not available to plugins`}},
		{"wasi unlink", base.importing(wImport{"wasi_snapshot_preview1", "path_unlink_file", []byte{tI32, tI32, tI32}, []byte{tI32}}),
			[]string{`WASI function "path_unlink_file" is not available to plugins; allowed are args_get`}},
		{"two problems", base.without(abi.ExportBuffer).importing(wImport{"env", "f", nil, nil}),
			[]string{"2 problems:", `"env"."f"`, "does not export ws_buffer"}},
		{"abi version", rawModule(`{"abi":2,"name":"raw"}`, nil),
			[]string{"abi version 2 is not supported by this host (supports 1)"}},
		{"not json", rawModule(`{"abi":1,`, nil),
			[]string{"not a JSON contract"}},
		{"bad contract", rawModule(`{"abi":1,"name":"raw","states":[{"name":"a","kind":"tree"}]}`, nil),
			[]string{`states[0] "a": kind "tree", want value, list or map`}},
		{"contract outside memory", base.with(wFunc{abi.ExportDescribe, nil, []byte{tI64}, i64Const(0x20000<<32 | 10)}),
			[]string{"ws_describe returned pointer 0x20000 length 10 outside guest memory (65536 bytes)"}},
		{"contract too long", base.with(wFunc{abi.ExportDescribe, nil, []byte{tI64}, i64Const(2 << 20)}),
			[]string{"ws_describe returned a 2097152-byte contract, at most 1048576 allowed"}},
		{"describe traps", base.with(wFunc{abi.ExportDescribe, nil, []byte{tI64}, []byte{0x00}}),
			[]string{"ws_describe trapped", "unreachable"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadRaw(t, tc.m, Options{})
			if err == nil {
				t.Fatal("loaded")
			}
			if !errors.Is(err, ErrInvalidPlugin) {
				t.Errorf("error does not wrap ErrInvalidPlugin: %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error\n%v\ndoes not contain\n%s", err, w)
				}
			}
		})
	}
}

func TestGuestImportsAllowed(t *testing.T) {
	// Every WASI function this host allows exists in wazero's WASI module.
	defs, err := wasiDefinitions()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range AllowedWASI() {
		if _, ok := defs[n]; !ok {
			t.Errorf("allowed WASI function %s is not provided by wazero", n)
		}
	}
	// The Go test guests import only what the host provides.
	p := shared(t, "ops")
	var wasi []string
	for _, f := range p.Imports() {
		if f.Module == abi.WASIModule {
			wasi = append(wasi, f.Name)
		}
	}
	if len(wasi) == 0 {
		t.Fatal("ops guest imports no WASI functions")
	}
	t.Logf("WASI imports of a Go guest: %s", strings.Join(wasi, ", "))
}

func TestUnreachableTrap(t *testing.T) {
	p, err := loadRaw(t, rawModule(minimalContract, []byte{0x00}), Options{})
	if err != nil {
		t.Fatal(err)
	}
	h := open(t, p, nil)
	evs := events("k", "a", "b")
	_, err = h.run(evs...)
	var ce *CallError
	if !errors.As(err, &ce) || ce.Err == nil {
		t.Fatalf("want a trap, got %v", err)
	}
	for _, w := range []string{`plugin "raw": ws_process trapped`, "unreachable"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not contain %q", err, w)
		}
	}
	if !ce.InBatch || ce.FirstSeq != evs[0].Seq || ce.LastSeq != evs[1].Seq || ce.HasSeq {
		t.Errorf("seqs: %+v", ce)
	}
	if _, err2 := h.run(events("k", "c")...); err2 != err {
		t.Errorf("dead instance returned %v, want the trap", err2)
	}
	// Other plugins keep working.
	ok, err := loadRaw(t, rawModule(minimalContract, nil), Options{})
	if err != nil {
		t.Fatal(err)
	}
	open(t, ok, nil).mustRun(events("k", "x")...)
}

func TestBadBufferPointer(t *testing.T) {
	m := rawModule(minimalContract, nil).with(wFunc{abi.ExportBuffer, []byte{tI32}, []byte{tI32}, i32Const(65000)})
	p, err := loadRaw(t, m, Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = tryOpen(t, p, nil)
	if err == nil || !strings.Contains(err.Error(), "ws_buffer trapped: returned pointer 0xfde8 for 4096 bytes outside guest memory (65536 bytes)") {
		t.Fatalf("Open: %v", err)
	}
}
