// Command wasmstream runs keyed process functions written as WebAssembly
// plugins over NATS JetStream streams.
//
//	wasmstream demo                 run the frequency-capping job end to end
//	wasmstream run -f job.yaml      run a job
//	wasmstream checkpoints list -f job.yaml  list a job's checkpoints
//	wasmstream plugin build DIR     build a Go plugin to .wasm
//	wasmstream plugin inspect FILE  show a plugin's imports, exports and contract
//	wasmstream bench                measure raw consume, native and Wasm throughput
//	wasmstream version              print the version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `wasmstream runs keyed process functions written as WebAssembly plugins
over NATS JetStream streams.

Usage:
  wasmstream demo [flags]              run the frequency-capping job end to end on an
                                       embedded NATS server
  wasmstream run -f job.yaml [flags]   run a job; with checkpoint.interval it resumes
                                       from the latest checkpoint (or --from ID)
  wasmstream checkpoints list -f job.yaml
                                       list the job's checkpoints
  wasmstream plugin build DIR [-o F]   build a Go plugin package to a .wasm file
  wasmstream plugin inspect FILE       show a plugin's imports, exports and contract
  wasmstream bench [flags]             measure raw consume, native and Wasm throughput;
                                       --state pebble: memory vs Pebble state
  wasmstream version                   print the version

Run 'wasmstream COMMAND -h' for a command's flags.
`

// errUsage marks errors caused by how the command was called.
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(os.Stderr, "wasmstream: %v\n", err)
		}
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("%w: no command given", errUsage)
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "demo":
		return cmdDemo(ctx, rest, stdout, stderr)
	case "run":
		return cmdRun(ctx, rest, stdout, stderr)
	case "checkpoints":
		return cmdCheckpoints(ctx, rest, stdout, stderr)
	case "plugin":
		return cmdPlugin(ctx, rest, stdout, stderr)
	case "bench":
		return cmdBench(ctx, rest, stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, versionString())
		return nil
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("%w: unknown command %q", errUsage, cmd)
}

// newFlags returns a flag set that reports errors instead of exiting.
func newFlags(name string, stderr io.Writer, help string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: wasmstream %s\n\nFlags:\n", help)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args, turning flag errors into usage errors.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	return nil
}
