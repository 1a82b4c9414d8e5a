package job

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Defaults applied by Parse to fields the config leaves out.
const (
	DefaultParallelism    = 1
	DefaultMaxParallelism = 128
	MaxMaxParallelism     = 32768
	DefaultBatchSize      = 256
	DefaultLinger         = 5 * time.Millisecond
	DefaultKeySeparator   = "|"
	DefaultStateBackend   = BackendMemory
	DefaultStart          = "first"
	MaxBatchSize          = 1 << 20
)

// Config is a job: where events come from, how they are keyed, which plugin
// processes them and where its outputs go.
type Config struct {
	Name   string `yaml:"name"`
	Source Source `yaml:"source"`
	Key    Key    `yaml:"key"`
	// Timestamp is the former way to name an event-time JSON field holding
	// epoch milliseconds; ApplyDefaults moves it to EventTime.Field. Write
	// event_time: {field: ...} instead.
	Timestamp      string     `yaml:"timestamp,omitempty"`
	EventTime      EventTime  `yaml:"event_time,omitempty"`
	Late           Late       `yaml:"late,omitempty"`
	Plugin         Plugin     `yaml:"plugin"`
	Parallelism    int        `yaml:"parallelism,omitempty"`
	MaxParallelism int        `yaml:"max_parallelism,omitempty"`
	Batch          Batch      `yaml:"batch,omitempty"`
	State          State      `yaml:"state,omitempty"`
	Sinks          []Sink     `yaml:"sinks,omitempty"`
	DeadLetter     DeadLetter `yaml:"dead_letter,omitempty"`
	Checkpoint     Checkpoint `yaml:"checkpoint,omitempty"`

	// Dir is the directory relative paths resolve against: the config
	// file's directory for Load, the working directory for Parse.
	Dir string `yaml:"-"`
}

// Source is the JetStream stream the job reads.
type Source struct {
	Stream string `yaml:"stream"`
	// Subjects filters the stream; empty reads every subject.
	Subjects []string `yaml:"subjects,omitempty"`
	// Start is "first" (default), "new" or a stream sequence number.
	Start string `yaml:"start,omitempty"`
	// Create makes the stream, capturing Subjects, when it does not exist.
	Create bool `yaml:"create,omitempty"`
}

// StartPolicy says where the source starts reading.
type StartPolicy int

const (
	StartFirst StartPolicy = iota
	StartNew
	StartSequence
)

// StartAt decodes Start. It assumes a validated config.
func (s Source) StartAt() (StartPolicy, uint64) {
	switch s.Start {
	case "", "first":
		return StartFirst, 0
	case "new":
		return StartNew, 0
	}
	n, _ := strconv.ParseUint(s.Start, 10, 64)
	return StartSequence, n
}

// Key says how an event's key is found. Exactly one of Field, Fields,
// SubjectToken and Header is set.
type Key struct {
	// Field is a dotted JSON path; the key is the string's bytes or the
	// number's literal text.
	Field string `yaml:"field,omitempty"`
	// Fields are JSON paths whose values are joined with Separator.
	Fields    []string `yaml:"fields,omitempty"`
	Separator string   `yaml:"separator,omitempty"`
	// SubjectToken is the 1-based position of a subject token
	// (2 in "views.42" is "42").
	SubjectToken int `yaml:"subject_token,omitempty"`
	// Header is the name of a message header.
	Header string `yaml:"header,omitempty"`
}

// Paths returns the JSON paths the key reads (none for subject or header
// keys).
func (k Key) Paths() []string {
	if k.Field != "" {
		return []string{k.Field}
	}
	return k.Fields
}

// Where event time comes from (EventTime.Source).
const (
	// TimeFromPublish is the JetStream publish time of the message.
	TimeFromPublish = "publish_time"
)

// Event time formats (EventTime.Format).
const (
	// FormatEpochMs is milliseconds since the Unix epoch: a JSON number
	// (a fraction is truncated) or, in a header, a decimal integer.
	FormatEpochMs = "epoch_ms"
	// FormatRFC3339 is an RFC 3339 timestamp string such as
	// "2025-01-02T15:04:05.123Z".
	FormatRFC3339 = "rfc3339"
	// FormatAuto reads a JSON number or a header of digits as epoch_ms and
	// any other string as rfc3339.
	FormatAuto = "auto"
)

// EventTime says where an event's time comes from and how watermarks
// follow it. At most one of Field, Header and Source is set; none means the
// publish time.
type EventTime struct {
	// Field is a dotted JSON path to the event time.
	Field string `yaml:"field,omitempty"`
	// Header is the name of a message header holding the event time.
	Header string `yaml:"header,omitempty"`
	// Source is "publish_time": the JetStream publish time (the default).
	Source string `yaml:"source,omitempty"`
	// Format is epoch_ms, rfc3339 or auto (default) for Field and Header.
	Format string `yaml:"format,omitempty"`
	// MaxOutOfOrderness bounds how far behind the latest event time an
	// event may arrive and still be on time: the watermark is the largest
	// event time seen minus this bound minus 1ms. Default 0.
	MaxOutOfOrderness Duration `yaml:"max_out_of_orderness,omitempty"`
	// IdleTimeout, when more than 0, advances the watermark with the
	// processing time (now minus MaxOutOfOrderness minus 1ms) once no event
	// has arrived for that long, so event-time timers fire on a quiet
	// stream. 0 (default) leaves the watermark where the events put it.
	IdleTimeout Duration `yaml:"idle_timeout,omitempty"`
}

// Late-event policies (Late.Policy).
const (
	// LateSideOutput publishes late events to Late.Subject.
	LateSideOutput = "side_output"
	// LateProcess hands late events to the function like any other.
	LateProcess = "process"
	// LateDrop drops late events; they are only counted.
	LateDrop = "drop"
)

// Late says what happens to a late event: one whose event time is at or
// below the watermark when the source reads it.
type Late struct {
	// Policy is side_output (default), process or drop.
	Policy string `yaml:"policy,omitempty"`
	// Subject receives late events under side_output; default
	// "<name>.late".
	Subject string `yaml:"subject,omitempty"`
	// Create makes a stream capturing Subject when no stream does.
	Create bool `yaml:"create,omitempty"`
}

// Plugin is the process function.
type Plugin struct {
	// Path is a .wasm file or a Go source directory to build, relative to
	// the config file.
	Path string `yaml:"path"`
	// Config is handed to the plugin at open. YAML scalars are accepted and
	// kept as their text.
	Config        StringMap `yaml:"config,omitempty"`
	MemoryLimitMB int       `yaml:"memory_limit_mb,omitempty"`
	CallTimeout   Duration  `yaml:"call_timeout,omitempty"`
	// Fields overrides the JSON paths of the fields the plugin declares:
	// field name → dotted path.
	Fields map[string]string `yaml:"fields,omitempty"`
}

// ResolvedPath returns Path made absolute against dir (the config's Dir).
func (p Plugin) ResolvedPath(dir string) string {
	if p.Path == "" || filepath.IsAbs(p.Path) {
		return p.Path
	}
	return filepath.Join(dir, p.Path)
}

// Batch bounds how many events a worker receives at once and how long a
// partial batch may wait.
type Batch struct {
	Size   int      `yaml:"size,omitempty"`
	Linger Duration `yaml:"linger,omitempty"`
}

// State backends (State.Backend).
const (
	// BackendMemory keeps state in Go maps: fastest, lost with the process.
	BackendMemory = "memory"
	// BackendPebble keeps state in a Pebble database in State.Dir, behind a
	// write-back cache of State.CacheMB.
	BackendPebble = "pebble"
)

// Defaults of the Pebble state options, applied when the backend is pebble.
const (
	DefaultBlockCacheMB = 64
	DefaultMemTableMB   = 16
	DefaultBloomBits    = 10
	DefaultCompression  = "snappy"
	DefaultStateCacheMB = 256
)

// State selects the keyed state backend and tunes the Pebble one. Every
// field but Backend applies to pebble only.
type State struct {
	// Backend is memory (default) or pebble.
	Backend string `yaml:"backend,omitempty"`
	// Dir is the Pebble state directory, relative to the config file;
	// required for pebble. It is created when absent. A directory written
	// for another max_parallelism or other states is refused.
	Dir string `yaml:"dir,omitempty"`
	// BlockCacheMB is the size of Pebble's block cache (default 64).
	BlockCacheMB int `yaml:"block_cache_mb,omitempty"`
	// MemTableMB is the size of one Pebble memtable (default 16).
	MemTableMB int `yaml:"memtable_mb,omitempty"`
	// BloomBits is the bloom filter bits per key: 0 means the default
	// (10), -1 turns bloom filters off.
	BloomBits int `yaml:"bloom_bits,omitempty"`
	// Compression of Pebble's table blocks: zstd, snappy (default) or none.
	Compression string `yaml:"compression,omitempty"`
	// CacheMB bounds the write-back cache of state records in front of
	// Pebble (default 256), shared evenly among key groups.
	CacheMB int `yaml:"cache_mb,omitempty"`
}

// ResolvedDir returns Dir made absolute against dir (the config's Dir).
func (s State) ResolvedDir(dir string) string {
	if s.Dir == "" || filepath.IsAbs(s.Dir) {
		return s.Dir
	}
	return filepath.Join(dir, s.Dir)
}

// Sink types.
const (
	SinkJetStream = "jetstream"
	SinkStdout    = "stdout"
	// SinkKV puts each record into a NATS KV bucket: the record's key
	// (see KVKey) is the KV key, its value the KV value.
	SinkKV = "kv"
)

// Sink delivery modes (Sink.Mode).
const (
	// AtLeastOnce publishes records as the function emits them: after a
	// restore, the records of the events replayed since the checkpoint are
	// published again.
	AtLeastOnce = "at_least_once"
	// ExactlyOnce stages the records of each checkpoint epoch and publishes
	// them only once the checkpoint is complete, with deterministic message
	// ids and a committed-epoch marker; it needs checkpoints.
	ExactlyOnce = "exactly_once"
)

// Sink sends one output of the plugin somewhere.
type Sink struct {
	// Output is "main" or a side output name of the plugin.
	Output string `yaml:"output"`
	// Type is "jetstream", "kv" or "stdout". A kv sink puts a record under
	// its key made a valid KV key (engine.KVKey).
	Type string `yaml:"type"`
	// Mode is at_least_once (default) or exactly_once.
	Mode string `yaml:"mode,omitempty"`
	// Subject is the JetStream subject records are published to.
	Subject string `yaml:"subject,omitempty"`
	// Bucket is the KV bucket of a kv sink.
	Bucket string `yaml:"bucket,omitempty"`
	// Create makes a stream capturing Subject (a KV bucket named Bucket)
	// when there is none.
	Create bool `yaml:"create,omitempty"`
}

// ExactlyOnce reports whether the sink's mode is exactly_once.
func (s Sink) ExactlyOnce() bool { return s.Mode == ExactlyOnce }

// Name identifies the sink in checkpoints and committed-epoch markers:
// "<output>.<subject>" for jetstream, "<output>.kv.<bucket>" for kv and
// "<output>.stdout" for stdout. Validate refuses two sinks with one name.
func (s Sink) Name() string {
	switch s.Type {
	case SinkKV:
		return s.Output + ".kv." + s.Bucket
	case SinkStdout:
		return s.Output + ".stdout"
	}
	return s.Output + "." + s.Subject
}

// Checkpoint storage types (CheckpointStorage.Type).
const (
	StorageDir         = "dir"
	StorageObjectStore = "object_store"
)

// Checkpoint defaults, applied when Interval is set.
const (
	DefaultCheckpointTimeout = time.Minute
	DefaultCheckpointRetain  = 3
	DefaultCheckpointPath    = "checkpoints"
)

// Checkpoint configures periodic barrier checkpoints of the job's state,
// source position and staged exactly-once outputs.
type Checkpoint struct {
	// Interval between checkpoints; 0 (default) takes none.
	Interval Duration `yaml:"interval,omitempty"`
	// Timeout bounds one checkpoint (default 1m); one that takes longer
	// is aborted and the job goes on.
	Timeout Duration `yaml:"timeout,omitempty"`
	// Retain is how many complete checkpoints are kept (default 3).
	Retain int `yaml:"retain,omitempty"`
	// Storage is where checkpoints are written.
	Storage CheckpointStorage `yaml:"storage,omitempty"`
}

// Enabled reports whether the job takes checkpoints.
func (c Checkpoint) Enabled() bool { return c.Interval > 0 }

// CheckpointStorage is a local directory or a NATS Object Store bucket.
type CheckpointStorage struct {
	// Type is dir (default) or object_store.
	Type string `yaml:"type,omitempty"`
	// Path is the directory of type dir, relative to the config file
	// (default "checkpoints").
	Path string `yaml:"path,omitempty"`
	// Bucket is the Object Store bucket of type object_store; it is
	// created when absent.
	Bucket string `yaml:"bucket,omitempty"`
}

// ResolvedPath returns Path made absolute against dir (the config's Dir).
func (s CheckpointStorage) ResolvedPath(dir string) string {
	p := s.Path
	if p == "" {
		p = DefaultCheckpointPath
	}
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

// DeadLetter is where events that cannot be processed go, with a reason.
type DeadLetter struct {
	// Subject defaults to "<name>.dlq".
	Subject string `yaml:"subject,omitempty"`
	// Create makes a stream capturing Subject when no stream does.
	Create bool `yaml:"create,omitempty"`
}

// Duration is a time.Duration written as a Go duration string ("5ms", "2s").
type Duration time.Duration

// D returns the duration as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want a duration such as \"5ms\" or \"2s\", got a %s", n.Line, kindName(n))
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		if _, ierr := strconv.Atoi(n.Value); ierr == nil && n.Value != "0" {
			return fmt.Errorf("line %d: duration %q has no unit: write e.g. \"%sms\" or \"%ss\"", n.Line, n.Value, n.Value, n.Value)
		}
		return fmt.Errorf("line %d: %q is not a duration: write e.g. \"5ms\" or \"2s\"", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// StringMap is a string map that accepts any YAML scalar as a value (a
// number or bool is kept as written).
type StringMap map[string]string

// UnmarshalYAML implements yaml.Unmarshaler.
func (m *StringMap) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		*m = nil
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: want a mapping of names to values, got a %s", n.Line, kindName(n))
	}
	out := make(StringMap, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return fmt.Errorf("line %d: keys must be plain names", k.Line)
		}
		switch {
		case v.Kind == yaml.ScalarNode && v.Tag == "!!null":
			out[k.Value] = ""
		case v.Kind == yaml.ScalarNode:
			out[k.Value] = v.Value
		default:
			return fmt.Errorf("line %d: %s: values must be scalars (string, number or bool), got a %s: quote it as a string", v.Line, k.Value, kindName(v))
		}
	}
	*m = out
	return nil
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	case yaml.AliasNode:
		return "alias"
	}
	return "scalar"
}

// Load reads and parses the job config at path, applies defaults and
// validates it. Relative plugin paths resolve against path's directory.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("job config: %w", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("job config: %w", err)
	}
	c, err := parse(b, filepath.Dir(abs))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Parse parses a job config, applies defaults and validates it. Relative
// plugin paths resolve against the working directory.
func Parse(b []byte) (*Config, error) {
	wd, err := os.Getwd()
	if err != nil {
		wd = "."
	}
	return parse(b, wd)
}

func parse(b []byte, dir string) (*Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("job config is empty: it needs at least name, source, key and plugin")
		}
		return nil, friendlyYAMLError(err, b)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, errors.New("job config holds more than one YAML document: keep one job per file")
	}
	c.Dir = dir
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

var (
	unknownFieldRE    = regexp.MustCompile(`line (\d+): field (\S+) not found in type job\.(\w+)`)
	cannotUnmarshalRE = regexp.MustCompile("line (\\d+): cannot unmarshal !!\\w+ (`[^`]*`) into (\\S+)")
	sectionOfType     = map[string]string{
		"Config": "the job", "Source": "source", "Key": "key", "Plugin": "plugin",
		"Batch": "batch", "State": "state", "Sink": "sinks[]", "DeadLetter": "dead_letter",
		"EventTime": "event_time", "Late": "late", "Checkpoint": "checkpoint",
		"CheckpointStorage": "checkpoint.storage",
	}
)

// friendlyYAMLError rewrites yaml.v3 messages in terms of config keys.
func friendlyYAMLError(err error, src []byte) error {
	msg := err.Error()
	msg = cannotUnmarshalRE.ReplaceAllStringFunc(msg, func(m string) string {
		sub := cannotUnmarshalRE.FindStringSubmatch(m)
		n, _ := strconv.Atoi(sub[1])
		key := keyOnLine(src, n)
		if key == "" {
			return m
		}
		return fmt.Sprintf("line %d: %s: cannot use %s as %s", n, key, sub[2], strings.TrimPrefix(sub[3], "job."))
	})
	msg = unknownFieldRE.ReplaceAllStringFunc(msg, func(m string) string {
		sub := unknownFieldRE.FindStringSubmatch(m)
		return fmt.Sprintf("line %s: unknown key %q in %s (check its spelling; known keys: %s)", sub[1], sub[2], sectionOfType[sub[3]], knownKeys(sub[3]))
	})
	msg = strings.ReplaceAll(msg, "yaml: unmarshal errors:\n  ", "")
	msg = strings.ReplaceAll(msg, "\n  ", "; ")
	msg = strings.ReplaceAll(msg, "into job.Duration", "into a duration")
	return errors.New("job config: " + msg)
}

// keyOnLine returns the YAML key written on 1-based line n of src, or "".
func keyOnLine(src []byte, n int) string {
	lines := bytes.Split(src, []byte("\n"))
	if n < 1 || n > len(lines) {
		return ""
	}
	l := strings.TrimLeft(string(lines[n-1]), " \t-")
	l = strings.TrimLeft(l, " {")
	k, _, ok := strings.Cut(l, ":")
	if !ok || strings.ContainsAny(k, " {}[],") {
		return ""
	}
	return k
}

func knownKeys(typ string) string {
	keys := map[string][]string{
		"Config":            {"name", "source", "key", "event_time", "late", "plugin", "parallelism", "max_parallelism", "batch", "state", "sinks", "dead_letter", "checkpoint", "timestamp"},
		"EventTime":         {"field", "header", "source", "format", "max_out_of_orderness", "idle_timeout"},
		"Late":              {"policy", "subject", "create"},
		"Source":            {"stream", "subjects", "start", "create"},
		"Key":               {"field", "fields", "separator", "subject_token", "header"},
		"Plugin":            {"path", "config", "memory_limit_mb", "call_timeout", "fields"},
		"Batch":             {"size", "linger"},
		"State":             {"backend", "dir", "block_cache_mb", "memtable_mb", "bloom_bits", "compression", "cache_mb"},
		"Sink":              {"output", "type", "mode", "subject", "bucket", "create"},
		"DeadLetter":        {"subject", "create"},
		"Checkpoint":        {"interval", "timeout", "retain", "storage"},
		"CheckpointStorage": {"type", "path", "bucket"},
	}[typ]
	return strings.Join(keys, ", ")
}

// ApplyDefaults fills in every field the config leaves out.
func (c *Config) ApplyDefaults() {
	if c.Source.Start == "" {
		c.Source.Start = DefaultStart
	}
	if len(c.Key.Fields) > 0 && c.Key.Separator == "" {
		c.Key.Separator = DefaultKeySeparator
	}
	if c.Parallelism == 0 {
		c.Parallelism = DefaultParallelism
	}
	if c.MaxParallelism == 0 {
		c.MaxParallelism = DefaultMaxParallelism
	}
	if c.Batch.Size == 0 {
		c.Batch.Size = DefaultBatchSize
	}
	if c.Batch.Linger == 0 {
		c.Batch.Linger = Duration(DefaultLinger)
	}
	if c.State.Backend == "" {
		c.State.Backend = DefaultStateBackend
	}
	if st := &c.State; st.Backend == BackendPebble {
		if st.BlockCacheMB == 0 {
			st.BlockCacheMB = DefaultBlockCacheMB
		}
		if st.MemTableMB == 0 {
			st.MemTableMB = DefaultMemTableMB
		}
		if st.BloomBits == 0 {
			st.BloomBits = DefaultBloomBits
		}
		if st.Compression == "" {
			st.Compression = DefaultCompression
		}
		if st.CacheMB == 0 {
			st.CacheMB = DefaultStateCacheMB
		}
	}
	if c.DeadLetter.Subject == "" && c.Name != "" {
		c.DeadLetter.Subject = c.Name + ".dlq"
	}
	et := &c.EventTime
	if c.Timestamp != "" && et.Field == "" && et.Header == "" && et.Source == "" {
		et.Field = c.Timestamp
		if et.Format == "" {
			et.Format = FormatEpochMs
		}
		c.Timestamp = ""
	}
	switch {
	case et.Field != "" || et.Header != "":
		if et.Format == "" {
			et.Format = FormatAuto
		}
	case et.Source == "":
		et.Source = TimeFromPublish
	}
	if c.Late.Policy == "" {
		c.Late.Policy = LateSideOutput
	}
	for i := range c.Sinks {
		if c.Sinks[i].Mode == "" {
			c.Sinks[i].Mode = AtLeastOnce
		}
	}
	if cp := &c.Checkpoint; cp.Enabled() {
		if cp.Timeout == 0 {
			cp.Timeout = Duration(DefaultCheckpointTimeout)
		}
		if cp.Retain == 0 {
			cp.Retain = DefaultCheckpointRetain
		}
		if cp.Storage.Type == "" {
			cp.Storage.Type = StorageDir
		}
		if cp.Storage.Type == StorageDir && cp.Storage.Path == "" {
			cp.Storage.Path = DefaultCheckpointPath
		}
	}
	if c.Late.Subject == "" && c.Name != "" {
		c.Late.Subject = c.Name + ".late"
	}
}

// EventTimeKind says which of the event-time sources a validated config
// uses.
type EventTimeKind int

// Event-time sources.
const (
	// EventTimeFromPublish is the JetStream publish time.
	EventTimeFromPublish EventTimeKind = iota
	// EventTimeFromField is a JSON field of the event.
	EventTimeFromField
	// EventTimeFromHeader is a message header.
	EventTimeFromHeader
)

// TimeSource returns where event time comes from, the field path or header
// name (empty for the publish time) and the format (auto when left out). It
// assumes a validated config; the former top-level timestamp counts as
// event_time.field with format epoch_ms.
func (c *Config) TimeSource() (kind EventTimeKind, name, format string) {
	et := c.EventTime
	format = et.Format
	switch {
	case et.Field != "":
		kind, name = EventTimeFromField, et.Field
	case et.Header != "":
		kind, name = EventTimeFromHeader, et.Header
	case c.Timestamp != "" && et.Source == "":
		kind, name = EventTimeFromField, c.Timestamp
		if format == "" {
			format = FormatEpochMs
		}
	default:
		return EventTimeFromPublish, "", ""
	}
	if format == "" {
		format = FormatAuto
	}
	return kind, name, format
}

// LatePolicy returns Late.Policy, side_output when left out.
func (c *Config) LatePolicy() string {
	if c.Late.Policy == "" {
		return LateSideOutput
	}
	return c.Late.Policy
}

// LateSubject returns Late.Subject, "<name>.late" when left out.
func (c *Config) LateSubject() string {
	if c.Late.Subject == "" {
		return c.Name + ".late"
	}
	return c.Late.Subject
}

// Validate checks the config and returns every problem found, each naming
// the field and the fix. It expects defaults to have been applied; a zero
// parallelism is reported as an error.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if c.Name == "" {
		bad("name", "missing: name the job, e.g. name: freqcap")
	} else if !isName(c.Name) {
		bad("name", "%q: use letters, digits, '_' and '-' only (it names subjects and consumers)", c.Name)
	}

	// source
	if c.Source.Stream == "" {
		bad("source.stream", "missing: name the JetStream stream to read, e.g. stream: EVENTS")
	} else if !isName(c.Source.Stream) {
		bad("source.stream", "%q: stream names use letters, digits, '_' and '-' only", c.Source.Stream)
	}
	for i, s := range c.Source.Subjects {
		if err := checkSubject(s, true); err != nil {
			bad(fmt.Sprintf("source.subjects[%d]", i), "%v", err)
		}
	}
	if c.Source.Create && len(c.Source.Subjects) == 0 {
		bad("source.subjects", "missing: source.create needs the subjects the new stream captures, e.g. subjects: [\"events.>\"]")
	}
	switch c.Source.Start {
	case "first", "new":
	default:
		if n, err := strconv.ParseUint(c.Source.Start, 10, 64); err != nil || n == 0 {
			bad("source.start", "%q: want first, new or a stream sequence number ≥ 1", c.Source.Start)
		}
	}

	// key
	set := 0
	if c.Key.Field != "" {
		set++
		if err := checkPath(c.Key.Field); err != nil {
			bad("key.field", "%v", err)
		}
	}
	if len(c.Key.Fields) > 0 {
		set++
		for i, p := range c.Key.Fields {
			if err := checkPath(p); err != nil {
				bad(fmt.Sprintf("key.fields[%d]", i), "%v", err)
			}
		}
	}
	if c.Key.SubjectToken != 0 {
		set++
		if c.Key.SubjectToken < 0 {
			bad("key.subject_token", "must be a 1-based token position, got %d", c.Key.SubjectToken)
		}
	}
	if c.Key.Header != "" {
		set++
	}
	switch {
	case set == 0:
		bad("key", "missing: set one of field (a JSON path), fields (a list of paths), subject_token (a 1-based position) or header (a header name)")
	case set > 1:
		bad("key", "set exactly one of field, fields, subject_token and header, got %d", set)
	}
	if c.Key.Separator != "" && len(c.Key.Fields) == 0 {
		bad("key.separator", "only applies to key.fields: remove it or list the fields")
	}
	c.validateTime(bad)

	// plugin
	if c.Plugin.Path == "" {
		bad("plugin.path", "missing: give a .wasm file or a Go plugin source directory")
	}
	if c.Plugin.MemoryLimitMB < 0 || c.Plugin.MemoryLimitMB > 4096 {
		bad("plugin.memory_limit_mb", "must be 0 (no limit) .. 4096, got %d", c.Plugin.MemoryLimitMB)
	}
	if c.Plugin.CallTimeout < 0 {
		bad("plugin.call_timeout", "must not be negative, got %s", c.Plugin.CallTimeout)
	}
	for _, name := range sortedKeys(c.Plugin.Fields) {
		if err := checkPath(c.Plugin.Fields[name]); err != nil {
			bad("plugin.fields."+name, "%v", err)
		}
	}

	// parallelism
	if c.MaxParallelism < 1 || c.MaxParallelism > MaxMaxParallelism {
		bad("max_parallelism", "must be 1..%d, got %d", MaxMaxParallelism, c.MaxParallelism)
	}
	if c.Parallelism < 1 || c.Parallelism > max(c.MaxParallelism, 1) {
		bad("parallelism", "must be 1..max_parallelism (%d), got %d", c.MaxParallelism, c.Parallelism)
	}
	if c.Batch.Size < 1 || c.Batch.Size > MaxBatchSize {
		bad("batch.size", "must be 1..%d, got %d", MaxBatchSize, c.Batch.Size)
	}
	if c.Batch.Linger <= 0 || c.Batch.Linger.D() > time.Minute {
		bad("batch.linger", "must be more than 0 and at most 1m, got %s", c.Batch.Linger)
	}

	c.validateState(bad)

	// sinks
	names := map[string]int{}
	for i, s := range c.Sinks {
		f := fmt.Sprintf("sinks[%d]", i)
		if s.Output == "" {
			bad(f+".output", "missing: name the plugin output, main or a side output name")
		}
		switch s.Type {
		case SinkJetStream:
			if s.Subject == "" {
				bad(f+".subject", "missing: a jetstream sink needs the subject to publish to")
			} else if err := checkSubject(s.Subject, false); err != nil {
				bad(f+".subject", "%v", err)
			} else if src := c.overlapsSource(s.Subject); src != "" {
				bad(f+".subject", "%q is read by the source (subject %q): the job would consume its own output; publish elsewhere", s.Subject, src)
			}
			if s.Bucket != "" {
				bad(f+".bucket", "a jetstream sink has no bucket: remove it or use type: kv")
			}
		case SinkKV:
			if s.Bucket == "" {
				bad(f+".bucket", "missing: a kv sink needs the KV bucket to put records into, e.g. bucket: %s_out", cmp.Or(c.Name, "job"))
			} else if !isName(s.Bucket) {
				bad(f+".bucket", "%q: bucket names use letters, digits, '_' and '-' only", s.Bucket)
			}
			if s.Subject != "" {
				bad(f+".subject", "a kv sink has no subject (records go to the bucket): remove it or use type: jetstream")
			}
		case SinkStdout:
			if s.Subject != "" {
				bad(f+".subject", "a stdout sink has no subject: remove it or use type: jetstream")
			}
			if s.Bucket != "" {
				bad(f+".bucket", "a stdout sink has no bucket: remove it or use type: kv")
			}
			if s.Create {
				bad(f+".create", "a stdout sink creates no stream: remove it")
			}
			if s.Mode == ExactlyOnce {
				bad(f+".mode", "a stdout sink cannot take back lines written before a crash: use mode: at_least_once, or a jetstream or kv sink for exactly_once")
			}
		case "":
			bad(f+".type", "missing: use jetstream, kv or stdout")
		default:
			bad(f+".type", "%q: use jetstream, kv or stdout", s.Type)
		}
		switch s.Mode {
		case "", AtLeastOnce:
		case ExactlyOnce:
			if !c.Checkpoint.Enabled() && s.Type != SinkStdout {
				bad(f+".mode", "exactly_once publishes each epoch's records when its checkpoint completes: set checkpoint.interval (e.g. 2s), or use mode: at_least_once")
			}
		default:
			bad(f+".mode", "%q: use at_least_once or exactly_once", s.Mode)
		}
		if j, dup := names[s.Name()]; dup {
			bad(f, "sends output %q to the same place as sinks[%d]: remove one of them", s.Output, j)
		} else {
			names[s.Name()] = i
		}
	}

	c.validateCheckpoint(bad)

	// dead letter
	if c.DeadLetter.Subject != "" {
		if err := checkSubject(c.DeadLetter.Subject, false); err != nil {
			bad("dead_letter.subject", "%v", err)
		} else if src := c.overlapsSource(c.DeadLetter.Subject); src != "" {
			bad("dead_letter.subject", "%q is read by the source (subject %q): dead letters would be consumed again; use another subject", c.DeadLetter.Subject, src)
		}
	}
	return errors.Join(errs...)
}

// validateCheckpoint checks the checkpoint section.
func (c *Config) validateCheckpoint(bad func(field, format string, args ...any)) {
	cp := c.Checkpoint
	if cp.Interval < 0 {
		bad("checkpoint.interval", "must not be negative, got %s (0 takes no checkpoints)", cp.Interval)
	}
	if !cp.Enabled() {
		return
	}
	if cp.Interval.D() < 10*time.Millisecond {
		bad("checkpoint.interval", "%s is too short: use at least 10ms (seconds are typical, e.g. 2s)", cp.Interval)
	}
	if cp.Timeout < 0 {
		bad("checkpoint.timeout", "must not be negative, got %s (0 means %s)", cp.Timeout, DefaultCheckpointTimeout)
	}
	if cp.Retain < 0 {
		bad("checkpoint.retain", "must be at least 1 (0 means %d), got %d", DefaultCheckpointRetain, cp.Retain)
	}
	st := cp.Storage
	switch st.Type {
	case "", StorageDir:
		if st.Bucket != "" {
			bad("checkpoint.storage.bucket", "only applies to type: object_store: remove it or set checkpoint.storage.type: object_store")
		}
	case StorageObjectStore:
		if st.Bucket == "" {
			bad("checkpoint.storage.bucket", "missing: name the Object Store bucket, e.g. bucket: %s_checkpoints", cmp.Or(c.Name, "job"))
		} else if !isName(st.Bucket) {
			bad("checkpoint.storage.bucket", "%q: bucket names use letters, digits, '_' and '-' only", st.Bucket)
		}
		if st.Path != "" {
			bad("checkpoint.storage.path", "only applies to type: dir: remove it or set checkpoint.storage.type: dir")
		}
	default:
		bad("checkpoint.storage.type", "%q: use dir or object_store", st.Type)
	}
}

// validateState checks the state section. Zero Pebble options mean their
// defaults, so a config built in code may leave them out.
func (c *Config) validateState(bad func(field, format string, args ...any)) {
	st := c.State
	switch st.Backend {
	case BackendMemory:
		for _, f := range []struct {
			name string
			set  bool
		}{
			{"dir", st.Dir != ""}, {"block_cache_mb", st.BlockCacheMB != 0}, {"memtable_mb", st.MemTableMB != 0},
			{"bloom_bits", st.BloomBits != 0}, {"compression", st.Compression != ""}, {"cache_mb", st.CacheMB != 0},
		} {
			if f.set {
				bad("state."+f.name, "only applies to backend: pebble: remove it or set state.backend: pebble")
			}
		}
		return
	case BackendPebble:
	default:
		bad("state.backend", "%q is not a state backend: use memory or pebble", st.Backend)
		return
	}
	if st.Dir == "" {
		bad("state.dir", "missing: backend pebble keeps its state in a directory, e.g. dir: state/%s (relative to the config file)", cmp.Or(c.Name, "job"))
	}
	if st.BlockCacheMB < 0 || st.BlockCacheMB > 1<<20 {
		bad("state.block_cache_mb", "must be 1..%d (0 means %d), got %d", 1<<20, DefaultBlockCacheMB, st.BlockCacheMB)
	}
	if st.MemTableMB < 0 || st.MemTableMB >= 4096 {
		bad("state.memtable_mb", "must be 1..4095 (0 means %d), got %d", DefaultMemTableMB, st.MemTableMB)
	}
	if st.BloomBits < -1 || st.BloomBits > 64 {
		bad("state.bloom_bits", "must be 1..64 bits per key, 0 for the default (%d) or -1 to turn bloom filters off, got %d", DefaultBloomBits, st.BloomBits)
	}
	switch st.Compression {
	case "", "zstd", "snappy", "none":
	default:
		bad("state.compression", "%q: use zstd, snappy or none", st.Compression)
	}
	if st.CacheMB < 0 || st.CacheMB > 1<<20 {
		bad("state.cache_mb", "must be 1..%d (0 means %d), got %d", 1<<20, DefaultStateCacheMB, st.CacheMB)
	}
}

// validateTime checks event_time, late and the former timestamp key.
func (c *Config) validateTime(bad func(field, format string, args ...any)) {
	et := c.EventTime
	if c.Timestamp != "" {
		if et.Field != "" || et.Header != "" || et.Source != "" {
			bad("timestamp", "replaced by event_time: remove timestamp and keep event_time (write event_time: {field: %s, format: epoch_ms} for the same behaviour)", c.Timestamp)
		} else if err := checkPath(c.Timestamp); err != nil {
			bad("timestamp", "%v", err)
		}
	}
	set := 0
	if et.Field != "" {
		set++
		if err := checkPath(et.Field); err != nil {
			bad("event_time.field", "%v", err)
		}
	}
	if et.Header != "" {
		set++
		if strings.ContainsAny(et.Header, " \t\r\n:") {
			bad("event_time.header", "%q is not a header name: use letters, digits and '-'", et.Header)
		}
	}
	switch et.Source {
	case "":
	case TimeFromPublish:
		set++
	default:
		bad("event_time.source", "%q: the only source is publish_time; for a JSON field or a header set event_time.field or event_time.header instead", et.Source)
	}
	if set > 1 {
		bad("event_time", "set one of field, header and source (publish_time), got %d", set)
	}
	switch et.Format {
	case "":
	case FormatEpochMs, FormatRFC3339, FormatAuto:
		if et.Field == "" && et.Header == "" && c.Timestamp == "" {
			bad("event_time.format", "applies to event_time.field or event_time.header only: remove it (the publish time needs no format)")
		}
	default:
		bad("event_time.format", "%q: use epoch_ms, rfc3339 or auto", et.Format)
	}
	if et.MaxOutOfOrderness < 0 {
		bad("event_time.max_out_of_orderness", "must not be negative, got %s", et.MaxOutOfOrderness)
	}
	if et.IdleTimeout < 0 {
		bad("event_time.idle_timeout", "must not be negative, got %s (0 turns idleness off)", et.IdleTimeout)
	}

	switch c.Late.Policy {
	case "", LateSideOutput, LateProcess, LateDrop:
	default:
		bad("late.policy", "%q: use side_output, process or drop", c.Late.Policy)
	}
	if c.Late.Subject != "" {
		if err := checkSubject(c.Late.Subject, false); err != nil {
			bad("late.subject", "%v", err)
		} else if src := c.overlapsSource(c.Late.Subject); src != "" {
			bad("late.subject", "%q is read by the source (subject %q): late events would be consumed again; use another subject", c.Late.Subject, src)
		}
	}
}

// overlapsSource returns the source subject filter that subj matches, or "".
// Without a subject filter the whole stream is read, but which subjects it
// captures is only known at run time.
func (c *Config) overlapsSource(subj string) string {
	for _, f := range c.Source.Subjects {
		if SubjectMatches(f, subj) {
			return f
		}
	}
	return ""
}

// CheckOutputs checks the sinks against the plugin's side outputs (port i+1
// is outputs[i]; "main" is port 0). It returns an error for a sink naming an
// output the plugin does not have, and a warning for each output without a
// sink, whose records are counted and discarded.
func (c *Config) CheckOutputs(outputs []string) (warnings []string, err error) {
	known := append([]string{"main"}, outputs...)
	has := map[string]bool{}
	for _, o := range known {
		has[o] = true
	}
	var errs []error
	sunk := map[string]bool{}
	for i, s := range c.Sinks {
		if !has[s.Output] {
			errs = append(errs, fmt.Errorf("sinks[%d].output: the plugin has no output %q: use one of %s", i, s.Output, strings.Join(known, ", ")))
		}
		sunk[s.Output] = true
	}
	for _, o := range known {
		if !sunk[o] {
			warnings = append(warnings, fmt.Sprintf("output %q has no sink: its records are counted and discarded (add a sink with output: %s)", o, o))
		}
	}
	return warnings, errors.Join(errs...)
}

// FieldPath returns the JSON path of a plugin field: the job's override,
// else the plugin's declared path, else the field name.
func (c *Config) FieldPath(name, declared string) string {
	if p, ok := c.Plugin.Fields[name]; ok {
		return p
	}
	if declared != "" {
		return declared
	}
	return name
}

// CheckFieldOverrides returns an error for a plugin.fields override naming a
// field the plugin does not declare.
func (c *Config) CheckFieldOverrides(declared []string) error {
	has := map[string]bool{}
	for _, d := range declared {
		has[d] = true
	}
	for _, name := range sortedKeys(c.Plugin.Fields) {
		if !has[name] {
			return fmt.Errorf("plugin.fields.%s: the plugin declares no field %q (it declares %s): remove the override", name, name, strings.Join(declared, ", "))
		}
	}
	return nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func isName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func checkPath(p string) error {
	if p == "" {
		return errors.New("empty JSON path: name a key, e.g. user_no or user.id")
	}
	for seg := range strings.SplitSeq(p, ".") {
		if seg == "" {
			return fmt.Errorf("JSON path %q has an empty segment: separate keys with single dots, e.g. user.id", p)
		}
	}
	return nil
}

// checkSubject checks a NATS subject; wildcards are allowed in filters only.
func checkSubject(s string, filter bool) error {
	if s == "" {
		return errors.New("empty subject")
	}
	toks := strings.Split(s, ".")
	for i, t := range toks {
		switch {
		case t == "":
			return fmt.Errorf("subject %q has an empty token: separate tokens with single dots", s)
		case strings.ContainsAny(t, " \t\r\n"):
			return fmt.Errorf("subject %q contains whitespace", s)
		case t == "*" || t == ">":
			if !filter {
				return fmt.Errorf("subject %q has a wildcard: a publish subject must be literal", s)
			}
			if t == ">" && i != len(toks)-1 {
				return fmt.Errorf("subject %q: '>' must be the last token", s)
			}
		case strings.ContainsAny(t, "*>"):
			return fmt.Errorf("subject %q: wildcards must be whole tokens", s)
		}
	}
	return nil
}

// SubjectMatches reports whether the literal subject subj matches filter,
// which may hold the wildcards '*' (one token) and '>' (the rest).
func SubjectMatches(filter, subj string) bool {
	for {
		ft, frest, fmore := strings.Cut(filter, ".")
		st, srest, smore := strings.Cut(subj, ".")
		switch {
		case ft == ">":
			return true
		case ft != "*" && ft != st:
			return false
		}
		if !fmore || !smore {
			return fmore == smore
		}
		filter, subj = frest, srest
	}
}
