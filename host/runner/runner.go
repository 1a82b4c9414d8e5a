// Package runner assembles a job from its config: it loads (or builds) the
// plugin, checks the plugin's contract against the job config, and hands the
// engine a function per worker. The CLI's run, demo and bench commands and
// the end-to-end tests start jobs through it.
package runner

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/wasmstream/wasmstream/abi"
	"github.com/wasmstream/wasmstream/checkpoint"
	"github.com/wasmstream/wasmstream/host/engine"
	"github.com/wasmstream/wasmstream/host/job"
	"github.com/wasmstream/wasmstream/host/plugin"
	"github.com/wasmstream/wasmstream/host/process"
	"github.com/wasmstream/wasmstream/internal/wasmbuild"
)

// Options are the run-time choices that are not part of the job config.
type Options struct {
	// Conn is the NATS connection; when nil the engine dials URL.
	Conn *nats.Conn
	URL  string
	// UntilCaughtUp stops the job once it has processed what the stream
	// held when it started.
	UntilCaughtUp bool
	// UntilSeq, when more than 0, stops the job once it has processed the
	// stream up to this sequence (engine.Config.UntilSeq).
	UntilSeq uint64
	// Clock is the processing time; nil means the wall clock
	// (engine.Config.Clock).
	Clock engine.Clock
	// Status is called periodically with the job's counters.
	Status      func(engine.Status)
	StatusEvery time.Duration
	// Logf receives host log lines (engine and plugin); nil discards them.
	Logf func(format string, args ...any)
	// Warnf receives warnings (a damaged checkpoint skipped, a failed
	// checkpoint); nil sends them to Logf.
	Warnf func(format string, args ...any)
	// RestoreFrom names the checkpoint a job with checkpoints restores; 0
	// restores the latest complete one (engine.Config.RestoreFrom).
	RestoreFrom uint64
	// Checkpoints, when set, is the job's checkpoint store instead of the
	// one its checkpoint section names.
	Checkpoints *checkpoint.Store
	// Stdout receives stdout sinks' lines; nil means os.Stdout.
	Stdout io.Writer
	// CacheDir holds built plugins; empty means the user cache dir.
	CacheDir string
	// Wasm, when set, is used instead of reading or building the job's
	// plugin.path.
	Wasm []byte
	// OnBuild is called before a plugin source directory is built.
	OnBuild func(dir string)
}

// Job is a prepared job: its plugin is loaded and its config checked.
type Job struct {
	Config   *job.Config
	Plugin   *plugin.Plugin
	Warnings []string
	engine   engine.Config
}

// Prepare loads the plugin of cfg (building a Go source directory), checks
// its contract against the job config, and returns a job ready to run.
func Prepare(ctx context.Context, cfg *job.Config, opts Options) (*Job, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	wasm := opts.Wasm
	if wasm == nil {
		path := cfg.Plugin.ResolvedPath(cfg.Dir)
		if opts.OnBuild != nil && isDir(path) {
			opts.OnBuild(path)
		}
		var err error
		if wasm, _, err = wasmbuild.Load(ctx, path, opts.CacheDir); err != nil {
			return nil, fmt.Errorf("plugin.path: %w", err)
		}
	}
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	// The plugin is named by its contract, so a trap names the plugin.
	p, err := plugin.Load(ctx, "", wasm, plugin.Options{
		MemoryLimitMB: cfg.Plugin.MemoryLimitMB,
		CallTimeout:   cfg.Plugin.CallTimeout.D(),
		Log: func(level int, name, msg string) {
			logf("plugin %s: %s: %s", name, levelName(level), msg)
		},
	})
	if err != nil {
		return nil, fmt.Errorf("plugin %s: %w", cfg.Plugin.Path, err)
	}
	c := p.Contract()
	j, err := prepare(cfg, c, func(int) (process.Function, error) { return p.NewFunction(), nil }, opts)
	if err != nil {
		p.Close(ctx)
		return nil, err
	}
	j.Plugin = p
	j.engine.UsesTimers = p.UsesTimers()
	j.engine.PluginHash = "sha256:" + p.Hash()
	return j, nil
}

// PrepareNative is Prepare for a process function written in Go: contract
// describes it as a plugin's contract would.
func PrepareNative(cfg *job.Config, contract abi.Contract, newFunction func(worker int) (process.Function, error), opts Options) (*Job, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := contract.Validate(); err != nil {
		return nil, err
	}
	return prepare(cfg, contract, newFunction, opts)
}

func prepare(cfg *job.Config, c abi.Contract, newFunction func(int) (process.Function, error), opts Options) (*Job, error) {
	fields, err := engine.ResolveFields(cfg, c.Fields)
	if err != nil {
		return nil, err
	}
	warnings, err := cfg.CheckOutputs(c.Outputs)
	if err != nil {
		return nil, err
	}
	return &Job{
		Config:   cfg,
		Warnings: warnings,
		engine: engine.Config{
			Conn:          opts.Conn,
			URL:           opts.URL,
			Job:           cfg,
			Fields:        fields,
			Outputs:       c.Outputs,
			States:        c.States,
			NewFunction:   newFunction,
			Logf:          opts.Logf,
			Warnf:         opts.Warnf,
			Contract:      c,
			RestoreFrom:   opts.RestoreFrom,
			Checkpoints:   opts.Checkpoints,
			Status:        opts.Status,
			StatusEvery:   opts.StatusEvery,
			UntilCaughtUp: opts.UntilCaughtUp,
			UntilSeq:      opts.UntilSeq,
			Clock:         opts.Clock,
			Stdout:        opts.Stdout,
		},
	}, nil
}

// Run runs the job until ctx is done, the job fails, or (UntilCaughtUp,
// UntilSeq) the stream is processed up to its end.
func (j *Job) Run(ctx context.Context) (engine.Summary, error) {
	e, err := engine.New(j.engine)
	if err != nil {
		return engine.Summary{}, err
	}
	return e.Run(ctx)
}

// Close releases the plugin.
func (j *Job) Close(ctx context.Context) error {
	if j.Plugin != nil {
		return j.Plugin.Close(ctx)
	}
	return nil
}

func levelName(l int) string {
	switch l {
	case abi.LogTrace:
		return "trace"
	case abi.LogDebug:
		return "debug"
	case abi.LogInfo:
		return "info"
	case abi.LogWarn:
		return "warn"
	case abi.LogError:
		return "error"
	}
	return fmt.Sprintf("level%d", l)
}

func isDir(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}
