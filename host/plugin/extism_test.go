package plugin

import (
	"errors"
	"strings"
	"testing"

	"github.com/wasmstream/wasmstream/abi"
)

func TestExtism(t *testing.T) {
	p := shared(t, "extism")
	h := open(t, p, map[string]string{"greeting": "hi there"})
	if !h.logged(abi.LogInfo, `open: greeting="hi there" found=true`) {
		t.Fatalf("open log missing: %+v", h.logs)
	}
	c := h.mustRun(events("k", "config greeting", "config nope", "incr", "incr", "opens", "input", "log careful", "setvar abc", "getvar")...)
	equal(t, c.values(), []string{"config:hi there", "config:absent", "n:1", "n:2", "opens:1", "input:0", "var:abc"})
	if !h.logged(abi.LogWarn, "careful") {
		t.Errorf("warn log missing: %+v", h.logs)
	}
	// Variables persist across calls; the arena does not need to.
	c = h.mustRun(events("k", "incr", "getvar", "delvar", "getvar")...)
	equal(t, c.values(), []string{"n:3", "var:abc", "var:"})

	_, err := h.run(events("k", "incr", "error it broke")...)
	var ce *CallError
	if !errors.As(err, &ce) || ce.Message != "it broke" || ce.Err != nil {
		t.Fatalf("error_set: %v", err)
	}
	if !strings.Contains(err.Error(), `plugin "extism": ws_process failed: it broke`) {
		t.Errorf("error_set: %v", err)
	}

	_, err = h.run(events("k", "http")...)
	if err == nil || !strings.Contains(err.Error(), "http_request: outbound HTTP is not allowed for wasmstream plugins") {
		t.Fatalf("http: %v", err)
	}
	// Another instance is unaffected.
	h2 := open(t, p, nil)
	equal(t, h2.mustRun(events("k", "incr", "config greeting")...).values(), []string{"n:1", "config:absent"})
}
