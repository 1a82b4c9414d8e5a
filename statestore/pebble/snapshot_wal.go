package pebble

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/cockroachdb/pebble/v2/objstorage"
	"github.com/cockroachdb/pebble/v2/record"
)

// The write-ahead log in a snapshot
//
// Pebble's checkpoint copies the write-ahead log files whole. Pebble
// recycles log files, so a copy may carry up to a memtable of stale bytes
// after its valid records, and it may copy logs whose memtables are already
// flushed. Write flushes the memtable right before the checkpoint, while
// every key group's writes are held, so the valid records of the newest
// log hold no writes; trimWALs cuts each log copy after its last valid record and
// empties the logs older than the newest one when Pebble reports a single
// live log. What remains is what Pebble replays when it opens the snapshot.

// walRecords reads the valid records of the log file f, whose log number is
// num, and returns the offset after the last one and how many write
// operations they hold.
func walRecords(f io.Reader, num uint64) (end int64, ops int, err error) {
	var meta objstorage.ObjectMetadata
	setUint(&meta.DiskFileNum, num)
	r := record.NewReader(f, meta.DiskFileNum)
	for {
		rr, err := r.Next()
		if err != nil {
			// io.EOF, or the stale tail of a recycled log: the end of
			// the valid records, as Pebble's replay sees it.
			return end, ops, nil
		}
		data, err := io.ReadAll(rr)
		if err != nil {
			return end, ops, nil
		}
		if len(data) >= 12 {
			// A batch: sequence number (8 bytes), count (4 bytes), ops.
			ops += int(binary.LittleEndian.Uint32(data[8:12]))
		}
		end = r.Offset()
	}
}

func setUint[T ~uint64](p *T, v uint64) { *p = T(v) }

// walNumber returns the log number of a log file name, or false.
func walNumber(name string) (uint64, bool) {
	s, ok := strings.CutSuffix(name, ".log")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil
}

// trimWALs trims the log files of the snapshot directory dir (see above).
// oneLive tells that Pebble had a single live log at the checkpoint.
func trimWALs(dir string, oneLive bool) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var nums []uint64
	for _, e := range entries {
		if n, ok := walNumber(e.Name()); ok {
			nums = append(nums, n)
		}
	}
	slices.Sort(nums)
	for i, n := range nums {
		path := filepath.Join(dir, fmt.Sprintf("%06d.log", n))
		if _, err := os.Stat(path); err != nil {
			continue // another spelling of the number: leave it whole
		}
		if oneLive && i < len(nums)-1 {
			if err := os.Remove(path); err != nil {
				return err
			}
			continue
		}
		if err := trimWAL(path, n); err != nil {
			return fmt.Errorf("trimming the log %s: %w", path, err)
		}
	}
	return nil
}

func trimWAL(path string, num uint64) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	end, _, err := walRecords(f, num)
	if err == nil {
		err = f.Truncate(end)
	}
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}
