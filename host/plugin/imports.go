package plugin

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/wasmstream/wasmstream/abi"
)

// hostFunc is one host function this package provides to plugins.
type hostFunc struct {
	name            string
	params, results []api.ValueType
	fn              func(in *instance, stack []uint64)
}

func sig(params ...api.ValueType) []api.ValueType { return params }

// allowedWASI lists the wasi_snapshot_preview1 functions a plugin may import:
// what a Go wasip1 reactor links (the runtime, os, time and crypto/rand,
// including time.LoadLocation's file access) and what TinyGo's wasi-libc
// links. With no preopened directories the filesystem functions find
// nothing; sockets are not available at all.
var allowedWASI = []string{
	"args_get", "args_sizes_get",
	"clock_res_get", "clock_time_get",
	"environ_get", "environ_sizes_get",
	"fd_close", "fd_fdstat_get", "fd_fdstat_set_flags", "fd_filestat_get",
	"fd_prestat_dir_name", "fd_prestat_get", "fd_read", "fd_readdir",
	"fd_seek", "fd_write",
	"path_filestat_get", "path_open",
	"poll_oneoff", "proc_exit", "random_get", "sched_yield",
}

// AllowedWASI returns the names of the wasi_snapshot_preview1 functions a
// plugin may import.
func AllowedWASI() []string { return append([]string(nil), allowedWASI...) }

var (
	wasiOnce sync.Once
	wasiSigs map[string]api.FunctionDefinition
	wasiErr  error
)

// wasiDefinitions returns the signatures of wazero's WASI preview1 functions.
func wasiDefinitions() (map[string]api.FunctionDefinition, error) {
	wasiOnce.Do(func() {
		ctx := context.Background()
		rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
		defer rt.Close(ctx)
		cm, err := wasi_snapshot_preview1.NewBuilder(rt).Compile(ctx)
		if err != nil {
			wasiErr = err
			return
		}
		wasiSigs = cm.ExportedFunctions()
	})
	return wasiSigs, wasiErr
}

var (
	hostFuncsOnce  sync.Once
	hostFuncsByMod map[string]map[string]*hostFunc
)

func hostFuncs() map[string]map[string]*hostFunc {
	hostFuncsOnce.Do(func() {
		hostFuncsByMod = map[string]map[string]*hostFunc{
			abi.ImportModule: index(append(wasmstreamFuncs(), timerFuncs()...)),
			abi.ExtismModule: index(extismFuncs()),
		}
	})
	return hostFuncsByMod
}

func index(fs []hostFunc) map[string]*hostFunc {
	m := make(map[string]*hostFunc, len(fs))
	for i := range fs {
		m[fs[i].name] = &fs[i]
	}
	return m
}

// checkImport returns why an import is refused, or "".
func checkImport(mod, name string, params, results []api.ValueType) string {
	var wantP, wantR []api.ValueType
	switch mod {
	case abi.ImportModule, abi.ExtismModule:
		f, ok := hostFuncs()[mod][name]
		if !ok {
			return fmt.Sprintf("module %q has no function %q; it provides %s", mod, name, names(hostFuncs()[mod]))
		}
		wantP, wantR = f.params, f.results
	case abi.WASIModule:
		if strings.HasPrefix(name, "sock_") {
			return "WASI sockets are not available to plugins"
		}
		allowed := false
		for _, a := range allowedWASI {
			allowed = allowed || a == name
		}
		defs, err := wasiDefinitions()
		d, ok := defs[name]
		if err != nil || !allowed || !ok {
			return fmt.Sprintf("WASI function %q is not available to plugins; allowed are %s", name, strings.Join(allowedWASI, ", "))
		}
		wantP, wantR = d.ParamTypes(), d.ResultTypes()
	default:
		return fmt.Sprintf("module %q is not provided by this host; plugins may import only from %q, %q and %q",
			mod, abi.ImportModule, abi.ExtismModule, abi.WASIModule)
	}
	if !sameTypes(params, wantP) || !sameTypes(results, wantR) {
		return fmt.Sprintf("wrong signature, this host provides %q.%q %s", mod, name, signature(wantP, wantR))
	}
	return ""
}

func names(m map[string]*hostFunc) string {
	s := make([]string, 0, len(m))
	for n := range m {
		s = append(s, n)
	}
	sort.Strings(s)
	return strings.Join(s, ", ")
}

// instantiateHostModules adds the wasmstream, Extism and WASI host modules
// to rt.
func instantiateHostModules(ctx context.Context, rt wazero.Runtime) error {
	for _, mod := range []string{abi.ImportModule, abi.ExtismModule} {
		b := rt.NewHostModuleBuilder(mod)
		for _, f := range hostFuncs()[mod] {
			fn := f.fn
			b = b.NewFunctionBuilder().
				WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, _ api.Module, stack []uint64) {
					fn(instanceOf(ctx), stack)
				}), f.params, f.results).
				Export(f.name)
		}
		if _, err := b.Instantiate(ctx); err != nil {
			return err
		}
	}
	_, err := wasi_snapshot_preview1.Instantiate(ctx, rt)
	return err
}
