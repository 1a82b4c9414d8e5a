package main

import (
	"strings"
	"testing"

	"github.com/wasmstream/wasmstream/plugins/go/wasmstreamtest"
)

func view(h *wasmstreamtest.Harness, user, da string) {
	h.Process([]byte(user), []byte(`{"user_no":`+user+`,"da_id":`+da+`,"log_time":1735689600000}`))
}

func TestCapEmitsOnceAtCap(t *testing.T) {
	h := wasmstreamtest.New(t, map[string]string{"cap": "3"})
	for range 5 {
		view(h, "123", "45")
	}
	view(h, "123", "46")
	view(h, "124", "45")

	got := h.Output("capped")
	if len(got) != 1 {
		t.Fatalf("capped = %+v, want exactly one record", got)
	}
	if got[0].Key != "123.45" || got[0].Value != `{"user_no":123,"da_id":45,"count":3}` || got[0].Seq != 3 {
		t.Errorf("capped record = %+v", got[0])
	}
	if n := len(h.Output("main")); n != 0 {
		t.Errorf("%d records on the main output, want none", n)
	}
	counts := wasmstreamtest.Map(h, views, "123")
	if counts[45] != 5 || counts[46] != 1 || len(counts) != 2 {
		t.Errorf("views of user 123 = %v, want map[45:5 46:1]", counts)
	}
}

func TestDefaultCap(t *testing.T) {
	h := wasmstreamtest.New(t, nil)
	for range 3 {
		view(h, "7", "1")
	}
	if got := h.Output("capped"); len(got) != 1 || got[0].Value != `{"user_no":7,"da_id":1,"count":3}` {
		t.Fatalf("capped = %+v", got)
	}
}

func TestBadDaIDIsRejected(t *testing.T) {
	h := wasmstreamtest.New(t, nil)
	h.Process([]byte("7"), []byte(`{"user_no":7,"da_id":"x"}`))
	h.Process([]byte("7"), []byte(`{"user_no":7}`))
	h.Process([]byte("7"), []byte(`{"user_no":7,"da_id":"12"}`)) // decimal strings are accepted
	rej := h.Rejected()
	if len(rej) != 2 {
		t.Fatalf("rejected = %+v, want 2", rej)
	}
	if !strings.Contains(rej[0].Reason, "da_id is string") || !strings.Contains(rej[1].Reason, "da_id is absent") {
		t.Errorf("reasons = %q, %q", rej[0].Reason, rej[1].Reason)
	}
	if c := wasmstreamtest.Map(h, views, "7"); c[12] != 1 || len(c) != 1 {
		t.Errorf("views = %v, want map[12:1]", c)
	}
}

func TestBadCapFailsOpen(t *testing.T) {
	for _, cfg := range []string{"0", "three"} {
		h, err := wasmstreamtest.Open(map[string]string{"cap": cfg})
		if err == nil {
			h.Close()
			t.Fatalf("cap=%s: Open succeeded, want an error", cfg)
		}
		if !strings.Contains(err.Error(), "cap=") {
			t.Errorf("cap=%s: error %q does not name the config key", cfg, err)
		}
	}
}
