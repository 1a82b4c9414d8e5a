package engine

import (
	"regexp"
	"testing"
)

func TestKVKey(t *testing.T) {
	valid := regexp.MustCompile(`^[-/_=.a-zA-Z0-9]+$`)
	seen := map[string]string{}
	for in, want := range map[string]string{
		"":          "=",
		"user-42":   "user-42",
		"a.b":       "a.b",
		".a":        "=2Ea",
		"a.":        "a=2E",
		"a..b":      "a.=2Eb",
		"a b":       "a=20b",
		"x=y":       "x=3Dy",
		"ü":         "=C3=BC",
		"dir/file_": "dir/file_",
		"*>":        "=2A=3E",
	} {
		got := KVKey([]byte(in))
		if got != want {
			t.Errorf("KVKey(%q) = %q, want %q", in, got, want)
		}
		if !valid.MatchString(got) {
			t.Errorf("KVKey(%q) = %q is not a valid KV key", in, got)
		}
		if other, dup := seen[got]; dup {
			t.Errorf("KVKey(%q) and KVKey(%q) are both %q", in, other, got)
		}
		seen[got] = in
	}
}

func TestStagedRecords(t *testing.T) {
	var s stageBuf
	s.add(nil, []byte("v0"))
	s.add([]byte("k1"), nil)
	s.add([]byte(""), []byte("v2"))
	recs, err := decodeStaged(s.data)
	if err != nil || len(recs) != 3 || s.n != 3 {
		t.Fatalf("decoded %d records (%v), staged %d", len(recs), err, s.n)
	}
	if recs[0].key != nil || string(recs[0].value) != "v0" || string(recs[1].key) != "k1" || len(recs[1].value) != 0 ||
		recs[2].key == nil || len(recs[2].key) != 0 || string(recs[2].value) != "v2" {
		t.Errorf("records %+v", recs)
	}
	if _, err := decodeStaged(s.data[:len(s.data)-1]); err == nil {
		t.Error("a truncated staged-records file decodes")
	}
}
