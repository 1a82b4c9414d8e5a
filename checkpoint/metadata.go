package checkpoint

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/wasmstream/wasmstream/abi"
	"github.com/wasmstream/wasmstream/statestore"
)

// FormatVersion is the version of the metadata format this package writes
// and the only one it reads.
const FormatVersion = 1

// ErrCorrupt is wrapped by the errors that report a damaged checkpoint: a
// metadata file that fails its checksum or cannot be decoded, a file that
// is missing or differs from its size or SHA-256. Snapshot files that fail
// to verify while read wrap statestore.ErrSnapshotCorrupt too.
var ErrCorrupt = statestore.ErrSnapshotCorrupt

// Metadata describes a complete checkpoint.
type Metadata struct {
	// Format is the metadata format version (FormatVersion).
	Format int `json:"format"`
	// ID is the checkpoint's id; ids of a job increase.
	ID uint64 `json:"id"`
	// Job is the job's name.
	Job string `json:"job"`
	// Stream is the JetStream stream the job reads.
	Stream string `json:"stream"`
	// Sequence is the stream sequence S of the last event before the
	// barrier: the state holds every event up to S and none after it, so
	// the source resumes at S+1.
	Sequence uint64 `json:"sequence"`
	// Watermark is the event-time watermark at the barrier, in ms since
	// the Unix epoch.
	Watermark int64 `json:"watermark"`
	// Created is when the barrier was injected; Duration how long the
	// checkpoint took until its metadata was written.
	Created  time.Time     `json:"created"`
	Duration time.Duration `json:"duration_ns"`
	// PluginHash identifies the plugin's module ("sha256:<hex>").
	PluginHash string `json:"plugin_hash"`
	// Contract is the plugin's contract, checked before a restore.
	Contract abi.Contract `json:"contract"`
	// MaxParallelism is the number of key groups.
	MaxParallelism int `json:"max_parallelism"`
	// Backend is the kind of state backend: "memory" or "pebble".
	Backend string `json:"backend"`
	// Parts are the state snapshots, each covering distinct key groups.
	Parts []Part `json:"parts"`
	// Sinks holds each sink's checkpointed state (staged outputs, epochs),
	// by sink name, in a form the sink defines.
	Sinks map[string]json.RawMessage `json:"sinks,omitempty"`
}

// Part is one state snapshot of a checkpoint, written through
// Pending.Target(Name).
type Part struct {
	Name     string                    `json:"name"`
	Snapshot statestore.SnapshotHandle `json:"snapshot"`
}

// Size returns the bytes of the checkpoint's files, shared ones included.
func (m *Metadata) Size() int64 {
	var n int64
	for _, p := range m.Parts {
		n += p.Snapshot.Size()
	}
	return n
}

// envelope is the stored form of the metadata.
type envelope struct {
	Format   int             `json:"format"`
	SHA256   string          `json:"sha256"`
	Metadata json.RawMessage `json:"metadata"`
}

// Encode returns the stored form of m: m as JSON in an envelope with its
// format version and checksum.
func (m *Metadata) Encode() ([]byte, error) {
	body, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: encoding metadata: %w", err)
	}
	sum := sha256.Sum256(body)
	out, err := json.MarshalIndent(envelope{Format: FormatVersion, SHA256: hex.EncodeToString(sum[:]), Metadata: body}, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

// DecodeMetadata decodes the stored form of metadata and verifies its
// checksum. Errors about damage wrap ErrCorrupt.
func DecodeMetadata(data []byte) (*Metadata, error) {
	var env envelope
	if err := json.Unmarshal(data, &env); err != nil {
		return nil, fmt.Errorf("%w: metadata is not valid JSON: %v", ErrCorrupt, err)
	}
	if env.Format != FormatVersion {
		if env.Format == 0 {
			return nil, fmt.Errorf("%w: metadata has no format version", ErrCorrupt)
		}
		return nil, fmt.Errorf("%w", &FormatError{Found: env.Format})
	}
	// MarshalIndent re-indents the raw metadata: hash its compact form.
	var body bytes.Buffer
	if err := json.Compact(&body, env.Metadata); err != nil {
		return nil, fmt.Errorf("%w: metadata is not valid JSON: %v", ErrCorrupt, err)
	}
	sum := sha256.Sum256(body.Bytes())
	if hex.EncodeToString(sum[:]) != env.SHA256 {
		return nil, fmt.Errorf("%w: metadata checksum mismatch (stored %.16s…, computed %.16s…)", ErrCorrupt, env.SHA256, hex.EncodeToString(sum[:]))
	}
	m := &Metadata{}
	if err := json.Unmarshal(body.Bytes(), m); err != nil {
		return nil, fmt.Errorf("%w: metadata: %v", ErrCorrupt, err)
	}
	if m.Format != FormatVersion {
		return nil, &FormatError{Found: m.Format}
	}
	return m, nil
}

// FormatError reports metadata of a format version this wasmstream does not
// read.
type FormatError struct{ Found int }

func (e *FormatError) Error() string {
	return fmt.Sprintf("checkpoint: metadata format version %d; this wasmstream reads version %d only: restore with the wasmstream that wrote it", e.Found, FormatVersion)
}

// IsFormatError reports whether err is a FormatError.
func IsFormatError(err error) bool {
	var fe *FormatError
	return errors.As(err, &fe)
}
