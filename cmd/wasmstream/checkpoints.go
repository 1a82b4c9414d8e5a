package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/wasmstream/wasmstream/host/engine"
	"github.com/wasmstream/wasmstream/host/job"
	"github.com/wasmstream/wasmstream/host/natsembed"
)

// cmdCheckpoints is "wasmstream checkpoints list -f job.yaml": the job's
// checkpoints, oldest first, as a table of id, creation time, size,
// duration and stream sequence.
func cmdCheckpoints(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "list" {
		return fmt.Errorf("%w: checkpoints needs a subcommand: wasmstream checkpoints list -f job.yaml", errUsage)
	}
	fs := newFlags("checkpoints list", stderr, "checkpoints list -f job.yaml [flags]")
	file := fs.String("f", "", "job config file (YAML)")
	natsURL := fs.String("nats", "", "NATS server URL, for checkpoint.storage type object_store (default: an embedded server)")
	dataDir := fs.String("data-dir", "wasmstream-data", "embedded server: JetStream data directory")
	listen := fs.String("listen", "127.0.0.1:4222", "embedded server: client listen address")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if *file == "" {
		return fmt.Errorf("%w: checkpoints list needs a job config: wasmstream checkpoints list -f job.yaml", errUsage)
	}
	cfg, err := job.Load(*file)
	if err != nil {
		return err
	}
	if !cfg.Checkpoint.Enabled() {
		return fmt.Errorf("job %s takes no checkpoints: set checkpoint.interval in %s", cfg.Name, *file)
	}
	var nc *nats.Conn
	if cfg.Checkpoint.Storage.Type == job.StorageObjectStore {
		url := *natsURL
		if url == "" {
			srv, err := natsembed.Start(natsembed.Options{StoreDir: *dataDir, Listen: *listen})
			if err != nil {
				return fmt.Errorf("embedded NATS server: %w (use --listen to pick another address or --nats to use a running server)", err)
			}
			defer srv.Shutdown()
			url = srv.URL
		}
		if nc, err = nats.Connect(url); err != nil {
			return fmt.Errorf("connect to %s: %w", url, err)
		}
		defer nc.Close()
	}
	warn := func(format string, args ...any) { fmt.Fprintf(stderr, format+"\n", args...) }
	store, err := engine.OpenCheckpoints(ctx, cfg, nc, warn)
	if err != nil {
		return err
	}
	list, err := store.List(ctx)
	if err != nil {
		return err
	}
	if len(list) == 0 {
		fmt.Fprintf(stderr, "job %s has no checkpoints in %s\n", cfg.Name, store.Storage())
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTIME\tSIZE\tDURATION\tSEQUENCE\tSTATUS")
	for _, in := range list {
		switch {
		case in.Complete:
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\tcomplete\n", in.ID, in.Created.UTC().Format(time.RFC3339), bytesString(in.Size), in.Duration.Round(time.Millisecond), in.Sequence)
		case in.Damaged != "":
			fmt.Fprintf(tw, "%d\t-\t%s\t-\t-\tdamaged: %s\n", in.ID, bytesString(in.Own), in.Damaged)
		default:
			fmt.Fprintf(tw, "%d\t-\t%s\t-\t-\tpartial\n", in.ID, bytesString(in.Own))
		}
	}
	return tw.Flush()
}
