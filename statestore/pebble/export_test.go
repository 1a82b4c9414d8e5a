package pebble

import "context"

// CompactAll flushes the memtables and compacts every key into the bottom
// level, so that the directory holds what the data needs and no more.
func (b *Backend) CompactAll() error {
	return b.db.Compact(context.Background(), []byte{0}, []byte{0xff, 0xff, 0xff}, true)
}
