package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/wasmstream/wasmstream/abi"
	"github.com/wasmstream/wasmstream/host/plugin"
	"github.com/wasmstream/wasmstream/internal/wasmbuild"
)

func cmdPlugin(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: plugin needs a subcommand: build DIR or inspect FILE", errUsage)
	}
	switch args[0] {
	case "build":
		return cmdPluginBuild(ctx, args[1:], stdout, stderr)
	case "inspect":
		return cmdPluginInspect(ctx, args[1:], stdout, stderr)
	}
	return fmt.Errorf("%w: unknown plugin subcommand %q (want build or inspect)", errUsage, args[0])
}

func cmdPluginBuild(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("plugin build", stderr, "plugin build DIR [-o FILE.wasm]")
	out := fs.String("o", "", "output file (default: DIR's name + .wasm in the current directory)")
	if err := parseFlags(fs, reorder(args)); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: plugin build takes one Go package directory, got %d arguments", errUsage, fs.NArg())
	}
	dir := fs.Arg(0)
	if *out == "" {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return err
		}
		name := filepath.Base(abs)
		if name == "plugin" { // examples/freqcap/plugin -> freqcap.wasm
			name = filepath.Base(filepath.Dir(abs))
		}
		*out = name + ".wasm"
	}
	start := time.Now()
	fmt.Fprintf(stderr, "building %s: %s\n", dir, wasmbuild.Command(dir, *out))
	if err := wasmbuild.Build(ctx, dir, *out); err != nil {
		return err
	}
	wasm, err := os.ReadFile(*out)
	if err != nil {
		return err
	}
	// Load it once so a plugin the host would refuse is reported now, not
	// when a job starts.
	p, err := plugin.Load(ctx, filepath.Base(*out), wasm, plugin.Options{})
	if err != nil {
		return fmt.Errorf("built %s, but the host refuses it: %w", *out, err)
	}
	defer p.Close(ctx)
	c := p.Contract()
	fmt.Fprintf(stdout, "%s: plugin %q, %d states, %d side outputs, %d fields, %.1f MB, %.1fs\n",
		*out, c.Name, len(c.States), len(c.Outputs), len(c.Fields), float64(len(wasm))/1e6, time.Since(start).Seconds())
	return nil
}

func cmdPluginInspect(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("plugin inspect", stderr, "plugin inspect FILE.wasm|DIR")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: plugin inspect takes one .wasm file or Go plugin directory", errUsage)
	}
	wasm, _, err := wasmbuild.Load(ctx, fs.Arg(0), "")
	if err != nil {
		return err
	}
	p, err := plugin.Load(ctx, filepath.Base(fs.Arg(0)), wasm, plugin.Options{})
	if err != nil {
		return err
	}
	defer p.Close(ctx)
	printInspect(stdout, fs.Arg(0), len(wasm), p)
	return nil
}

func printInspect(w io.Writer, path string, size int, p *plugin.Plugin) {
	c := p.Contract()
	fmt.Fprintf(w, "plugin %s (%s)\n", c.Name, path)
	fmt.Fprintf(w, "  abi        v%d\n", c.ABI)
	fmt.Fprintf(w, "  size       %d bytes\n", size)
	fmt.Fprintf(w, "  sha256     %s\n", p.Hash())
	fmt.Fprintln(w, "\nstates:")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  id\tname\tkind\tttl")
	for i, s := range c.States {
		fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\n", i, s.Name, s.Kind, ttlString(s.TTL))
	}
	tw.Flush()
	fmt.Fprintln(w, "\noutputs:")
	fmt.Fprintln(w, "  0 main")
	for i, o := range c.Outputs {
		fmt.Fprintf(w, "  %d %s\n", i+1, o)
	}
	fmt.Fprintln(w, "\nfields (extracted by the host, in slot order):")
	if len(c.Fields) == 0 {
		fmt.Fprintln(w, "  (none)")
	}
	for i, f := range c.Fields {
		path := f.Path
		if path == "" {
			path = f.Name
		}
		fmt.Fprintf(w, "  %d %s <- $.%s\n", i, f.Name, path)
	}
	fmt.Fprintln(w, "\nimports:")
	for _, f := range p.Imports() {
		fmt.Fprintf(w, "  %s\n", f)
	}
	fmt.Fprintln(w, "\nexports:")
	for _, f := range p.Exports() {
		fmt.Fprintf(w, "  %s\n", f)
	}
}

func ttlString(t *abi.TTL) string {
	if t == nil {
		return "-"
	}
	parts := []string{(time.Duration(t.Millis) * time.Millisecond).String()}
	for _, s := range []string{t.Update, t.Visibility, t.Domain} {
		if s != "" {
			parts = append(parts, s)
		}
	}
	return strings.Join(parts, " ")
}

// reorder moves flags after positional arguments to the front, so
// "plugin build DIR -o x.wasm" works as well as "-o x.wasm DIR".
func reorder(args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if strings.HasPrefix(a, "-") && len(a) > 1 {
			flags = append(flags, a)
			if !strings.Contains(a, "=") && i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") && a != "-h" && a != "-help" {
				flags = append(flags, args[i+1])
				i++
			}
			continue
		}
		pos = append(pos, a)
	}
	return append(flags, pos...)
}
