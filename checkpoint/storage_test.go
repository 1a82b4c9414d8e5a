package checkpoint_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/wasmstream/wasmstream/checkpoint"
)

// TestStorage runs the same suite against both storages.
func TestStorage(t *testing.T) {
	for name, open := range storages(t) {
		t.Run(name, func(t *testing.T) { storageSuite(t, open(t)) })
	}
}

type failingReader struct{ n int }

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, errors.New("source broke")
	}
	n := min(len(p), f.n)
	for i := range n {
		p[i] = 'x'
	}
	f.n -= n
	return n, nil
}

func storageSuite(t *testing.T, st checkpoint.Storage) {
	ctx := context.Background()
	get := func(name string) string {
		t.Helper()
		rc, err := st.Get(ctx, name)
		must(t, err)
		defer rc.Close()
		data, err := io.ReadAll(rc)
		must(t, err)
		return string(data)
	}

	// Absent objects.
	if _, err := st.Get(ctx, "job/chk-1/_metadata"); !errors.Is(err, checkpoint.ErrNotFound) {
		t.Fatalf("Get of an absent object: %v, want ErrNotFound", err)
	}
	if _, err := st.Stat(ctx, "job/x"); !errors.Is(err, checkpoint.ErrNotFound) {
		t.Fatalf("Stat of an absent object: %v, want ErrNotFound", err)
	}
	if l, err := st.List(ctx, "job/"); err != nil || len(l) != 0 {
		t.Fatalf("List of an empty storage: %v %v", l, err)
	}
	must(t, st.Delete(ctx, "job/nothing"))

	// Put, Get, Stat, overwrite.
	info, err := st.Put(ctx, "job/chk-1/state/a", strings.NewReader("hello"))
	must(t, err)
	if info.Size != 5 || info.Name != "job/chk-1/state/a" {
		t.Fatalf("Put info %+v", info)
	}
	if got := get("job/chk-1/state/a"); got != "hello" {
		t.Fatalf("Get = %q", got)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB, several chunks
	_, err = st.Put(ctx, "job/shared/big.sst", bytes.NewReader(big))
	must(t, err)
	if got := get("job/shared/big.sst"); got != string(big) {
		t.Fatalf("big object changed: %d bytes back", len(got))
	}
	if info, err := st.Stat(ctx, "job/shared/big.sst"); err != nil || info.Size != int64(len(big)) {
		t.Fatalf("Stat = %+v %v", info, err)
	}
	_, err = st.Put(ctx, "job/chk-1/state/a", strings.NewReader("replaced"))
	must(t, err)
	if got := get("job/chk-1/state/a"); got != "replaced" {
		t.Fatalf("Get after overwrite = %q", got)
	}
	_, err = st.Put(ctx, "job/empty", strings.NewReader(""))
	must(t, err)
	if got := get("job/empty"); got != "" {
		t.Fatalf("empty object = %q", got)
	}

	// A Put that fails leaves the earlier object as it was, and no new one.
	if _, err := st.Put(ctx, "job/chk-1/state/a", &failingReader{n: 300 << 10}); err == nil {
		t.Fatal("Put from a failing reader succeeded")
	}
	if got := get("job/chk-1/state/a"); got != "replaced" {
		t.Fatalf("object after a failed overwrite = %q", got)
	}
	if _, err := st.Put(ctx, "job/chk-2/state/b", &failingReader{n: 10}); err == nil {
		t.Fatal("Put from a failing reader succeeded")
	}
	if _, err := st.Stat(ctx, "job/chk-2/state/b"); !errors.Is(err, checkpoint.ErrNotFound) {
		t.Fatalf("a failed Put left an object: %v", err)
	}

	// List by prefix, sorted.
	_, err = st.Put(ctx, "other/chk-1/_metadata", strings.NewReader("{}"))
	must(t, err)
	names := func(prefix string) string {
		t.Helper()
		l, err := st.List(ctx, prefix)
		must(t, err)
		var out []string
		for _, o := range l {
			out = append(out, o.Name)
		}
		return strings.Join(out, " ")
	}
	if got, want := names("job/"), "job/chk-1/state/a job/empty job/shared/big.sst"; got != want {
		t.Fatalf("List(job/) = %q, want %q", got, want)
	}
	if got, want := names("job/chk-"), "job/chk-1/state/a"; got != want {
		t.Fatalf("List(job/chk-) = %q, want %q", got, want)
	}
	if got, want := names("job/shared/"), "job/shared/big.sst"; got != want {
		t.Fatalf("List(job/shared/) = %q, want %q", got, want)
	}

	// Delete.
	must(t, st.Delete(ctx, "job/chk-1/state/a"))
	if _, err := st.Stat(ctx, "job/chk-1/state/a"); !errors.Is(err, checkpoint.ErrNotFound) {
		t.Fatalf("Stat after Delete: %v", err)
	}
	if got, want := names("job/"), "job/empty job/shared/big.sst"; got != want {
		t.Fatalf("List after Delete = %q, want %q", got, want)
	}

	// Bad names are refused.
	for _, bad := range []string{"", "/abs", "a//b", "a/../b", "a/./b", "trailing/"} {
		if _, err := st.Put(ctx, bad, strings.NewReader("x")); err == nil {
			t.Errorf("Put(%q) accepted", bad)
		}
	}
}
