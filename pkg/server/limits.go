package server

import (
	"io"
	"net"
	"net/http"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/leakwatch/leakwatch/pkg/lookup"
)

// maxOpenConns caps the connections open at once. Prometheus (a few
// replicas, each holding one keep-alive connection), a federation and a few
// humans with curl or the CLI need a handful; each connection costs a
// goroutine, a file descriptor and buffers, so thousands of idle ones cost
// the agent tens of MiB.
const maxOpenConns = 64

// maxConcurrentProfiles bounds the profiles built at once. Building one
// walks the tracer's live allocations and symbolizes their stacks, the most
// CPU and memory a request can cost; a few scrapers or an attacker asking
// in a loop must not multiply that.
const maxConcurrentProfiles = 2

// profileRetryAfter is what a client asking beyond maxConcurrentProfiles is
// told to wait: about the time one profile takes to build.
const profileRetryAfter = 5 * time.Second

// maxSymbolRequestBytes bounds the program addresses pprof posts to be
// symbolized, the only request body the agent reads.
const maxSymbolRequestBytes = 1 << 20

// guard answers the requests no route should see, with the same JSON
// errors as the routes. A body is refused: no endpoint reads one, so it is
// either a mistake or an attempt to hold the agent's memory or connections;
// one of unknown length (chunked) is refused too. The exception is a POST
// to symbolPath, when set: pprof's symbol lookup, at most
// maxSymbolRequestBytes. The target "*" (which only OPTIONS may use, and
// which the HTTP server answers itself) would otherwise get ServeMux's bare
// 400.
func guard(next http.Handler, symbolPath string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := r.URL.EscapedPath(); !strings.HasPrefix(p, "/") && r.RequestURI != "*" {
			// A target with no path ("A:", an authority for CONNECT)
			// would get ServeMux's plain-text 404.
			writeError(w, http.StatusNotFound, "no such endpoint "+lookup.Quote(r.RequestURI)+": the target has no path")
			return
		} else if p != cleanPath(p) {
			// ServeMux would redirect to the clean path (307); no client
			// of the agent writes such a path, so it names nothing.
			writeError(w, http.StatusNotFound, "no such endpoint "+lookup.Quote(r.URL.Path)+": the path is not in clean form")
			return
		}
		if strings.HasSuffix(r.URL.Path, "/symbolz") {
			symbolz(w, r)
			return
		}
		var maxBody int64
		if symbolPath != "" && r.Method == http.MethodPost && r.URL.Path == symbolPath {
			maxBody = maxSymbolRequestBytes
		}
		if (r.ContentLength < 0 && maxBody == 0) || r.ContentLength > maxBody {
			// The connection is not reused: the unread body would be parsed
			// as the next request.
			w.Header().Set("Connection", "close")
			writeError(w, http.StatusRequestEntityTooLarge, "request bodies are not accepted")
			return
		}
		if r.RequestURI == "*" {
			writeError(w, http.StatusBadRequest, "request target * is not served")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		next.ServeHTTP(w, r)
	})
}

// symbolz answers pprof's remote symbolization, which `go tool pprof URL`
// asks for next to a profile that has addresses without functions: the
// agent symbolizes what it can before serving, so it has nothing to add.
// "num_symbols: 0" (GET) and an empty answer (POST) tell pprof so, where
// an error would make it give up. The addresses posted are not read: the
// answer does not depend on them, and reading would let anyone make the
// agent take in a body. The connection closes instead, so that the unread
// body is not parsed as the next request.
func symbolz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		_, _ = io.WriteString(w, "num_symbols: 0\n")
	case http.MethodPost:
		if r.ContentLength != 0 {
			w.Header().Set("Connection", "close")
		}
	default:
		writeError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed")
	}
}

// cleanPath is p as ServeMux cleans it: no dot segments, no doubled
// slashes, a trailing slash kept.
func cleanPath(p string) string {
	if p == "" || p == "*" {
		return p
	}
	c := path.Clean(p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c
}

// limiter hands out a fixed number of slots for costly requests, without
// waiting: a client asking when all are taken is told with a JSON 429 and
// Retry-After to come back, so that no request queues up behind another.
type limiter struct {
	slots      chan struct{}
	retryAfter time.Duration
	busy       string
}

func newLimiter(n int, retryAfter time.Duration, busy string) *limiter {
	return &limiter{slots: make(chan struct{}, n), retryAfter: retryAfter, busy: busy}
}

// acquire takes a slot, or answers 429 and returns false when all are
// taken. The caller releases a slot it got.
func (l *limiter) acquire(w http.ResponseWriter) bool {
	select {
	case l.slots <- struct{}{}:
		return true
	default:
		w.Header().Set("Retry-After", strconv.Itoa(int(l.retryAfter/time.Second)))
		writeError(w, http.StatusTooManyRequests, l.busy)
		return false
	}
}

func (l *limiter) release() { <-l.slots }

// connCap is a listener that keeps at most max connections open. When full,
// a new connection takes the place of an idle keep-alive one, so that a
// client holding many idle connections cannot lock Prometheus out; when
// none is idle (all are being served, or still sending their headers,
// which readHeaderTimeout bounds), the new one is closed at once. The
// server reports each connection's state through track (its ConnState).
type connCap struct {
	net.Listener
	max      int
	rejected func()
	evicted  func()

	mu    sync.Mutex
	conns map[net.Conn]http.ConnState
}

func newConnCap(ln net.Listener, maxConns int, m *serverMetrics) *connCap {
	return &connCap{
		Listener: ln,
		max:      maxConns,
		rejected: m.connsRejected.Inc,
		evicted:  m.connsEvicted.Inc,
		conns:    make(map[net.Conn]http.ConnState),
	}
}

func (l *connCap) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.admit(c) {
			return c, nil
		}
		_ = c.Close()
		l.rejected()
	}
}

func (l *connCap) admit(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.conns) >= l.max {
		var idle net.Conn
		for conn, st := range l.conns {
			if st == http.StateIdle {
				idle = conn
				break
			}
		}
		if idle == nil {
			return false
		}
		// The server sees the close as a read error and reports it closed.
		_ = idle.Close()
		delete(l.conns, idle)
		l.evicted()
	}
	l.conns[c] = http.StateNew
	return true
}

// track is the server's ConnState hook. A TLS connection is reported as
// the *tls.Conn over the one Accept returned.
func (l *connCap) track(c net.Conn, st http.ConnState) {
	if tc, ok := c.(interface{ NetConn() net.Conn }); ok {
		c = tc.NetConn()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.conns[c]; !ok {
		return
	}
	switch st {
	case http.StateClosed, http.StateHijacked:
		delete(l.conns, c)
	default:
		l.conns[c] = st
	}
}
