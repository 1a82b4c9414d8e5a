package plugin

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/wasmstream/wasmstream/abi"
	"github.com/wasmstream/wasmstream/host/process"
	"github.com/wasmstream/wasmstream/internal/wasmbuild"
	"github.com/wasmstream/wasmstream/statestore"
	"github.com/wasmstream/wasmstream/statestore/memory"
)

const testMaxParallelism = 128

var (
	pluginsMu sync.Mutex
	plugins   = map[string]*Plugin{}
)

// shared returns the plugin built from testdata/<guest>, loaded once per test
// binary with default options.
func shared(t testing.TB, guest string) *Plugin {
	t.Helper()
	pluginsMu.Lock()
	defer pluginsMu.Unlock()
	if p, ok := plugins[guest]; ok {
		return p
	}
	p := load(t, guest, Options{})
	plugins[guest] = p
	return p
}

func load(t testing.TB, guest string, opts Options) *Plugin {
	t.Helper()
	wasm := wasmbuild.ForTest(t, "host/plugin/testdata/"+guest)
	p, err := Load(context.Background(), guest, wasm, opts)
	if err != nil {
		t.Fatalf("Load %s: %v", guest, err)
	}
	return p
}

// logLine is one line a plugin logged.
type logLine struct {
	level int
	msg   string
}

// harness is one opened instance with its backend, clock and logs.
type harness struct {
	t     testing.TB
	p     *Plugin
	f     process.Function
	state statestore.Backend
	// timers is the timer store (the memory backend's); wm the watermark.
	timers *memory.Backend
	wm     atomic.Int64
	mu     sync.Mutex
	logs   []logLine
	now    atomic.Int64
}

func open(t testing.TB, p *Plugin, config map[string]string) *harness {
	t.Helper()
	h, err := tryOpen(t, p, config)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return h
}

func tryOpen(t testing.TB, p *Plugin, config map[string]string) (*harness, error) {
	t.Helper()
	c := p.Contract()
	st, err := memory.New(statestore.Config{States: c.States, MaxParallelism: testMaxParallelism})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, p: p, f: p.NewFunction(), state: st, timers: st}
	h.now.Store(1_700_000_000_123)
	h.wm.Store(abi.NoWatermark)
	fields := make([]string, len(c.Fields))
	for i, f := range c.Fields {
		fields[i] = f.Name
	}
	err = h.f.Open(context.Background(), process.Env{
		Job: "job1", Worker: 2, Parallelism: 4, Config: config, Fields: fields,
		State:     st,
		Timers:    st,
		Watermark: h.wm.Load,
		Now:       h.now.Load,
		Log: func(level int, msg string) {
			h.mu.Lock()
			h.logs = append(h.logs, logLine{level, msg})
			h.mu.Unlock()
		},
	})
	if t, ok := t.(*testing.T); ok {
		t.Cleanup(func() { h.f.Close(context.Background()) })
	}
	return h, err
}

func (h *harness) logged(level int, msg string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, l := range h.logs {
		if l.level == level && l.msg == msg {
			return true
		}
	}
	return false
}

var seqs atomic.Uint64

// events makes one event per value, all with key.
func events(key string, values ...string) []process.Event {
	evs := make([]process.Event, len(values))
	for i, v := range values {
		evs[i] = event(key, v)
	}
	return evs
}

func event(key, value string) process.Event {
	return process.Event{
		Seq:      seqs.Add(1),
		Time:     1_600_000_000_000 + int64(len(value)),
		KeyGroup: statestore.KeyGroup([]byte(key), testMaxParallelism),
		Key:      []byte(key),
		Value:    []byte(value),
		Subject:  []byte("in." + key),
	}
}

// collector records outputs and rejects.
type collector struct {
	outs    []process.Output
	rejects []string
}

func (c *collector) Emit(port int, seq uint64, key, value []byte) {
	o := process.Output{Port: port, Seq: seq, Value: append([]byte(nil), value...)}
	if key != nil {
		o.Key = append([]byte(nil), key...)
	}
	c.outs = append(c.outs, o)
}

func (c *collector) Reject(ev *process.Event, reason string) {
	c.rejects = append(c.rejects, fmt.Sprintf("%d:%s", ev.Seq, reason))
}

// values returns the values emitted on the main output.
func (c *collector) values() []string {
	var s []string
	for _, o := range c.outs {
		if o.Port == abi.MainOutput {
			s = append(s, string(o.Value))
		}
	}
	return s
}

func (h *harness) run(evs ...process.Event) (*collector, error) {
	c := &collector{}
	err := h.f.ProcessBatch(context.Background(), evs, c)
	return c, err
}

func (h *harness) mustRun(evs ...process.Event) *collector {
	h.t.Helper()
	c, err := h.run(evs...)
	if err != nil {
		h.t.Fatalf("ProcessBatch: %v", err)
	}
	return c
}

// wasm module builder for hand-made test modules.

const (
	tI32 = 0x7f
	tI64 = 0x7e
)

type wImport struct {
	mod, name       string
	params, results []byte
}

type wFunc struct {
	export          string
	params, results []byte
	body            []byte // instructions without the final end
}

type wModule struct {
	imports []wImport
	funcs   []wFunc
	data    []byte // at offset 1024
	noMem   bool
}

func uleb(b []byte, v uint64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			b = append(b, c|0x80)
			continue
		}
		return append(b, c)
	}
}

func sleb(b []byte, v int64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func wname(b []byte, s string) []byte { return append(uleb(b, uint64(len(s))), s...) }

func section(b []byte, id byte, content []byte) []byte {
	b = append(b, id)
	b = uleb(b, uint64(len(content)))
	return append(b, content...)
}

func functype(b []byte, params, results []byte) []byte {
	b = append(b, 0x60)
	b = uleb(b, uint64(len(params)))
	b = append(b, params...)
	b = uleb(b, uint64(len(results)))
	return append(b, results...)
}

func (m *wModule) encode() []byte {
	out := []byte{0, 'a', 's', 'm', 1, 0, 0, 0}
	var types []byte
	n := 0
	for _, im := range m.imports {
		types = functype(types, im.params, im.results)
		n++
	}
	for _, f := range m.funcs {
		types = functype(types, f.params, f.results)
		n++
	}
	out = section(out, 1, append(uleb(nil, uint64(n)), types...))
	var imps []byte
	imps = uleb(imps, uint64(len(m.imports)))
	for i, im := range m.imports {
		imps = wname(imps, im.mod)
		imps = wname(imps, im.name)
		imps = append(imps, 0)
		imps = uleb(imps, uint64(i))
	}
	out = section(out, 2, imps)
	fns := uleb(nil, uint64(len(m.funcs)))
	for i := range m.funcs {
		fns = uleb(fns, uint64(len(m.imports)+i))
	}
	out = section(out, 3, fns)
	if !m.noMem {
		out = section(out, 5, []byte{1, 0, 1})
	}
	var exps []byte
	ne := 0
	for i, f := range m.funcs {
		if f.export != "" {
			exps = wname(exps, f.export)
			exps = append(exps, 0)
			exps = uleb(exps, uint64(len(m.imports)+i))
			ne++
		}
	}
	if !m.noMem {
		exps = wname(exps, "memory")
		exps = append(exps, 2, 0)
		ne++
	}
	out = section(out, 7, append(uleb(nil, uint64(ne)), exps...))
	code := uleb(nil, uint64(len(m.funcs)))
	for _, f := range m.funcs {
		body := append([]byte{0}, f.body...)
		body = append(body, 0x0b)
		code = uleb(code, uint64(len(body)))
		code = append(code, body...)
	}
	out = section(out, 10, code)
	if len(m.data) > 0 && !m.noMem {
		d := []byte{1, 0, 0x41}
		d = sleb(d, 1024)
		d = append(d, 0x0b)
		d = uleb(d, uint64(len(m.data)))
		d = append(d, m.data...)
		out = section(out, 11, d)
	}
	return out
}

func i32Const(v int32) []byte { return sleb([]byte{0x41}, int64(v)) }
func i64Const(v int64) []byte { return sleb([]byte{0x42}, v) }

// rawModule returns a minimal valid plugin module without WASI or
// _initialize whose contract is contractJSON; process is the body of
// ws_process (default: return 0).
func rawModule(contractJSON string, process []byte) *wModule {
	if process == nil {
		process = i32Const(0)
	}
	return &wModule{
		data: []byte(contractJSON),
		funcs: []wFunc{
			{abi.ExportDescribe, nil, []byte{tI64}, i64Const(1024<<32 | int64(len(contractJSON)))},
			{abi.ExportBuffer, []byte{tI32}, []byte{tI32}, i32Const(8192)},
			{abi.ExportOpen, []byte{tI32, tI32}, []byte{tI32}, i32Const(0)},
			{abi.ExportProcess, []byte{tI32, tI32}, []byte{tI32}, process},
			{abi.ExportClose, nil, []byte{tI32}, i32Const(0)},
		},
	}
}

const minimalContract = `{"abi":1,"name":"raw","states":[],"outputs":[],"fields":[]}`

func (m *wModule) without(export string) *wModule {
	c := *m
	c.funcs = nil
	for _, f := range m.funcs {
		if f.export != export {
			c.funcs = append(c.funcs, f)
		}
	}
	return &c
}

func (m *wModule) with(f wFunc) *wModule {
	c := *m
	c.funcs = append(append([]wFunc(nil), m.without(f.export).funcs...), f)
	return &c
}

func (m *wModule) importing(im ...wImport) *wModule {
	c := *m
	c.imports = append(append([]wImport(nil), m.imports...), im...)
	return &c
}

func loadRaw(t testing.TB, m *wModule, opts Options) (*Plugin, error) {
	t.Helper()
	p, err := Load(context.Background(), "raw", m.encode(), opts)
	if err == nil {
		if t, ok := t.(*testing.T); ok {
			t.Cleanup(func() { p.Close(context.Background()) })
		}
	}
	return p, err
}
