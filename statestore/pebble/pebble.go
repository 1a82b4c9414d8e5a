package pebble

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/sstable"

	"github.com/wasmstream/wasmstream/abi"
	"github.com/wasmstream/wasmstream/statestore"
	"github.com/wasmstream/wasmstream/statestore/internal/core"
)

// FormatVersion is the version of the durable format this package writes
// and the only one it opens (see the package documentation).
const FormatVersion = 1

// Defaults of Options.
const (
	DefaultBlockCacheBytes = 64 << 20
	DefaultMemTableBytes   = 16 << 20
	DefaultBloomBitsPerKey = 10
	DefaultCompression     = "snappy"
	DefaultCacheBytes      = 256 << 20
)

// Options tune the backend. The zero value of each field means its default.
type Options struct {
	// BlockCacheBytes is the size of Pebble's block cache.
	BlockCacheBytes int64
	// MemTableBytes is the size of one Pebble memtable.
	MemTableBytes int64
	// BloomBitsPerKey sets the bits per key of the bloom filters that let
	// reads of absent keys skip tables; negative disables them.
	BloomBitsPerKey int
	// Compression of table blocks: "zstd", "snappy" or "none".
	Compression string
	// CacheBytes bounds the write-back cache of records in front of Pebble.
	CacheBytes int64
	// TimerBatchBytes bounds the timer writes buffered in memory before
	// they are committed to Pebble, shared evenly among key groups.
	TimerBatchBytes int64
	// TimerCacheBytes bounds the earliest timers of each key group and
	// time domain kept in memory, shared evenly among them.
	TimerCacheBytes int64
	// Logf receives Pebble's log lines; nil drops them. Pebble never writes
	// to stdout or stderr.
	Logf func(format string, args ...any)
}

// Backend is the Pebble statestore.Backend.
type Backend struct {
	*core.Store
	db     *pebble.DB
	dir    string
	closed bool
	timers timerStore
	snaps  snapState // snapshot.go
}

var _ statestore.Backend = (*Backend)(nil)

// logger routes Pebble's log lines to a function.
type logger struct{ f func(string, ...any) }

func (l logger) Infof(format string, args ...any) {
	if l.f != nil {
		l.f("pebble: "+format, args...)
	}
}

func (l logger) Errorf(format string, args ...any) {
	if l.f != nil {
		l.f("pebble: error: "+format, args...)
	}
}

func (l logger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if l.f != nil {
		l.f("pebble: fatal: %s", msg)
	}
	panic("pebble: fatal: " + msg)
}

// pebbleOptions returns the Pebble options for o, with defaults applied.
func (o *Options) pebbleOptions() (*pebble.Options, error) {
	if o.BlockCacheBytes < 0 {
		return nil, fmt.Errorf("wasmstream: pebble block cache of %d bytes: must be positive (0 means %d MiB)", o.BlockCacheBytes, DefaultBlockCacheBytes>>20)
	}
	if o.MemTableBytes < 0 || o.MemTableBytes >= 4<<30 {
		return nil, fmt.Errorf("wasmstream: pebble memtable of %d bytes: must be positive and under 4 GiB (0 means %d MiB)", o.MemTableBytes, DefaultMemTableBytes>>20)
	}
	if o.TimerBatchBytes < 0 || o.TimerCacheBytes < 0 {
		return nil, fmt.Errorf("wasmstream: timer batch of %d bytes, timer cache of %d bytes: must be positive (0 means the default)", o.TimerBatchBytes, o.TimerCacheBytes)
	}
	if o.CacheBytes < 0 {
		return nil, fmt.Errorf("wasmstream: state cache of %d bytes: must be positive (0 means %d MiB)", o.CacheBytes, DefaultCacheBytes>>20)
	}
	var comp func() *sstable.CompressionProfile
	switch o.Compression {
	case "", "snappy":
		comp = func() *sstable.CompressionProfile { return sstable.SnappyCompression }
	case "zstd":
		comp = func() *sstable.CompressionProfile { return sstable.ZstdCompression }
	case "none":
		comp = func() *sstable.CompressionProfile { return sstable.NoCompression }
	default:
		return nil, fmt.Errorf("wasmstream: pebble compression %q: use zstd, snappy or none", o.Compression)
	}
	po := &pebble.Options{
		CacheSize:    orDefault(o.BlockCacheBytes, DefaultBlockCacheBytes),
		MemTableSize: uint64(orDefault(o.MemTableBytes, DefaultMemTableBytes)),
		Logger:       logger{o.Logf},
		// Every snapshot copies the MANIFEST: keep it small.
		MaxManifestFileSize: maxManifestBytes,
	}
	bits := o.BloomBitsPerKey
	if bits == 0 {
		bits = DefaultBloomBitsPerKey
	}
	for i := range po.Levels {
		po.Levels[i].Compression = comp
		if bits > 0 {
			po.Levels[i].FilterPolicy = bloom.FilterPolicy(bits)
		}
	}
	return po, nil
}

func orDefault(v, def int64) int64 {
	if v == 0 {
		return def
	}
	return v
}

// Open opens the state directory dir, creating it when absent, for the
// states and key groups of cfg.
func Open(dir string, cfg statestore.Config, o Options) (*Backend, error) {
	if cfg.MaxParallelism < 1 || cfg.MaxParallelism > 1<<15 {
		return nil, fmt.Errorf("wasmstream: max parallelism %d out of range 1..32768", cfg.MaxParallelism)
	}
	po, err := o.pebbleOptions()
	if err != nil {
		return nil, err
	}
	db, err := pebble.Open(dir, po)
	if err != nil {
		return nil, fmt.Errorf("wasmstream: opening state directory %s: %w", dir, err)
	}
	keys, bytes, err := checkMeta(db, dir, cfg)
	if err != nil {
		db.Close()
		return nil, err
	}
	timerCount, err := loadTimerCount(db, dir)
	if err != nil {
		db.Close()
		return nil, err
	}
	s, err := core.New(core.Options{
		Config:     cfg,
		Disk:       &disk{db: db, states: cfg.States},
		CacheBytes: orDefault(o.CacheBytes, DefaultCacheBytes),
		Keys:       keys,
		Bytes:      bytes,
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	b := &Backend{Store: s, db: db, dir: dir}
	b.timers.init(cfg.MaxParallelism, &o)
	b.timers.count.Store(timerCount)
	if err := b.initSnapshots(); err != nil {
		db.Close()
		return nil, err
	}
	return b, nil
}

// Flush implements statestore.Backend: it commits the buffered state and
// timer writes and syncs them.
func (b *Backend) Flush() error {
	if err := b.flushTimers(); err != nil {
		return err
	}
	return b.Store.Flush()
}

// Close implements statestore.Backend: it flushes and closes the database.
func (b *Backend) Close() error {
	if b.closed {
		return nil
	}
	b.closed = true
	err := b.Flush()
	if cerr := b.db.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("wasmstream: closing state directory %s: %w", b.dir, cerr)
	}
	return err
}

// Checkpoint writes a consistent copy of the state, as of the last Flush,
// to the new directory dest (hard links where the filesystem allows).
func (b *Backend) Checkpoint(dest string) error {
	if err := b.db.Checkpoint(dest, pebble.WithFlushedWAL()); err != nil {
		return fmt.Errorf("wasmstream: state checkpoint to %s: %w", dest, err)
	}
	return nil
}

// ----- metadata

var metaPrefix = []byte{0xff, 0xff}

func metaKey(name string) []byte { return append(metaPrefix[:2:2], name...) }

func statsKey(st int) []byte {
	return binary.BigEndian.AppendUint16(metaKey("stats"), uint16(st))
}

func statesText(states []abi.StateDesc) string {
	var sb strings.Builder
	for i, d := range states {
		if i > 0 {
			sb.WriteByte('\n')
		}
		sb.WriteString(d.Name + ":" + string(d.Kind))
	}
	return sb.String()
}

func get(db *pebble.DB, key []byte) (string, bool, error) {
	v, c, err := db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	defer c.Close()
	return string(v), true, nil
}

// checkMeta checks the directory's format version, key groups and states,
// writes them into a new directory, and returns the stored statistics.
func checkMeta(db *pebble.DB, dir string, cfg statestore.Config) (keys, byts []int64, err error) {
	ver, ok, err := get(db, metaKey("format"))
	if err != nil {
		return nil, nil, fmt.Errorf("wasmstream: reading state directory %s: %w", dir, err)
	}
	if !ok {
		it, err := db.NewIter(nil)
		if err != nil {
			return nil, nil, err
		}
		nonEmpty := it.First()
		it.Close()
		if nonEmpty {
			return nil, nil, fmt.Errorf("wasmstream: state directory %s holds data but no wasmstream format version: it is not a wasmstream state directory; use an empty directory", dir)
		}
		b := db.NewBatch()
		b.Set(metaKey("format"), []byte(strconv.Itoa(FormatVersion)), nil)
		b.Set(metaKey("max_parallelism"), []byte(strconv.Itoa(cfg.MaxParallelism)), nil)
		b.Set(metaKey("states"), []byte(statesText(cfg.States)), nil)
		if err := b.Commit(pebble.Sync); err != nil {
			return nil, nil, fmt.Errorf("wasmstream: initialising state directory %s: %w", dir, err)
		}
		return nil, nil, nil
	}
	if v, err := strconv.Atoi(ver); err != nil || v != FormatVersion {
		return nil, nil, fmt.Errorf("wasmstream: state directory %s has format version %q; this wasmstream supports format version %d only: open it with the wasmstream that wrote it, or start from an empty directory", dir, ver, FormatVersion)
	}
	mp, _, err := get(db, metaKey("max_parallelism"))
	if err != nil {
		return nil, nil, err
	}
	if mp != strconv.Itoa(cfg.MaxParallelism) {
		return nil, nil, fmt.Errorf("wasmstream: state directory %s was written with max_parallelism %s, the job has %d: keys would land in other key groups; keep max_parallelism %s", dir, mp, cfg.MaxParallelism, mp)
	}
	stored, _, err := get(db, metaKey("states"))
	if err != nil {
		return nil, nil, err
	}
	var old []string
	if stored != "" {
		old = strings.Split(stored, "\n")
	}
	now := strings.Split(statesText(cfg.States), "\n")
	if len(cfg.States) == 0 {
		now = nil
	}
	for i, o := range old {
		if i >= len(now) {
			return nil, nil, fmt.Errorf("wasmstream: state directory %s holds state %d %q the plugin no longer declares: states may only be added at the end", dir, i, o)
		}
		if now[i] != o {
			return nil, nil, fmt.Errorf("wasmstream: state directory %s holds state %d as %q, the plugin declares %q: states may only be added at the end, never renamed, reordered or changed in kind", dir, i, o, now[i])
		}
	}
	if len(now) > len(old) {
		if err := db.Set(metaKey("states"), []byte(statesText(cfg.States)), pebble.Sync); err != nil {
			return nil, nil, err
		}
	}
	keys = make([]int64, len(cfg.States))
	byts = make([]int64, len(cfg.States))
	for i := range cfg.States {
		v, ok, err := get(db, statsKey(i))
		if err != nil {
			return nil, nil, err
		}
		if !ok {
			continue
		}
		k, n := binary.Uvarint([]byte(v))
		b, m := binary.Uvarint([]byte(v)[max(n, 0):])
		if n <= 0 || m <= 0 {
			return nil, nil, fmt.Errorf("wasmstream: state directory %s: statistics of state %d are damaged", dir, i)
		}
		keys[i], byts[i] = int64(k), int64(b)
	}
	return keys, byts, nil
}

// ----- keys

const indexState = 0xffff

func appendKey(dst []byte, kg uint16, st int, key []byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, kg)
	dst = binary.BigEndian.AppendUint16(dst, uint16(st))
	dst = binary.AppendUvarint(dst, uint64(len(key)))
	return append(dst, key...)
}

// indexKey appends the expiry index key of a cell.
func indexKey(dst []byte, kg uint16, d int, exp int64, st int, key, suffix []byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, kg)
	dst = binary.BigEndian.AppendUint16(dst, indexState)
	dst = append(dst, byte(d))
	dst = binary.BigEndian.AppendUint64(dst, uint64(exp)^(1<<63))
	dst = binary.BigEndian.AppendUint16(dst, uint16(st))
	dst = binary.AppendUvarint(dst, uint64(len(key)))
	dst = append(dst, key...)
	return append(dst, suffix...)
}

// prefixEnd returns the smallest key after every key starting with p.
func prefixEnd(p []byte) []byte {
	end := bytes.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil
}

// ----- core.Disk

type disk struct {
	db     *pebble.DB
	states []abi.StateDesc
	// saved is the statistics SaveStats last wrote: unchanged ones are
	// not written again, so an idle Flush adds nothing to the memtable
	// (and a snapshot of an idle backend no table).
	saved []byte
}

func (d *disk) Load(kg uint16, st int, key []byte, fn func(suffix, raw []byte) error) error {
	k := appendKey(nil, kg, st, key)
	if d.states[st].Kind == abi.KindValue {
		v, c, err := d.db.Get(k)
		if errors.Is(err, pebble.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		err = fn(nil, v)
		c.Close()
		return err
	}
	it, err := d.db.NewIter(&pebble.IterOptions{LowerBound: k, UpperBound: prefixEnd(k)})
	if err != nil {
		return err
	}
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return err
		}
		if err := fn(it.Key()[len(k):], v); err != nil {
			it.Close()
			return err
		}
	}
	return it.Close()
}

func (d *disk) ScanExpired(kg uint16, dom int, now int64, fn func(exp int64, st int, key, suffix []byte) bool) (int64, error) {
	lo := binary.BigEndian.AppendUint16(nil, kg)
	lo = binary.BigEndian.AppendUint16(lo, indexState)
	lo = append(lo, byte(dom))
	hi := binary.BigEndian.AppendUint64(bytes.Clone(lo), uint64(now)^(1<<63)+1)
	if now == math.MaxInt64 {
		hi = prefixEnd(lo)
	}
	it, err := d.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: prefixEnd(lo)})
	if err != nil {
		return 0, err
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		if bytes.Compare(k, hi) >= 0 {
			rest := k[len(lo):]
			return int64(binary.BigEndian.Uint64(rest) ^ (1 << 63)), nil
		}
		rest := k[len(lo):]
		if len(rest) < 11 {
			return 0, fmt.Errorf("wasmstream: expiry index key %x is damaged", k)
		}
		exp := int64(binary.BigEndian.Uint64(rest) ^ (1 << 63))
		st := int(binary.BigEndian.Uint16(rest[8:]))
		klen, n := binary.Uvarint(rest[10:])
		if n <= 0 || uint64(len(rest)-10-n) < klen {
			return 0, fmt.Errorf("wasmstream: expiry index key %x is damaged", k)
		}
		key := rest[10+n : 10+n+int(klen)]
		suffix := rest[10+n+int(klen):]
		if !fn(exp, st, key, suffix) {
			return exp, nil
		}
	}
	return math.MaxInt64, it.Error()
}

func (d *disk) NewBatch() core.Batch { return &batch{b: d.db.NewBatch()} }

func (d *disk) SaveStats(keys, byts []int64) error {
	var all []byte
	for i := range keys {
		all = binary.AppendUvarint(all, uint64(max(keys[i], 0)))
		all = binary.AppendUvarint(all, uint64(max(byts[i], 0)))
	}
	if d.saved != nil && bytes.Equal(all, d.saved) {
		// Only sync what was committed before.
		return d.db.LogData(nil, pebble.Sync)
	}
	b := d.db.NewBatch()
	for i := range keys {
		v := binary.AppendUvarint(nil, uint64(max(keys[i], 0)))
		v = binary.AppendUvarint(v, uint64(max(byts[i], 0)))
		b.Set(statsKey(i), v, nil)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return err
	}
	d.saved = all
	return nil
}

type batch struct {
	b   *pebble.Batch
	key []byte
}

func (b *batch) Set(kg uint16, st int, key, suffix, raw []byte) {
	b.key = append(appendKey(b.key[:0], kg, st, key), suffix...)
	b.b.Set(b.key, raw, nil)
}

func (b *batch) Delete(kg uint16, st int, key, suffix []byte) {
	b.key = append(appendKey(b.key[:0], kg, st, key), suffix...)
	b.b.Delete(b.key, nil)
}

func (b *batch) SetIndex(kg uint16, d int, exp int64, st int, key, suffix []byte) {
	b.key = indexKey(b.key[:0], kg, d, exp, st, key, suffix)
	b.b.Set(b.key, nil, nil)
}

func (b *batch) DeleteIndex(kg uint16, d int, exp int64, st int, key, suffix []byte) {
	b.key = indexKey(b.key[:0], kg, d, exp, st, key, suffix)
	b.b.Delete(b.key, nil)
}

func (b *batch) Commit() error {
	defer b.b.Close()
	if b.b.Empty() {
		return nil
	}
	return b.b.Commit(pebble.NoSync)
}
