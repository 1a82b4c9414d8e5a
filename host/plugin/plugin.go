package plugin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/wasmstream/wasmstream/abi"
	"github.com/wasmstream/wasmstream/host/process"
)

// DefaultMemoryLimitMB is the memory limit when Options.MemoryLimitMB is 0.
const DefaultMemoryLimitMB = 64

// Options configure Load.
type Options struct {
	// MemoryLimitMB caps each instance's linear memory; 0 means
	// DefaultMemoryLimitMB. It also caps the Extism host memory arena.
	MemoryLimitMB int
	// CacheDir is the compilation cache directory; empty means
	// os.UserCacheDir()/wasmstream/wazero (an in-memory cache if there is no
	// user cache directory).
	CacheDir string
	// Log receives log lines of the plugin: its log calls, Extism log calls
	// and stdout/stderr lines. Instances opened with a process.Env that has a
	// Log function use that instead. Nil discards them.
	Log func(level int, plugin string, msg string)
	// LogLevel is the lowest level passed on (abi.LogTrace..abi.LogError);
	// the zero value, abi.LogTrace, passes everything. Extism guests read it
	// through get_log_level.
	LogLevel int
	// Clock returns the processing time in ms, used by now_ms and the WASI
	// clocks. Nil means time.Now. An instance opened with a process.Env that
	// has a Now function uses that instead.
	Clock func() int64
	// CallTimeout, if positive, bounds each export call (one batch): a call
	// that runs longer, or whose context is canceled, is stopped and leaves
	// the instance dead. Zero or negative disables the bound; ProcessBatch
	// then checks its context only before calling the guest. The bound makes the runtime insert a
	// check at every loop header of the guest, which for a Go guest (every
	// Go function has a loop) costs about 3x the per-event time of the Wasm
	// boundary (see BenchmarkProcessBatch), so it is off by default.
	CallTimeout time.Duration
}

func (o Options) withDefaults() Options {
	if o.MemoryLimitMB <= 0 {
		o.MemoryLimitMB = DefaultMemoryLimitMB
	}
	return o
}

// ErrInvalidPlugin is wrapped by every error Load returns for a module that
// is not a usable wasmstream plugin.
var ErrInvalidPlugin = errors.New("wasmstream: invalid plugin")

// Func describes an imported or exported function of a plugin module.
type Func struct {
	Module    string // import module; empty for an export
	Name      string
	Signature string // e.g. "(i32, i32) -> i32"
}

func (f Func) String() string {
	if f.Module == "" {
		return f.Name + " " + f.Signature
	}
	return fmt.Sprintf("%q.%q %s", f.Module, f.Name, f.Signature)
}

// Plugin is a loaded, validated plugin module. It is safe for concurrent
// use; each worker gets its own instance through NewFunction.
type Plugin struct {
	name     string
	hash     string
	opts     Options
	rt       wazero.Runtime
	compiled wazero.CompiledModule
	contract abi.Contract
	kinds    []abi.StateKind
	imports  []Func
	exports  []Func
	hasInit  bool
	hasTimer bool
	seq      atomic.Uint64
	closed   atomic.Bool
}

// Load compiles and validates a plugin module and reads its contract. name
// is used in module names, log lines and errors; empty means the name the
// plugin gives itself in its contract (and "plugin" until it is read).
func Load(ctx context.Context, name string, wasm []byte, opts Options) (*Plugin, error) {
	opts = opts.withDefaults()
	sum := sha256.Sum256(wasm)
	named := name != ""
	if !named {
		name = "plugin"
	}
	p := &Plugin{name: name, hash: hex.EncodeToString(sum[:]), opts: opts}

	cache, err := compilationCache(opts.CacheDir)
	if err != nil {
		return nil, err
	}
	cfg := wazero.NewRuntimeConfig().
		WithCompilationCache(cache).
		WithMemoryLimitPages(uint32(opts.MemoryLimitMB) * 16).
		WithCloseOnContextDone(opts.CallTimeout > 0)
	p.rt = wazero.NewRuntimeWithConfig(ctx, cfg)
	ok := false
	defer func() {
		if !ok {
			p.rt.Close(ctx)
		}
	}()

	if err := instantiateHostModules(ctx, p.rt); err != nil {
		return nil, fmt.Errorf("wasmstream: plugin %q: host modules: %w", name, err)
	}
	p.compiled, err = p.rt.CompileModule(ctx, wasm)
	if err != nil {
		return nil, fmt.Errorf("%w %q: %v", ErrInvalidPlugin, name, err)
	}
	if err := p.validate(); err != nil {
		return nil, err
	}
	if err := p.probe(ctx); err != nil {
		return nil, err
	}
	if !named {
		p.name = p.contract.Name
	}
	ok = true
	return p, nil
}

var (
	cacheMu sync.Mutex
	caches  = map[string]wazero.CompilationCache{}
)

// compilationCache returns the process-wide compilation cache for dir.
func compilationCache(dir string) (wazero.CompilationCache, error) {
	if dir == "" {
		if d, err := os.UserCacheDir(); err == nil {
			dir = filepath.Join(d, "wasmstream", "wazero")
		}
	}
	cacheMu.Lock()
	defer cacheMu.Unlock()
	if c, ok := caches[dir]; ok {
		return c, nil
	}
	var c wazero.CompilationCache
	if dir == "" {
		c = wazero.NewCompilationCache()
	} else {
		var err error
		if c, err = wazero.NewCompilationCacheWithDir(dir); err != nil {
			return nil, fmt.Errorf("wasmstream: compilation cache %s: %w", dir, err)
		}
	}
	caches[dir] = c
	return c, nil
}

// validate checks imports and exports of the compiled module against what
// this host provides and ABI v1 requires.
func (p *Plugin) validate() error {
	var problems []string
	for _, d := range p.compiled.ImportedFunctions() {
		mod, fn, _ := d.Import()
		f := Func{Module: mod, Name: fn, Signature: signature(d.ParamTypes(), d.ResultTypes())}
		p.imports = append(p.imports, f)
		if msg := checkImport(mod, fn, d.ParamTypes(), d.ResultTypes()); msg != "" {
			problems = append(problems, fmt.Sprintf("import %s: %s", f, msg))
		}
	}
	for _, m := range p.compiled.ImportedMemories() {
		mod, n, _ := m.Import()
		problems = append(problems, fmt.Sprintf("imports memory %q.%q: a plugin must define and export its own memory", mod, n))
	}

	exports := p.compiled.ExportedFunctions()
	names := make([]string, 0, len(exports))
	for n := range exports {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		d := exports[n]
		p.exports = append(p.exports, Func{Name: n, Signature: signature(d.ParamTypes(), d.ResultTypes())})
	}
	if _, ok := p.compiled.ExportedMemories()["memory"]; !ok {
		problems = append(problems, `does not export its linear memory as "memory"`)
	}
	missing := false
	for _, e := range requiredExports {
		d, ok := exports[e.name]
		switch {
		case !ok && e.optional:
		case !ok:
			missing = true
			problems = append(problems, fmt.Sprintf("does not export %s %s", e.name, signature(e.params, e.results)))
		case !sameTypes(d.ParamTypes(), e.params) || !sameTypes(d.ResultTypes(), e.results):
			problems = append(problems, fmt.Sprintf("exports %s %s, want %s", e.name,
				signature(d.ParamTypes(), d.ResultTypes()), signature(e.params, e.results)))
		}
	}
	if _, ok := exports["_start"]; ok && missing {
		problems = append(problems, "it exports _start: build it as a reactor (go build -buildmode=c-shared, tinygo -buildmode=c-shared)")
	}
	_, p.hasInit = exports[abi.ExportInitialize]
	_, p.hasTimer = exports[abi.ExportOnTimer]
	if !p.hasTimer && p.UsesTimers() {
		problems = append(problems, fmt.Sprintf("imports %s but does not export %s (i32, i32) -> i32: a plugin that registers timers must export %s to receive them when they fire",
			abi.FnTimerRegister, abi.ExportOnTimer, abi.ExportOnTimer))
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w %q: %s", ErrInvalidPlugin, p.name, joinProblems(problems))
	}
	return nil
}

func joinProblems(p []string) string {
	if len(p) == 1 {
		return p[0]
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "%d problems:", len(p))
	for _, s := range p {
		b.WriteString("\n\t")
		b.WriteString(s)
	}
	return b.String()
}

var (
	i32 = api.ValueTypeI32
	i64 = api.ValueTypeI64
	f64 = api.ValueTypeF64
)

var requiredExports = []struct {
	name            string
	params, results []api.ValueType
	optional        bool
}{
	{abi.ExportInitialize, nil, nil, true},
	{abi.ExportDescribe, nil, []api.ValueType{i64}, false},
	{abi.ExportBuffer, []api.ValueType{i32}, []api.ValueType{i32}, false},
	{abi.ExportOpen, []api.ValueType{i32, i32}, []api.ValueType{i32}, false},
	{abi.ExportProcess, []api.ValueType{i32, i32}, []api.ValueType{i32}, false},
	{abi.ExportOnTimer, []api.ValueType{i32, i32}, []api.ValueType{i32}, true},
	{abi.ExportClose, nil, []api.ValueType{i32}, false},
}

func sameTypes(a, b []api.ValueType) bool { return bytes.Equal(a, b) }

// signature renders a function type as "(i32, i64) -> i32".
func signature(params, results []api.ValueType) string {
	var b bytes.Buffer
	b.WriteByte('(')
	for i, t := range params {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(api.ValueTypeName(t))
	}
	b.WriteString(") -> ")
	switch len(results) {
	case 0:
		b.WriteString("()")
	case 1:
		b.WriteString(api.ValueTypeName(results[0]))
	default:
		b.WriteByte('(')
		for i, t := range results {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(api.ValueTypeName(t))
		}
		b.WriteByte(')')
	}
	return b.String()
}

// probe instantiates the module once to read and check its contract.
func (p *Plugin) probe(ctx context.Context) error {
	in := p.newInstance()
	if err := in.instantiate(ctx, p.opts.Clock, nil); err != nil {
		return fmt.Errorf("%w %q: %v", ErrInvalidPlugin, p.name, err)
	}
	defer in.closeModule(ctx)
	in.stack[0] = 0
	if err := in.call(ctx, in.fnDescribe, abi.ExportDescribe); err != nil {
		return fmt.Errorf("%w %q: %v", ErrInvalidPlugin, p.name, err)
	}
	r := in.stack[0]
	ptr, n := uint32(r>>32), uint32(r)
	if n > abi.MaxContractLen {
		return fmt.Errorf("%w %q: ws_describe returned a %d-byte contract, at most %d allowed", ErrInvalidPlugin, p.name, n, abi.MaxContractLen)
	}
	b, ok := in.mem.Read(ptr, n)
	if !ok {
		return fmt.Errorf("%w %q: ws_describe returned pointer %#x length %d outside guest memory (%d bytes)", ErrInvalidPlugin, p.name, ptr, n, in.mem.Size())
	}
	c, err := parseContract(b)
	if err != nil {
		return fmt.Errorf("%w %q: %v", ErrInvalidPlugin, p.name, err)
	}
	p.contract = c
	p.kinds = make([]abi.StateKind, len(c.States))
	for i, s := range c.States {
		p.kinds[i] = s.Kind
	}
	return nil
}

// parseContract decodes and validates the contract JSON a plugin describes
// itself with.
func parseContract(b []byte) (abi.Contract, error) {
	var c abi.Contract
	if len(b) > abi.MaxContractLen {
		return c, fmt.Errorf("%w: %d bytes, at most %d allowed", abi.ErrBadContract, len(b), abi.MaxContractLen)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return abi.Contract{}, fmt.Errorf("%w: not a JSON contract: %v", abi.ErrBadContract, err)
	}
	if err := c.Validate(); err != nil {
		return abi.Contract{}, err
	}
	return c, nil
}

// Name returns the name the plugin was loaded under.
func (p *Plugin) Name() string { return p.name }

// Contract returns the plugin's validated contract. The caller must not
// modify it.
func (p *Plugin) Contract() abi.Contract { return p.contract }

// Hash returns the hex SHA-256 of the module bytes.
func (p *Plugin) Hash() string { return p.hash }

// Imports returns the module's imported functions in import order.
func (p *Plugin) Imports() []Func { return append([]Func(nil), p.imports...) }

// Exports returns the module's exported functions sorted by name.
func (p *Plugin) Exports() []Func { return append([]Func(nil), p.exports...) }

// UsesTimers reports whether the plugin registers timers (imports
// timer_register). Only such a plugin needs process.Env.Timers, and only its
// timers can fire.
func (p *Plugin) UsesTimers() bool {
	return slices.ContainsFunc(p.imports, func(f Func) bool {
		return f.Module == abi.ImportModule && f.Name == abi.FnTimerRegister
	})
}

// NewFunction returns a new, unopened instance of the plugin for one worker.
func (p *Plugin) NewFunction() process.Function { return p.newInstance() }

// Close releases the plugin's runtime and every instance still open.
func (p *Plugin) Close(ctx context.Context) error {
	if p.closed.Swap(true) {
		return nil
	}
	return p.rt.Close(ctx)
}
