package job

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const minimal = `
name: freqcap
source:
  stream: FREQCAP
  subjects: ["views.>"]
  create: true
key:
  field: user_no
plugin:
  path: plugin
  config:
    cap: 3
    ratio: 0.5
    strict: true
    label: hello
    empty: ~
sinks:
  - output: capped
    type: jetstream
    subject: freqcap.capped
`

func TestParseDefaults(t *testing.T) {
	c, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if c.Parallelism != 1 || c.MaxParallelism != 128 || c.Batch.Size != 256 || c.Batch.Linger.D() != 5*time.Millisecond {
		t.Errorf("defaults: %+v", c)
	}
	if c.State.Backend != "memory" || c.DeadLetter.Subject != "freqcap.dlq" || c.Source.Start != "first" {
		t.Errorf("defaults: %+v", c)
	}
	want := map[string]string{"cap": "3", "ratio": "0.5", "strict": "true", "label": "hello", "empty": ""}
	for k, v := range want {
		if c.Plugin.Config[k] != v {
			t.Errorf("plugin.config.%s = %q, want %q", k, c.Plugin.Config[k], v)
		}
	}
	if p, n := c.Source.StartAt(); p != StartFirst || n != 0 {
		t.Errorf("StartAt = %v %d", p, n)
	}
}

func TestParseFull(t *testing.T) {
	c, err := Parse([]byte(`
name: j1
source: {stream: S, subjects: [a.b, "c.*"], start: 42}
key: {fields: [a, b.c], separator: "/"}
timestamp: log_time
plugin: {path: /abs/p.wasm, memory_limit_mb: 64, call_timeout: 2s, fields: {da_id: ad.id}}
parallelism: 4
max_parallelism: 256
batch: {size: 1000, linger: 20ms}
state: {backend: memory}
sinks:
  - {output: main, type: stdout}
dead_letter: {subject: j1.bad, create: true}
`))
	if err != nil {
		t.Fatal(err)
	}
	if p, n := c.Source.StartAt(); p != StartSequence || n != 42 {
		t.Errorf("StartAt = %v %d", p, n)
	}
	if c.Plugin.CallTimeout.D() != 2*time.Second || c.Batch.Linger.D() != 20*time.Millisecond {
		t.Errorf("durations: %v %v", c.Plugin.CallTimeout, c.Batch.Linger)
	}
	if c.FieldPath("da_id", "") != "ad.id" || c.FieldPath("x", "y.z") != "y.z" || c.FieldPath("x", "") != "x" {
		t.Error("FieldPath")
	}
	if err := c.CheckFieldOverrides([]string{"da_id"}); err != nil {
		t.Error(err)
	}
	if err := c.CheckFieldOverrides([]string{"other"}); err == nil || !strings.Contains(err.Error(), "plugin.fields.da_id") {
		t.Errorf("CheckFieldOverrides: %v", err)
	}
	if c.Plugin.ResolvedPath(c.Dir) != "/abs/p.wasm" {
		t.Error(c.Plugin.ResolvedPath(c.Dir))
	}
}

func TestLoadResolvesPluginPath(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "job.yaml")
	if err := os.WriteFile(p, []byte(minimal), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Plugin.ResolvedPath(c.Dir); got != filepath.Join(dir, "plugin") {
		t.Errorf("plugin path %q", got)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Error("Load of a missing file: no error")
	}
}

func TestPebbleState(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "job.yaml")
	if err := os.WriteFile(p, []byte(minimal+"state: {backend: pebble, dir: state/fc, bloom_bits: -1, compression: zstd}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	want := State{Backend: BackendPebble, Dir: "state/fc", BlockCacheMB: DefaultBlockCacheMB, MemTableMB: DefaultMemTableMB,
		BloomBits: -1, Compression: "zstd", CacheMB: DefaultStateCacheMB}
	if c.State != want {
		t.Errorf("state %+v, want %+v", c.State, want)
	}
	if got := c.State.ResolvedDir(c.Dir); got != filepath.Join(dir, "state", "fc") {
		t.Errorf("state dir %q, want it relative to the config file", got)
	}
	c, err = Parse([]byte(minimal + "state: {backend: pebble, dir: /abs/s, block_cache_mb: 8, memtable_mb: 4, bloom_bits: 0, cache_mb: 32}\n"))
	if err != nil {
		t.Fatal(err)
	}
	want = State{Backend: BackendPebble, Dir: "/abs/s", BlockCacheMB: 8, MemTableMB: 4, BloomBits: DefaultBloomBits, Compression: DefaultCompression, CacheMB: 32}
	if c.State != want || c.State.ResolvedDir("/elsewhere") != "/abs/s" {
		t.Errorf("state %+v, want %+v", c.State, want)
	}
}

func TestParseErrors(t *testing.T) {
	base := func(repl ...string) string {
		return strings.NewReplacer(repl...).Replace(minimal)
	}
	tests := []struct {
		name, yaml string
		want       []string // substrings of the error
	}{
		{"unknown top key", minimal + "parralelism: 2\n", []string{`unknown key "parralelism"`, "line "}},
		{"unknown nested key", base("  create: true", "  create: true\n  strat: new"), []string{`unknown key "strat" in source`}},
		{"empty", "", []string{"empty"}},
		{"two docs", minimal + "---\nname: x\n", []string{"more than one YAML document"}},
		{"missing name", base("name: freqcap", ""), []string{"name: missing"}},
		{"bad name", base("name: freqcap", "name: a.b"), []string{"name: \"a.b\""}},
		{"missing stream", base("  stream: FREQCAP", ""), []string{"source.stream: missing"}},
		{"create without subjects", base(`  subjects: ["views.>"]`, ""), []string{"source.subjects: missing"}},
		{"bad start", base("  create: true", "  create: true\n  start: last"), []string{"source.start", "first, new"}},
		{"bad filter", base(`"views.>"`, `"views.>.x"`), []string{"source.subjects[0]", "last token"}},
		{"no key", base("  field: user_no", ""), []string{"key: missing"}},
		{"two keys", base("  field: user_no", "  field: user_no\n  header: X"), []string{"key: set exactly one"}},
		{"bad key path", base("field: user_no", "field: a..b"), []string{"key.field", "empty segment"}},
		{"separator without fields", base("  field: user_no", "  field: user_no\n  separator: x"), []string{"key.separator"}},
		{"negative token", base("  field: user_no", "  subject_token: -1"), []string{"key.subject_token"}},
		{"no plugin path", base("  path: plugin", ""), []string{"plugin.path: missing"}},
		{"config list", base("    cap: 3", "    cap: [3]"), []string{"cap", "scalars"}},
		{"parallelism 0 explicit max", minimal + "parallelism: 200\n", []string{"parallelism: must be 1..max_parallelism (128), got 200"}},
		{"negative parallelism", minimal + "parallelism: -1\n", []string{"parallelism: must be 1..max_parallelism (128), got -1"}},
		{"max parallelism", minimal + "max_parallelism: 40000\n", []string{"max_parallelism: must be 1..32768, got 40000"}},
		{"batch size", minimal + "batch: {size: -3}\n", []string{"batch.size"}},
		{"linger unitless", minimal + "batch: {linger: 5}\n", []string{"no unit", "5ms"}},
		{"linger bad", minimal + "batch: {linger: soon}\n", []string{"not a duration"}},
		{"pebble without dir", minimal + "state: {backend: pebble}\n", []string{"state.dir: missing", "relative to the config file"}},
		{"pebble compression", minimal + "state: {backend: pebble, dir: s, compression: lz4}\n", []string{"state.compression", "lz4", "zstd, snappy or none"}},
		{"pebble bloom", minimal + "state: {backend: pebble, dir: s, bloom_bits: -2}\n", []string{"state.bloom_bits", "-1 to turn bloom filters off"}},
		{"pebble memtable", minimal + "state: {backend: pebble, dir: s, memtable_mb: 5000}\n", []string{"state.memtable_mb: must be 1..4095"}},
		{"pebble cache", minimal + "state: {backend: pebble, dir: s, cache_mb: -1}\n", []string{"state.cache_mb"}},
		{"pebble block cache", minimal + "state: {backend: pebble, dir: s, block_cache_mb: -1}\n", []string{"state.block_cache_mb"}},
		{"memory with dir", minimal + "state: {dir: s}\n", []string{"state.dir: only applies to backend: pebble"}},
		{"unknown state key", minimal + "state: {backend: pebble, dir: s, cache: 3}\n", []string{`unknown key "cache" in state`, "cache_mb"}},
		{"bad backend", minimal + "state: {backend: redis}\n", []string{"state.backend", "redis", "memory or pebble"}},
		{"sink type", base("type: jetstream", "type: kafka"), []string{"sinks[0].type", "kafka"}},
		{"sink subject missing", base("    subject: freqcap.capped", ""), []string{"sinks[0].subject: missing"}},
		{"sink wildcard", base("subject: freqcap.capped", "subject: freqcap.*"), []string{"sinks[0].subject", "wildcard"}},
		{"sink loops", base("subject: freqcap.capped", "subject: views.capped"), []string{"sinks[0].subject", "consume its own output"}},
		{"sink output missing", base("  - output: capped", "  - output: \"\""), []string{"sinks[0].output: missing"}},
		{"stdout subject", base("type: jetstream", "type: stdout"), []string{"sinks[0].subject", "stdout"}},
		{"dlq loops", minimal + "dead_letter: {subject: views.dlq}\n", []string{"dead_letter.subject", "consumed again"}},
		{"wrong type", minimal + "parallelism: many\n", []string{"parallelism", "many"}},
		{"event time two sources", minimal + "event_time: {field: t, header: T}\n", []string{"event_time: set one of field, header and source"}},
		{"event time source", minimal + "event_time: {source: ingest_time}\n", []string{"event_time.source", "publish_time"}},
		{"event time format", minimal + "event_time: {field: t, format: unix}\n", []string{"event_time.format", "epoch_ms, rfc3339 or auto"}},
		{"event time format publish", minimal + "event_time: {format: rfc3339}\n", []string{"event_time.format", "field or event_time.header only"}},
		{"event time bad path", minimal + "event_time: {field: a..b}\n", []string{"event_time.field", "empty segment"}},
		{"event time bad header", minimal + "event_time: {header: \"a b\"}\n", []string{"event_time.header"}},
		{"negative bound", minimal + "event_time: {max_out_of_orderness: -1s}\n", []string{"event_time.max_out_of_orderness: must not be negative"}},
		{"negative idle", minimal + "event_time: {idle_timeout: -1s}\n", []string{"event_time.idle_timeout: must not be negative"}},
		{"bound unitless", minimal + "event_time: {max_out_of_orderness: 500}\n", []string{"no unit", "500ms"}},
		{"unknown event time key", minimal + "event_time: {feild: t}\n", []string{`unknown key "feild" in event_time`, "field, header, source"}},
		{"timestamp and event time", minimal + "timestamp: t\nevent_time: {header: T}\n", []string{"timestamp: replaced by event_time", "event_time: {field: t, format: epoch_ms}"}},
		{"late policy", minimal + "late: {policy: keep}\n", []string{"late.policy", "side_output, process or drop"}},
		{"late loops", minimal + "late: {subject: views.late}\n", []string{"late.subject", "consumed again"}},
		{"late wildcard", minimal + "late: {subject: \"x.*\"}\n", []string{"late.subject", "wildcard"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml))
			if err == nil {
				t.Fatalf("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestEventTimeConfig(t *testing.T) {
	c, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if k, name, format := c.TimeSource(); k != EventTimeFromPublish || name != "" || format != "" {
		t.Errorf("default TimeSource = %v %q %q, want the publish time", k, name, format)
	}
	if c.EventTime.Source != TimeFromPublish || c.EventTime.MaxOutOfOrderness != 0 || c.EventTime.IdleTimeout != 0 {
		t.Errorf("default event_time %+v", c.EventTime)
	}
	if c.LatePolicy() != LateSideOutput || c.Late.Subject != "freqcap.late" || c.LateSubject() != "freqcap.late" {
		t.Errorf("default late %+v", c.Late)
	}

	c, err = Parse([]byte(minimal + `
event_time: {field: e.ts, format: rfc3339, max_out_of_orderness: 5s, idle_timeout: 1m}
late: {policy: drop, subject: freqcap.too-late, create: true}
`))
	if err != nil {
		t.Fatal(err)
	}
	if k, name, format := c.TimeSource(); k != EventTimeFromField || name != "e.ts" || format != FormatRFC3339 {
		t.Errorf("TimeSource = %v %q %q", k, name, format)
	}
	if c.EventTime.MaxOutOfOrderness.D() != 5*time.Second || c.EventTime.IdleTimeout.D() != time.Minute {
		t.Errorf("durations %+v", c.EventTime)
	}
	if c.LatePolicy() != LateDrop || c.LateSubject() != "freqcap.too-late" || !c.Late.Create {
		t.Errorf("late %+v", c.Late)
	}

	c, err = Parse([]byte(minimal + "event_time: {header: Event-Time}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if k, name, format := c.TimeSource(); k != EventTimeFromHeader || name != "Event-Time" || format != FormatAuto {
		t.Errorf("TimeSource = %v %q %q", k, name, format)
	}

	// The former timestamp key is event_time.field in epoch milliseconds.
	c, err = Parse([]byte(minimal + "timestamp: log_time\n"))
	if err != nil {
		t.Fatal(err)
	}
	if k, name, format := c.TimeSource(); k != EventTimeFromField || name != "log_time" || format != FormatEpochMs || c.Timestamp != "" {
		t.Errorf("legacy timestamp: TimeSource = %v %q %q, Timestamp %q", k, name, format, c.Timestamp)
	}
	// Set without ApplyDefaults, it still counts.
	c = &Config{Timestamp: "t"}
	if k, name, format := c.TimeSource(); k != EventTimeFromField || name != "t" || format != FormatEpochMs {
		t.Errorf("legacy timestamp without defaults: TimeSource = %v %q %q", k, name, format)
	}
}

func TestValidateWithoutDefaults(t *testing.T) {
	c := Config{Name: "x", Source: Source{Stream: "S", Start: "first"}, Key: Key{Field: "k"}, Plugin: Plugin{Path: "p"},
		MaxParallelism: 128, State: State{Backend: "memory"}, Batch: Batch{Size: 1, Linger: Duration(time.Millisecond)}}
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "parallelism: must be 1..max_parallelism (128), got 0") {
		t.Errorf("Validate: %v", err)
	}
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		t.Errorf("after defaults: %v", err)
	}
}

func TestCheckOutputs(t *testing.T) {
	c, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	warn, err := c.CheckOutputs([]string{"capped", "audit"})
	if err != nil {
		t.Fatal(err)
	}
	if len(warn) != 2 || !strings.Contains(warn[0], `"main" has no sink`) || !strings.Contains(warn[1], `"audit" has no sink`) {
		t.Errorf("warnings %q", warn)
	}
	if _, err := c.CheckOutputs(nil); err == nil || !strings.Contains(err.Error(), `sinks[0].output: the plugin has no output "capped"`) {
		t.Errorf("CheckOutputs: %v", err)
	}
}

func TestSubjectMatches(t *testing.T) {
	for _, tc := range []struct {
		f, s string
		want bool
	}{
		{"views.>", "views.1", true}, {"views.>", "views.1.2", true}, {"views.>", "views", false},
		{"views.*", "views.1", true}, {"views.*", "views.1.2", false}, {"a.b", "a.b", true},
		{"a.b", "a.c", false}, {"a", "a.b", false}, {"*.b", "x.b", true}, {">", "anything.at.all", true},
	} {
		if got := SubjectMatches(tc.f, tc.s); got != tc.want {
			t.Errorf("SubjectMatches(%q, %q) = %v", tc.f, tc.s, got)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(minimal))
	f.Add([]byte("name: x\nsource: {stream: S}\nkey: {header: K}\nplugin: {path: p}\nbatch: {linger: 1s}\n"))
	f.Add([]byte("plugin: {config: {a: [1]}}"))
	f.Add([]byte("- a\n- b"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Parse(b)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse accepted a config Validate rejects: %v", err)
		}
		if c.Parallelism < 1 || c.Parallelism > c.MaxParallelism || c.Batch.Size < 1 {
			t.Fatalf("accepted config out of range: %+v", c)
		}
	})
}
