package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// ObjectStorage is a Storage in a NATS JetStream Object Store bucket. The
// bucket writes an object's chunks before its metadata, so a reader sees an
// object whole or not at all, and checks its SHA-256 digest on read.
type ObjectStorage struct {
	obs    jetstream.ObjectStore
	bucket string
}

var _ Storage = (*ObjectStorage)(nil)

// NewObjectStorage returns the storage in the bucket obs.
// bucket names it in messages.
func NewObjectStorage(obs jetstream.ObjectStore, bucket string) *ObjectStorage {
	return &ObjectStorage{obs: obs, bucket: bucket}
}

// OpenObjectStorage returns the storage in the Object Store bucket named
// bucket, creating it (file storage, one replica) when it does not exist.
func OpenObjectStorage(ctx context.Context, js jetstream.JetStream, bucket string) (*ObjectStorage, error) {
	obs, err := js.ObjectStore(ctx, bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		obs, err = js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{
			Bucket:      bucket,
			Description: "wasmstream checkpoints",
			Storage:     jetstream.FileStorage,
		})
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoint: object store bucket %q: %w", bucket, err)
	}
	return &ObjectStorage{obs: obs, bucket: bucket}, nil
}

func (o *ObjectStorage) String() string { return "object store bucket " + o.bucket }

// Put implements Storage.
func (o *ObjectStorage) Put(ctx context.Context, name string, r io.Reader) (ObjectInfo, error) {
	if err := checkName(name); err != nil {
		return ObjectInfo{}, err
	}
	info, err := o.obs.Put(ctx, jetstream.ObjectMeta{Name: name}, r)
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("checkpoint: writing %s to %s: %w", name, o, err)
	}
	return ObjectInfo{Name: name, Size: int64(info.Size), ModTime: info.ModTime}, nil
}

// Get implements Storage. Reading the object to its end fails when its
// content does not match the digest stored with it.
func (o *ObjectStorage) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	res, err := o.obs.Get(ctx, name)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, fmt.Errorf("%w: %s in %s", ErrNotFound, name, o)
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoint: reading %s from %s: %w", name, o, err)
	}
	return res, nil
}

// Stat implements Storage.
func (o *ObjectStorage) Stat(ctx context.Context, name string) (ObjectInfo, error) {
	if err := checkName(name); err != nil {
		return ObjectInfo{}, err
	}
	info, err := o.obs.GetInfo(ctx, name)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return ObjectInfo{}, fmt.Errorf("%w: %s in %s", ErrNotFound, name, o)
	}
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("checkpoint: %s: %w", o, err)
	}
	return ObjectInfo{Name: name, Size: int64(info.Size), ModTime: info.ModTime}, nil
}

// List implements Storage.
func (o *ObjectStorage) List(ctx context.Context, prefix string) ([]ObjectInfo, error) {
	infos, err := o.obs.List(ctx)
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoint: listing %s: %w", o, err)
	}
	var out []ObjectInfo
	for _, in := range infos {
		if in.Deleted || !strings.HasPrefix(in.Name, prefix) {
			continue
		}
		out = append(out, ObjectInfo{Name: in.Name, Size: int64(in.Size), ModTime: in.ModTime})
	}
	slices.SortFunc(out, func(a, b ObjectInfo) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Delete implements Storage.
func (o *ObjectStorage) Delete(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	err := o.obs.Delete(ctx, name)
	if err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
		return fmt.Errorf("checkpoint: deleting %s from %s: %w", name, o, err)
	}
	return nil
}
