// Package server is the agent's HTTP face: Prometheus metrics, health and
// readiness probes, and the JSON API over the node's view. It only reads a
// view.Source, so it is tested on plain data and needs no privileges.
package server

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/exporter-toolkit/web"

	"github.com/leakwatch/leakwatch/pkg/lookup"
	"github.com/leakwatch/leakwatch/pkg/view"
)

// DefaultListen is the address served when Config.Listen is empty: loopback
// only, so that a plain host exposes nothing unless asked to.
const DefaultListen = "127.0.0.1:9753"

// DefaultShutdownTimeout bounds how long Run waits for requests in flight
// once its context ends.
const DefaultShutdownTimeout = 5 * time.Second

// Limits of every connection. A scrape of a busy node or a large JSON list
// is written well within writeTimeout; the header limits keep slow or
// oversized clients from holding the agent's memory. idleTimeout keeps a
// keep-alive connection across a one-minute scrape interval; maxOpenConns
// (limits.go) bounds how many there are.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 64 << 10
)

const (
	logKeyAddr = "addr"
	logKeyErr  = "err"
)

// Config configures the server.
type Config struct {
	// Listen is the TCP address to serve on, DefaultListen when empty. A
	// port of 0 picks a free one; Addr tells which.
	Listen string
	// ShutdownTimeout bounds the graceful shutdown, DefaultShutdownTimeout
	// when zero.
	ShutdownTimeout time.Duration
	// WebConfigFile is a web configuration file in the Prometheus exporter
	// toolkit's format (tls_server_config, basic_auth_users, ...). When set,
	// its TLS, client certificate and basic auth settings guard every
	// endpoint; it is read again on each request and connection, so that
	// rotated certificates and passwords apply without a restart.
	WebConfigFile string
	// EnablePprof serves the agent's own profiles (net/http/pprof) under
	// /debug/pprof/, for profiling the agent itself. Off, those paths are
	// unknown like any other.
	EnablePprof bool
}

// Validate reports whether the configuration can be served.
func (c Config) Validate() error {
	if c.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Listen); err != nil {
			return fmt.Errorf("listen address %q: %w", c.Listen, err)
		}
	}
	if c.ShutdownTimeout < 0 {
		return fmt.Errorf("negative shutdown timeout %s", c.ShutdownTimeout)
	}
	// Checked before serving so that a typo stops the agent at startup
	// rather than leaving it unprotected or refusing every request.
	// An empty or comment-only file is refused too: the toolkit would serve
	// everything to anyone with it.
	if c.WebConfigFile != "" {
		return validateWebConfig(c.WebConfigFile)
	}
	return nil
}

// Scheme is the scheme of the server's URLs: "https" when the web config
// file has a tls_server_config, as the exporter toolkit decides to serve
// TLS, else "http". Like the toolkit it reads the file once, so a TLS
// section added while running applies at the next start. A configuration
// that Validate refuses has no scheme.
func (c Config) Scheme() (string, error) {
	if err := c.Validate(); err != nil {
		return "", err
	}
	if c.WebConfigFile == "" {
		return "http", nil
	}
	wc, _, err := readWebConfig(c.WebConfigFile)
	if err != nil {
		return "", fmt.Errorf("web config file %s: %w", c.WebConfigFile, err)
	}
	if wc.TLSConfig.IsEnabled() {
		return "https", nil
	}
	return "http", nil
}

// Server serves the HTTP endpoints of one agent.
type Server struct {
	cfg       Config
	src       view.Source
	logger    *slog.Logger
	handler   http.Handler
	http      *http.Server
	listening chan struct{}
	// profiles bounds the container profiles built at once, pprofRuns the
	// agent's own profiles and traces that last seconds.
	profiles  *limiter
	pprofRuns *limiter
	metrics   *serverMetrics
	// pages shares the large responses among the requests of one view;
	// scrapes and lists bound the requests served them at once.
	pages   *pageCache
	scrapes *limiter
	lists   *limiter

	mu      sync.Mutex
	addr    string
	started bool
	closed  bool
}

// New returns a server over src that serves reg's metrics on /metrics. It
// does not listen until Run.
func New(cfg Config, src view.Source, reg prometheus.Gatherer, logger *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if src == nil {
		return nil, errors.New("server: nil view source")
	}
	if reg == nil {
		return nil, errors.New("server: nil metrics gatherer")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = DefaultShutdownTimeout
	}
	s := &Server{
		cfg:       cfg,
		src:       src,
		logger:    logger,
		listening: make(chan struct{}),

		profiles:  newLimiter(maxConcurrentProfiles, profileRetryAfter, "too many profiles are being built; retry later"),
		pprofRuns: newLimiter(maxConcurrentPprofRuns, pprofRetryAfter, "the agent is already profiling itself; retry later"),
		metrics:   newServerMetrics(),
		pages:     newPageCache(),
		scrapes:   newLimiter(maxConcurrentPages, time.Second, "too many scrapes at once; retry later"),
		lists:     newLimiter(maxConcurrentPages, time.Second, "too many listings at once; retry later"),
	}
	s.handler = s.routes(reg)
	s.http = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          log.New(httpErrorLog{logger, s.metrics.tlsHandshakeFails.Inc}, "", 0),
	}
	return s, nil
}

// Handler returns the server's routes, for tests and for embedding. It
// carries the request limits but not the authentication of
// Config.WebConfigFile, which Run adds around it.
func (s *Server) Handler() http.Handler { return s.handler }

// Collector exposes the server's own metrics: refused web configs,
// unauthenticated listening, connections and TLS handshakes.
func (s *Server) Collector() prometheus.Collector { return s.metrics }

// Listening is closed once Run has bound its address.
func (s *Server) Listening() <-chan struct{} { return s.listening }

// Addr is the address Run is bound to (with the port it picked, if asked
// for port 0), or "" before it listens.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Run serves until ctx ends, then shuts down gracefully within
// Config.ShutdownTimeout. It returns nil after a clean shutdown or Close, and
// may be called once.
func (s *Server) Run(ctx context.Context) error {
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		return errors.New("server: run after close")
	case s.started:
		s.mu.Unlock()
		return errors.New("server: already running")
	}
	s.started = true
	s.mu.Unlock()

	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", s.cfg.Listen)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("listening on %s: %w; pass --listen", s.cfg.Listen, syscall.EADDRINUSE)
		}
		return fmt.Errorf("listening on %s: %w", s.cfg.Listen, err)
	}
	s.mu.Lock()
	s.addr = ln.Addr().String()
	s.mu.Unlock()
	close(s.listening)
	s.logger.Info("serving HTTP", logKeyAddr, s.addr)
	if s.cfg.WebConfigFile == "" && !isLoopback(ln.Addr()) {
		s.metrics.unauthenticated.Set(1)
		s.logger.Warn("serving beyond loopback without --web.config.file: anyone who reaches the address reads every endpoint; see docs/security.md",
			logKeyAddr, s.addr, "pprof", s.cfg.EnablePprof)
	}

	capped := newConnCap(ln, maxOpenConns, s.metrics)
	s.http.ConnState = capped.track
	served := make(chan error, 1)
	go func() { served <- s.serve(capped) }()

	select {
	case err := <-served:
		// Close ended it, or the listener failed.
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("serving on %s: %w", s.addr, err)
	case <-ctx.Done():
	}

	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
	defer cancel()
	var errs []error
	if err := s.http.Shutdown(shutdownCtx); err != nil {
		// Requests still in flight after the bound are cut.
		errs = append(errs, fmt.Errorf("shutting down HTTP server: %w", err), s.http.Close())
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		errs = append(errs, fmt.Errorf("serving on %s: %w", s.addr, err))
	}
	return errors.Join(errs...)
}

// serve serves ln, through the exporter toolkit when a web config file
// turns on TLS or authentication.
func (s *Server) serve(ln net.Listener) error {
	if s.cfg.WebConfigFile == "" {
		return s.http.Serve(ln)
	}
	good, _, err := readWebConfig(s.cfg.WebConfigFile)
	if err != nil {
		return fmt.Errorf("web config file %s: %w", s.cfg.WebConfigFile, err)
	}
	s.http.Handler = newWebGuard(s.cfg.WebConfigFile, good, s.http.Handler, s.logger, s.metrics.webConfigRefused.Inc)
	addrs := []string{s.addr}
	return web.Serve(ln, s.http, &web.FlagConfig{
		WebListenAddresses: &addrs,
		WebConfigFile:      &s.cfg.WebConfigFile,
	}, s.logger)
}

// Close stops serving at once, dropping requests in flight. It is safe to
// call more than once, and before or without Run.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	if err := s.http.Close(); err != nil {
		return fmt.Errorf("closing HTTP server: %w", err)
	}
	return nil
}

// routes registers each path twice: the GET pattern serves it, and the bare
// pattern, less specific, catches every other method with a JSON 405. The
// catch-all "/" answers unknown paths with a JSON 404.
func (s *Server) routes(reg prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	get := func(path string, h http.Handler) {
		mux.Handle("GET "+path, h)
		mux.Handle(path, methodNotAllowed(http.MethodGet, http.MethodHead))
	}
	get("/metrics", s.metricsHandler(reg))
	get("/healthz", http.HandlerFunc(s.healthz))
	get("/readyz", http.HandlerFunc(s.readyz))
	get("/api/v1/containers", http.HandlerFunc(s.listContainers))
	get("/api/v1/containers/{id}", http.HandlerFunc(s.getContainer))
	get("/api/v1/containers/{id}/profile", http.HandlerFunc(s.getProfile))
	get("/api/v1/oomkills", http.HandlerFunc(s.listOOMKills))
	get("/api/v1/oomkills/{seq}/profile", http.HandlerFunc(s.getOOMProfile))
	var symbolPath string
	if s.cfg.EnablePprof {
		// Not through get: s.pprof checks the method, as symbol takes POST too.
		mux.HandleFunc(pprofPrefix, s.pprof)
		symbolPath = pprofSymbolPath
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint "+lookup.Quote(r.URL.Path))
	})
	return guard(mux, symbolPath)
}

// httpErrorLog takes the HTTP server's error log. A failed TLS handshake
// is what every port scan, load balancer health check and client that
// does not trust the certificate causes: it is counted and logged at
// debug, where a WARN each would flood the log. The rest is a warning.
type httpErrorLog struct {
	logger       *slog.Logger
	tlsHandshake func()
}

func (l httpErrorLog) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	if strings.Contains(msg, "TLS handshake error") {
		l.tlsHandshake()
		l.logger.Debug("HTTP server", logKeyErr, msg)
		return len(p), nil
	}
	l.logger.Warn("HTTP server", logKeyErr, msg)
	return len(p), nil
}

// isLoopback reports whether addr is reachable from this host only.
func isLoopback(addr net.Addr) bool {
	tcp, ok := addr.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}
