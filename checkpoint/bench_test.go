package checkpoint_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/wasmstream/wasmstream/abi"
	"github.com/wasmstream/wasmstream/checkpoint"
	"github.com/wasmstream/wasmstream/statestore"
	"github.com/wasmstream/wasmstream/statestore/pebble"
)

// BenchmarkPebbleCheckpoint measures incremental checkpoints of a large
// Pebble state: it writes WASMSTREAM_BENCH_STATE_MB (default 1024) MiB of
// incompressible values, takes a full checkpoint to a local directory and
// to a NATS Object Store, then, per iteration, changes 1% of the keys and
// checkpoints again. It reports the last incremental checkpoint's duration
// (ckpt-ms, of which sync-ms at the barrier) and the bytes it stored, and,
// once, the restore time from local state (local recovery) and from the
// Object Store. Pebble compacts in the background, so the bytes a
// checkpoint stores vary from one to the next: run a few iterations. Run it
// with
//
//	go test -run '^$' -bench PebbleCheckpoint -benchtime 3x -timeout 30m ./checkpoint/
func BenchmarkPebbleCheckpoint(b *testing.B) {
	mb := 1024
	if s := os.Getenv("WASMSTREAM_BENCH_STATE_MB"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			b.Fatalf("WASMSTREAM_BENCH_STATE_MB=%q: want a positive number of MiB", s)
		}
		mb = n
	}
	const valueSize = 1000
	const maxPar = 128
	nkeys := mb << 20 / valueSize
	ctx := context.Background()
	cfg := statestore.Config{States: []abi.StateDesc{{Name: "v", Kind: abi.KindValue}}, MaxParallelism: maxPar}
	dir := filepath.Join(b.TempDir(), "state")
	db, err := pebble.Open(dir, cfg, pebble.Options{})
	must(b, err)
	defer func() { db.Close() }()

	rng := rand.New(rand.NewPCG(1, 2))
	val := make([]byte, valueSize)
	put := func(i int) {
		for j := 0; j < len(val); j += 8 {
			v := rng.Uint64()
			for k := 0; k < 8 && j+k < len(val); k++ {
				val[j+k] = byte(v >> (8 * k))
			}
		}
		k := fmt.Appendf(nil, "user-%08d", i)
		must(b, db.Put(statestore.KeyGroup(k, maxPar), 0, k, val))
	}
	start := time.Now()
	for i := range nkeys {
		put(i)
	}
	b.Logf("wrote %d keys (%d MiB of values) in %v", nkeys, mb, time.Since(start).Round(time.Millisecond))
	// Settle the LSM (as a long-running job's is): what the load left to
	// compact is not what a checkpoint after a small change costs.
	start = time.Now()
	must(b, db.Compact(ctx))
	b.Logf("compacted in %v", time.Since(start).Round(time.Millisecond))

	local, err := checkpoint.NewDirStorage(b.TempDir())
	must(b, err)
	dirStore, _ := newStore(b, local, 2)
	objStore, _ := newStore(b, objectStorage(b), 2)

	type result struct {
		sync, total time.Duration
		stats       checkpoint.WriteStats
		meta        *checkpoint.Metadata
	}
	// checkpointTo snapshots the backend and writes the snapshot to store,
	// as the engine does: the synchronous part, then the write and the
	// commit.
	checkpointTo := func(store *checkpoint.Store, seq uint64) result {
		t0 := time.Now()
		p, err := store.Begin(ctx)
		must(b, err)
		snap, err := statestore.TakeSnapshot(db, nil)
		must(b, err)
		sync := time.Since(t0)
		h, err := snap.Write(ctx, p.Target("state"))
		must(b, err)
		must(b, snap.Release())
		m := &checkpoint.Metadata{Sequence: seq, Backend: pebble.BackendKind, MaxParallelism: maxPar,
			Parts: []checkpoint.Part{{Name: "state", Snapshot: h}}}
		must(b, store.Commit(ctx, p, m))
		return result{sync: sync, total: time.Since(t0), stats: p.Stats(), meta: m}
	}
	report := func(what string, r result) {
		b.Logf("%s: %v (sync part %v); wrote %d files, %.1f MiB; reused %d files, %.1f MiB",
			what, r.total.Round(time.Millisecond), r.sync.Round(time.Millisecond),
			r.stats.Files, float64(r.stats.Bytes)/(1<<20), r.stats.ReusedFiles, float64(r.stats.ReusedBytes)/(1<<20))
	}
	report("full checkpoint, local dir", checkpointTo(dirStore, 1))
	report("full checkpoint, object store", checkpointTo(objStore, 1))

	var last, lastObj result
	seq := uint64(1)
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		for range nkeys / 100 {
			put(rng.IntN(nkeys))
		}
		seq++
		b.StartTimer()
		last = checkpointTo(dirStore, seq)
		b.StopTimer()
		report("1% changed, local dir", last)
		lastObj = checkpointTo(objStore, seq)
		report("1% changed, object store", lastObj)
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(float64(last.total.Milliseconds()), "ckpt-ms")
	b.ReportMetric(float64(last.sync.Milliseconds()), "sync-ms")
	b.ReportMetric(float64(last.stats.Bytes)/(1<<20), "written-MiB")
	b.ReportMetric(float64(lastObj.total.Milliseconds()), "objstore-ckpt-ms")
	must(b, db.Close())

	// Local recovery: the state directory and its local snapshot (of the
	// last checkpoint, the one to the Object Store) hold every file.
	t0 := time.Now()
	r, stats, err := pebble.Restore(ctx, dir, cfg, pebble.Options{}, lastObj.meta.Parts[0].Snapshot, objStore.Source(lastObj.meta, "state"))
	must(b, err)
	d := time.Since(t0)
	must(b, r.Close())
	b.Logf("local recovery: %v, %d files linked (%.1f MiB), %d downloaded", d.Round(time.Millisecond), stats.Linked, float64(stats.LinkedBytes)/(1<<20), stats.Downloaded)
	b.ReportMetric(float64(d.Milliseconds()), "local-restore-ms")

	// A new machine: every file comes from the Object Store.
	t0 = time.Now()
	r, stats, err = pebble.Restore(ctx, filepath.Join(b.TempDir(), "state"), cfg, pebble.Options{}, lastObj.meta.Parts[0].Snapshot, objStore.Source(lastObj.meta, "state"))
	must(b, err)
	d = time.Since(t0)
	must(b, r.Close())
	b.Logf("restore from the object store: %v, %d files (%.1f MiB) downloaded, %d linked", d.Round(time.Millisecond), stats.Downloaded, float64(stats.DownloadedBytes)/(1<<20), stats.Linked)
	b.ReportMetric(float64(d.Milliseconds()), "objstore-restore-ms")
}
