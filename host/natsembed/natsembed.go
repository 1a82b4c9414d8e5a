// Package natsembed runs a NATS server with JetStream inside the wasmstream
// process, for single-binary demos, development and tests.
package natsembed

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Options configures an embedded server.
type Options struct {
	// StoreDir is where JetStream keeps its data. Required.
	StoreDir string
	// Listen is the client address as host:port. Empty listens on
	// 127.0.0.1 with a random free port; a port of 0 or -1 also picks a
	// random one.
	Listen string
	// ReadyTimeout bounds the wait for the server to accept connections
	// (default 10s).
	ReadyTimeout time.Duration
	// Logf, when set, receives the server's log lines (notices, warnings
	// and errors; debug too with Debug). When nil the server is silent.
	Logf  func(format string, args ...any)
	Debug bool
}

// Server is a running embedded server.
type Server struct {
	*server.Server
	// URL is the client URL, e.g. nats://127.0.0.1:40123.
	URL string
}

// Start starts a server with JetStream storing in opts.StoreDir and waits
// until it accepts connections.
func Start(opts Options) (*Server, error) {
	if opts.StoreDir == "" {
		return nil, errors.New("natsembed: StoreDir is empty: give a directory for JetStream data")
	}
	if err := os.MkdirAll(opts.StoreDir, 0o755); err != nil {
		return nil, fmt.Errorf("natsembed: store dir: %w", err)
	}
	host, port := "127.0.0.1", server.RANDOM_PORT
	if opts.Listen != "" {
		h, p, err := net.SplitHostPort(opts.Listen)
		if err != nil {
			return nil, fmt.Errorf("natsembed: listen address %q: %v: use host:port, e.g. 127.0.0.1:4222", opts.Listen, err)
		}
		n, err := strconv.Atoi(p)
		if err != nil || n < -1 || n > 65535 {
			return nil, fmt.Errorf("natsembed: listen address %q: port must be 0..65535", opts.Listen)
		}
		if n == 0 {
			n = server.RANDOM_PORT
		}
		if h != "" {
			host = h
		}
		port = n
	}
	so := &server.Options{
		ServerName: "wasmstream-embedded",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   opts.StoreDir,
		NoSigs:     true,
		NoLog:      opts.Logf == nil,
		Debug:      opts.Debug,
		// The HTTP monitor, clustering and leaf nodes stay off.
	}
	s, err := server.NewServer(so)
	if err != nil {
		return nil, fmt.Errorf("natsembed: %w", err)
	}
	if opts.Logf != nil {
		s.SetLoggerV2(logger{opts.Logf}, opts.Debug, false, false)
	}
	go s.Start()
	wait := opts.ReadyTimeout
	if wait <= 0 {
		wait = 10 * time.Second
	}
	if !s.ReadyForConnections(wait) {
		s.Shutdown()
		return nil, fmt.Errorf("natsembed: server on %s:%d not ready after %s: is the port in use, or the store dir %s unwritable?", host, port, wait, opts.StoreDir)
	}
	if !s.JetStreamEnabled() {
		s.Shutdown()
		return nil, fmt.Errorf("natsembed: JetStream did not start with store dir %s: check it is writable", opts.StoreDir)
	}
	return &Server{Server: s, URL: s.ClientURL()}, nil
}

// Shutdown stops the server and waits until it has stopped.
func (s *Server) Shutdown() {
	s.Server.Shutdown()
	s.Server.WaitForShutdown()
}

type logger struct{ logf func(string, ...any) }

func (l logger) Noticef(f string, a ...any) { l.logf("nats: "+f, a...) }
func (l logger) Warnf(f string, a ...any)   { l.logf("nats: warning: "+f, a...) }
func (l logger) Fatalf(f string, a ...any)  { l.logf("nats: fatal: "+f, a...) }
func (l logger) Errorf(f string, a ...any)  { l.logf("nats: error: "+f, a...) }
func (l logger) Debugf(f string, a ...any)  { l.logf("nats: debug: "+f, a...) }
func (l logger) Tracef(f string, a ...any)  { l.logf("nats: trace: "+f, a...) }
