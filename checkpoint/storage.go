package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Storage holds named objects: the files of checkpoints. Names are
// "/"-separated paths of non-empty segments other than "." and "..". An
// object is written atomically: readers see it whole or not at all. A
// Storage is safe for concurrent use.
type Storage interface {
	// Put stores the content of r as name, replacing an object of that
	// name. When it fails, the earlier object, if any, is left.
	Put(ctx context.Context, name string, r io.Reader) (ObjectInfo, error)
	// Get opens the object name. It fails with an error wrapping
	// ErrNotFound when there is none.
	Get(ctx context.Context, name string) (io.ReadCloser, error)
	// Stat returns what the storage knows of the object name, or an error
	// wrapping ErrNotFound.
	Stat(ctx context.Context, name string) (ObjectInfo, error)
	// List returns the objects whose names start with prefix, sorted by
	// name.
	List(ctx context.Context, prefix string) ([]ObjectInfo, error)
	// Delete removes the object name; an absent object is not an error.
	Delete(ctx context.Context, name string) error
	// String describes the storage for messages ("dir /var/lib/…",
	// "object store bucket …").
	String() string
}

// ObjectInfo describes a stored object.
type ObjectInfo struct {
	Name    string
	Size    int64
	ModTime time.Time
}

// ErrNotFound is wrapped by the errors of Storage.Get and Storage.Stat for
// an object that does not exist.
var ErrNotFound = errors.New("checkpoint: object not found")

// checkName checks an object name.
func checkName(name string) error {
	if name == "" {
		return fmt.Errorf("checkpoint: empty object name")
	}
	for _, seg := range strings.Split(name, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("checkpoint: object name %q: segments between \"/\" must be non-empty and not \".\" or \"..\"", name)
		}
	}
	return nil
}
