package job

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCheckpointConfig(t *testing.T) {
	const base = `name: j
source: {stream: S, subjects: ["in.>"]}
key: {field: k}
plugin: {path: p.wasm}
`
	c, err := parse([]byte(base+`checkpoint: {interval: 2s}
sinks:
  - {output: main, type: jetstream, subject: out.a, mode: exactly_once}
  - {output: main, type: kv, bucket: results, create: true, mode: exactly_once}
  - {output: main, type: jetstream, subject: out.b}
`), "/jobs")
	if err != nil {
		t.Fatal(err)
	}
	cp := c.Checkpoint
	if cp.Interval.D() != 2*time.Second || cp.Timeout.D() != DefaultCheckpointTimeout || cp.Retain != DefaultCheckpointRetain ||
		cp.Storage.Type != StorageDir || cp.Storage.ResolvedPath(c.Dir) != filepath.Join("/jobs", DefaultCheckpointPath) {
		t.Errorf("checkpoint defaults: %+v", cp)
	}
	if !c.Sinks[0].ExactlyOnce() || !c.Sinks[1].ExactlyOnce() || c.Sinks[2].ExactlyOnce() || c.Sinks[2].Mode != AtLeastOnce {
		t.Errorf("sink modes %+v", c.Sinks)
	}
	if got := c.Sinks[1].Name(); got != "main.kv.results" {
		t.Errorf("kv sink name %q", got)
	}

	for _, tc := range []struct{ yaml, want string }{
		{"sinks: [{output: main, type: jetstream, subject: o, mode: exactly_once}]", "sinks[0].mode: exactly_once publishes each epoch's records when its checkpoint completes: set checkpoint.interval"},
		{"sinks: [{output: main, type: stdout, mode: exactly_once}]", "sinks[0].mode: a stdout sink cannot take back lines"},
		{"sinks: [{output: main, type: jetstream, subject: o, mode: twice}]", `sinks[0].mode: "twice": use at_least_once or exactly_once`},
		{"sinks: [{output: main, type: kv}]", "sinks[0].bucket: missing"},
		{"sinks: [{output: main, type: kv, bucket: b, subject: x}]", "sinks[0].subject: a kv sink has no subject"},
		{"sinks: [{output: main, type: jetstream, subject: o}, {output: main, type: jetstream, subject: o}]", "sinks[1]: sends output \"main\" to the same place as sinks[0]"},
		{"checkpoint: {interval: 2s, storage: {type: object_store}}", "checkpoint.storage.bucket: missing"},
		{"checkpoint: {interval: 2s, storage: {type: s3}}", `checkpoint.storage.type: "s3": use dir or object_store`},
		{"checkpoint: {interval: 1ms}", "checkpoint.interval: 1ms is too short"},
		{"checkpoint: {interval: 2s, storage: {type: object_store, bucket: b, path: x}}", "checkpoint.storage.path: only applies to type: dir"},
		{"checkpoint: {intervall: 2s}", `unknown key "intervall" in checkpoint`},
	} {
		_, err := parse([]byte(base+tc.yaml+"\n"), "/jobs")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s:\n got %v\nwant %q", tc.yaml, err, tc.want)
		}
	}
}
