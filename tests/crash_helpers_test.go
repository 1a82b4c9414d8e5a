package tests

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"gopkg.in/yaml.v3"

	"github.com/wasmstream/wasmstream/examples/freqcap"
	"github.com/wasmstream/wasmstream/host/natsembed"
	"github.com/wasmstream/wasmstream/internal/faultpoint"
	"github.com/wasmstream/wasmstream/internal/wasmbuild"
)

// The parts the crash tests (crash_test.go) are made of: the wasmstream
// binary, an embedded NATS server that can be restarted on the same port
// and store, a paced publisher, child processes running the job, and
// observers of the job's progress (sink records, complete checkpoints).

// buildWasmstream builds cmd/wasmstream into a temporary directory of t.
func buildWasmstream(t *testing.T) string {
	t.Helper()
	root, err := wasmbuild.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "wasmstream")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/wasmstream")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/wasmstream: %v\n%s", err, out)
	}
	return bin
}

// crashJob is what the crash tests read of a job config: the job runs only
// in the child, so this is parsed leniently and independently of host/job.
type crashJob struct {
	Name   string `yaml:"name"`
	Source struct {
		Stream   string   `yaml:"stream"`
		Subjects []string `yaml:"subjects"`
	} `yaml:"source"`
	EventTime struct {
		MaxOutOfOrderness string `yaml:"max_out_of_orderness"`
	} `yaml:"event_time"`
	Late struct {
		Subject string `yaml:"subject"`
	} `yaml:"late"`
	Plugin struct {
		Path   string         `yaml:"path"`
		Config map[string]any `yaml:"config"`
	} `yaml:"plugin"`
	Parallelism int `yaml:"parallelism"`
	State       struct {
		Backend string `yaml:"backend"`
		Dir     string `yaml:"dir"`
	} `yaml:"state"`
	Checkpoint struct {
		Interval string `yaml:"interval"`
		Storage  struct {
			Type   string `yaml:"type"`
			Path   string `yaml:"path"`
			Bucket string `yaml:"bucket"`
		} `yaml:"storage"`
	} `yaml:"checkpoint"`
	Sinks []struct {
		Output  string `yaml:"output"`
		Type    string `yaml:"type"`
		Subject string `yaml:"subject"`
		Mode    string `yaml:"mode"`
	} `yaml:"sinks"`
	DeadLetter struct {
		Subject string `yaml:"subject"`
	} `yaml:"dead_letter"`

	dir string // where the config file is
}

// loadCrashJob copies the config testdata/crash/<name> into dir as
// job.yaml and reads it.
func loadCrashJob(t *testing.T, name, dir string) (*crashJob, string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "crash", name))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "job.yaml")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	j := &crashJob{dir: dir}
	if err := yaml.Unmarshal(b, j); err != nil {
		t.Fatalf("testdata/crash/%s: %v", name, err)
	}
	if j.Name == "" || j.Source.Stream == "" || len(j.Source.Subjects) != 1 || j.Plugin.Path == "" || j.Parallelism < 1 {
		t.Fatalf("testdata/crash/%s: want name, source.stream with one subject, plugin.path and parallelism", name)
	}
	if len(j.Sinks) != len(crashOutputs) {
		t.Fatalf("testdata/crash/%s: want a jetstream sink for each of %v, in that order", name, crashOutputs)
	}
	for i, o := range crashOutputs {
		if s := j.Sinks[i]; s.Output != o || s.Type != "jetstream" || s.Subject == "" {
			t.Fatalf("testdata/crash/%s: sinks[%d] is %+v, want a jetstream sink for output %s", name, i, s, o)
		}
	}
	return j, path
}

// sinkSubject returns the subject of the JetStream sink of output.
func (j *crashJob) sinkSubject(output string) string {
	for _, s := range j.Sinks {
		if s.Output == output && s.Type == "jetstream" {
			return s.Subject
		}
	}
	return ""
}

// exactlyOnce reports whether every sink is exactly-once.
func (j *crashJob) exactlyOnce() bool {
	for _, s := range j.Sinks {
		if s.Mode != "exactly_once" {
			return false
		}
	}
	return len(j.Sinks) > 0
}

func (j *crashJob) pluginInt(t *testing.T, key string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(fmt.Sprint(j.Plugin.Config[key]), 10, 64)
	if err != nil || n < 1 {
		t.Fatalf("job %s: plugin.config.%s %v is not a positive integer", j.Name, key, j.Plugin.Config[key])
	}
	return n
}

func (j *crashJob) duration(t *testing.T, field, v string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("job %s: %s %q is not a positive duration", j.Name, field, v)
	}
	return d
}

// crashServer is an embedded NATS server owned by a test, restartable on
// the same port and store directory, and a client connection to it that
// reconnects across restarts.
type crashServer struct {
	storeDir string
	listen   string // host:port, kept across restarts

	// pubMu is held by the publisher for each batch and by a restart, so
	// that no event is being published while the server is down.
	pubMu sync.Mutex

	mu  sync.Mutex
	srv *natsembed.Server

	url string
	nc  *nats.Conn
	js  jetstream.JetStream
}

func newCrashServer(t *testing.T) *crashServer {
	t.Helper()
	s := &crashServer{storeDir: t.TempDir()}
	srv, err := natsembed.Start(natsembed.Options{StoreDir: s.storeDir})
	if err != nil {
		t.Fatal(err)
	}
	s.srv = srv
	t.Cleanup(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.srv != nil {
			s.srv.Shutdown()
			s.srv = nil
		}
	})
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	s.listen, s.url = u.Host, srv.URL
	s.nc, err = nats.Connect(s.url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.nc.Close)
	if s.js, err = jetstream.New(s.nc); err != nil {
		t.Fatal(err)
	}
	return s
}

// restart shuts the server down, keeps it down for down, starts it again
// on the same port and store, and waits until the test's connection is
// back.
func (s *crashServer) restart(down time.Duration) error {
	s.pubMu.Lock()
	defer s.pubMu.Unlock()
	s.shutdown()
	time.Sleep(down) // the outage
	return s.start()
}

// shutdown shuts the server down.
func (s *crashServer) shutdown() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.srv.Shutdown()
	s.srv = nil
}

// start starts the server again on the same port and store and waits until
// the test's connection is back.
func (s *crashServer) start() error {
	srv, err := natsembed.Start(natsembed.Options{StoreDir: s.storeDir, Listen: s.listen})
	if err != nil {
		return fmt.Errorf("restarting the NATS server on %s: %w", s.listen, err)
	}
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
	deadline := time.Now().Add(crashWait)
	for !s.nc.IsConnected() {
		if time.Now().After(deadline) {
			return fmt.Errorf("the test's client did not reconnect to the restarted NATS server on %s within %s", s.listen, crashWait)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// subjectCount returns how many messages the stream capturing subject
// holds on it; 0 when no stream captures it yet.
func (s *crashServer) subjectCount(subject string) (uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	name, err := s.js.StreamNameBySubject(ctx, subject)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	st, err := s.js.Stream(ctx, name)
	if err != nil {
		return 0, err
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		return 0, err
	}
	return info.State.Subjects[subject], nil
}

var checkpointMetadata = regexp.MustCompile(`(?:^|/)chk-([0-9]+)/_metadata$`)

// newestCheckpoint returns the id of the job's newest complete checkpoint
// (one with its _metadata written) in the job's checkpoint storage, 0 when
// there is none or the storage cannot be read now.
func (s *crashServer) newestCheckpoint(j *crashJob) uint64 {
	var names []string
	switch st := j.Checkpoint.Storage; st.Type {
	case "dir":
		root := st.Path
		if !filepath.IsAbs(root) {
			root = filepath.Join(j.dir, root)
		}
		names, _ = filepath.Glob(filepath.Join(root, "*", "chk-*", "_metadata"))
	case "object_store":
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		obs, err := s.js.ObjectStore(ctx, st.Bucket)
		if err != nil {
			return 0
		}
		infos, err := obs.List(ctx)
		if err != nil {
			return 0
		}
		for _, in := range infos {
			names = append(names, in.Name)
		}
	}
	var newest uint64
	for _, n := range names {
		m := checkpointMetadata.FindStringSubmatch(filepath.ToSlash(n))
		if m == nil {
			continue
		}
		if id, err := strconv.ParseUint(m[1], 10, 64); err == nil {
			newest = max(newest, id)
		}
	}
	return newest
}

// publisher publishes a stream's events in order, in batches with a pause
// between them, up to a target the test raises run by run, so that events
// keep arriving while a job runs.
type publisher struct {
	s       *crashServer
	subject string
	events  [][]byte
	batch   int
	pause   time.Duration

	ctx    context.Context
	cancel context.CancelFunc
	wake   chan struct{}
	done   chan struct{}

	mu        sync.Mutex
	target    int
	published int
	err       error
}

func newPublisher(s *crashServer, subject string, events [][]byte, batch int, pause time.Duration) *publisher {
	ctx, cancel := context.WithCancel(context.Background())
	p := &publisher{s: s, subject: subject, events: events, batch: batch, pause: pause,
		ctx: ctx, cancel: cancel, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go p.loop()
	return p
}

func (p *publisher) loop() {
	defer close(p.done)
	for {
		p.mu.Lock()
		from, to := p.published, min(p.published+p.batch, p.target)
		p.mu.Unlock()
		if from >= to {
			select {
			case <-p.wake:
				continue
			case <-p.ctx.Done():
				return
			}
		}
		p.s.pubMu.Lock()
		ctx, cancel := context.WithTimeout(p.ctx, crashWait)
		err := freqcap.Publish(ctx, p.s.js, p.subject, p.events[from:to], nil)
		cancel()
		p.s.pubMu.Unlock()
		p.mu.Lock()
		if err != nil {
			p.err = fmt.Errorf("publishing events %d to %d: %w", from, to, err)
			p.mu.Unlock()
			return
		}
		p.published = to
		p.mu.Unlock()
		select {
		case <-time.After(p.pause): // the pace of the stream
		case <-p.ctx.Done():
			return
		}
	}
}

// upTo lets the publisher go on up to event n (exclusive).
func (p *publisher) upTo(n int) {
	p.mu.Lock()
	p.target = max(p.target, min(n, len(p.events)))
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// progress returns how many events are published and the publishing
// error, if any.
func (p *publisher) progress() (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.published, p.err
}

// waitAll publishes the rest of the events and waits until every one is
// acknowledged.
func (p *publisher) waitAll(bound time.Duration) error {
	p.upTo(len(p.events))
	deadline := time.Now().Add(bound)
	for {
		n, err := p.progress()
		switch {
		case err != nil:
			return err
		case n == len(p.events):
			return nil
		case time.Now().After(deadline):
			return fmt.Errorf("%d of %d events published after %s", n, len(p.events), bound)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (p *publisher) stop() {
	p.cancel()
	<-p.done
}

// child is one `wasmstream run` process, its output going to a log file.
type child struct {
	cmd     *exec.Cmd
	logPath string
	start   time.Time
	done    chan struct{}
	err     error // of Wait, once done is closed
}

// startChild starts bin with args in dir; fault, when not empty, arms a
// fault point (faultpoint.Env).
func startChild(t *testing.T, bin, dir, logPath, fault string, args ...string) *child {
	t.Helper()
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	env := make([]string, 0, len(os.Environ())+1)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, faultpoint.Env+"=") {
			env = append(env, kv)
		}
	}
	if fault != "" {
		env = append(env, faultpoint.Env+"="+fault)
	}
	cmd.Env = env
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s %s: %v", bin, strings.Join(args, " "), err)
	}
	c := &child{cmd: cmd, logPath: logPath, start: time.Now(), done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(c.kill)
	return c
}

// exited reports whether the process has ended.
func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// waitExit waits up to d for the process to end and reports whether it
// did.
func (c *child) waitExit(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-c.done:
		return true
	case <-t.C:
		return false
	}
}

// kill sends SIGKILL, unless the process has ended, and waits for it to
// end.
func (c *child) kill() {
	if !c.exited() {
		_ = c.cmd.Process.Signal(syscall.SIGKILL)
	}
	<-c.done
}

// sigkilled reports whether the ended process died of SIGKILL.
func (c *child) sigkilled() bool {
	ws, ok := c.cmd.ProcessState.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

// status describes how the ended process ended.
func (c *child) status() string {
	var ee *exec.ExitError
	switch {
	case c.err == nil:
		return "exit status 0"
	case errors.As(c.err, &ee):
		return ee.ProcessState.String()
	}
	return c.err.Error()
}

func (c *child) log() string {
	b, _ := os.ReadFile(c.logPath)
	return string(b)
}

// tail returns the last n lines of the process's output.
func (c *child) tail(n int) string {
	lines := bytes.Split(bytes.TrimRight([]byte(c.log()), "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "\t" + string(bytes.Join(lines, []byte("\n\t")))
}
