package server

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// The connection limits are set on the server; the slow-client test below
// shows the header timeout at work.
func TestConnectionLimits(t *testing.T) {
	s := newTestServer(t, newTestSource())
	for name, tc := range map[string]struct{ got, want time.Duration }{
		"ReadHeaderTimeout": {s.http.ReadHeaderTimeout, readHeaderTimeout},
		"ReadTimeout":       {s.http.ReadTimeout, readTimeout},
		"WriteTimeout":      {s.http.WriteTimeout, writeTimeout},
		"IdleTimeout":       {s.http.IdleTimeout, idleTimeout},
	} {
		if tc.got != tc.want || tc.got <= 0 {
			t.Errorf("%s = %v, want %v", name, tc.got, tc.want)
		}
	}
	if s.http.MaxHeaderBytes != maxHeaderBytes {
		t.Errorf("MaxHeaderBytes = %d, want %d", s.http.MaxHeaderBytes, maxHeaderBytes)
	}
	// Building a profile must end before the response's write deadline.
	if profileTimeout >= writeTimeout {
		t.Errorf("profileTimeout %v is not under writeTimeout %v", profileTimeout, writeTimeout)
	}
}

// A client that opens a connection and sends its headers too slowly is
// cut off after readHeaderTimeout.
func TestSlowHeadersAreCut(t *testing.T) {
	t.Parallel()
	s := startServer(t, Config{}, newTestSource())
	conn, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	if _, err := io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_ = conn.SetReadDeadline(start.Add(readHeaderTimeout + 5*time.Second))
	_, err = io.ReadAll(conn) // ends when the server closes the connection
	if elapsed := time.Since(start); err != nil || elapsed > readHeaderTimeout+2*time.Second {
		t.Errorf("connection with unfinished headers still open after %v (%v)", elapsed, err)
	}
}

// Headers over maxHeaderBytes are refused with 431 before any handler runs.
func TestOversizedHeaders(t *testing.T) {
	s := startServer(t, Config{}, newTestSource())
	req, err := http.NewRequest(http.MethodGet, "http://"+s.Addr()+"/healthz", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Filler", strings.Repeat("a", 2*maxHeaderBytes))
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("status %d, want 431", resp.StatusCode)
	}
}

// No endpoint takes a body; one of any size or of unknown length is
// refused with a JSON 413, whatever the method and path.
func TestRequestBodyRefused(t *testing.T) {
	h := newTestServer(t, newTestSource()).Handler()
	for _, tc := range []struct {
		method, target string
		body           io.Reader
		length         int64
	}{
		{http.MethodGet, "/api/v1/containers", strings.NewReader("x"), 1},
		{http.MethodPost, "/metrics", strings.NewReader(strings.Repeat("x", 1<<20)), 1 << 20},
		{http.MethodPut, "/nope", strings.NewReader("{}"), 2},
		{http.MethodGet, "/healthz", strings.NewReader("chunked"), -1},
	} {
		req := httptest.NewRequest(tc.method, tc.target, tc.body)
		req.ContentLength = tc.length
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		e := decode[errorBody](t, rec, http.StatusRequestEntityTooLarge)
		if e.Error == "" {
			t.Errorf("%s %s: empty error", tc.method, tc.target)
		}
	}
	if rec := do(t, h, http.MethodGet, "/healthz"); rec.Code != http.StatusOK {
		t.Errorf("GET without a body: %d", rec.Code)
	}
}

// Over the network a large body is refused without being read, and the
// connection is closed rather than reused for the rest of the body.
func TestRequestBodyRefusedOverTCP(t *testing.T) {
	s := startServer(t, Config{}, newTestSource())
	conn, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "POST /api/v1/containers HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", 64<<20)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !resp.Close {
		t.Errorf("status %d, close %v: want 413 and the connection closed", resp.StatusCode, resp.Close)
	}
}

// blockingProfiles builds profiles only when told to, to hold the
// profile slots.
type blockingProfiles struct {
	*profileSource
	entered chan struct{}
	release chan struct{}
}

func (b *blockingProfiles) Profile(ctx context.Context, id, kind string, window time.Duration) ([]byte, error) {
	b.entered <- struct{}{}
	select {
	case <-b.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return b.profileSource.Profile(ctx, id, kind, window)
}

// At most maxConcurrentProfiles profiles are built at once; beyond that a
// client is told with a JSON 429 and Retry-After to come back, at once and
// without waiting for a slot.
func TestProfileConcurrencyLimit(t *testing.T) {
	src := &blockingProfiles{
		profileSource: &profileSource{fakeSource: newTestSource()},
		entered:       make(chan struct{}),
		release:       make(chan struct{}),
	}
	h := newTestServer(t, src).Handler()
	const target = "/api/v1/containers/100/profile"

	var wg sync.WaitGroup
	codes := make(chan int, maxConcurrentProfiles)
	for range maxConcurrentProfiles {
		wg.Go(func() {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
			codes <- rec.Code
		})
		<-src.entered
	}

	rec := do(t, h, http.MethodGet, target)
	if e := decode[errorBody](t, rec, http.StatusTooManyRequests); e.Error == "" {
		t.Error("429 without an error message")
	}
	if rec.Header().Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	// Bad parameters are still answered 400 while the slots are busy, and
	// the other endpoints are not limited.
	if rec := do(t, h, http.MethodGet, target+"?type=heap"); rec.Code != http.StatusBadRequest {
		t.Errorf("bad type while busy: %d, want 400", rec.Code)
	}
	if rec := do(t, h, http.MethodGet, "/api/v1/containers"); rec.Code != http.StatusOK {
		t.Errorf("containers while profiles are built: %d", rec.Code)
	}

	close(src.release)
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != http.StatusOK {
			t.Errorf("a profile holding a slot ended with %d", c)
		}
	}
	// The slots are free again.
	go func() { <-src.entered }()
	if rec := do(t, h, http.MethodGet, target); rec.Code != http.StatusOK {
		t.Errorf("profile after the others ended: %d, want 200", rec.Code)
	}
}

// 2,000 idle keep-alive connections cost the agent at most maxOpenConns
// connections (goroutines, descriptors), and Prometheus arriving after
// them is still served: a new connection takes an idle one's place.
func TestIdleConnectionFloodIsCapped(t *testing.T) {
	const flood = 2000
	reg := newTestRegistry()
	s, err := New(Config{Listen: "127.0.0.1:0"}, newTestSource(), reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	reg.MustRegister(s.Collector())
	runServer(t, s)
	base := runtime.NumGoroutine()

	conns := make([]net.Conn, 0, flood)
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	deadline := time.Now().Add(60 * time.Second)
	for i := range flood {
		c, err := net.DialTimeout("tcp", s.Addr(), 5*time.Second)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		conns = append(conns, c)
		_ = c.SetDeadline(deadline)
		// One request, answered, leaves the connection idle and kept alive.
		if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}
	// The server's goroutines: one per connection it holds. Those it closed
	// end as soon as they see the close.
	var held int
	for start := time.Now(); time.Since(start) < 10*time.Second; time.Sleep(50 * time.Millisecond) {
		if held = runtime.NumGoroutine() - base; held <= maxOpenConns+8 {
			break
		}
	}
	if held > maxOpenConns+8 {
		t.Errorf("%d goroutines more with %d idle connections, want at most %d", held, flood, maxOpenConns+8)
	}
	if got := testutil.ToFloat64(s.metrics.connsEvicted); got < flood-maxOpenConns {
		t.Errorf("connections_evicted_total = %v, want at least %d", got, flood-maxOpenConns)
	}

	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	start := time.Now()
	if status, err := get(t, c, "http://"+s.Addr()+"/metrics", "", ""); err != nil || status != http.StatusOK {
		t.Errorf("scrape after the flood: %d %v, want 200", status, err)
	}
	t.Logf("%d idle connections: %d goroutines held, scrape after them took %v", flood, held, time.Since(start))
}

// When every slot holds a connection that is not idle (here: connected,
// headers not sent yet), a new one is closed at once and counted; the
// slots free once the header timeout cuts the silent ones.
func TestConnectionCapRejectsWhenNoneIdle(t *testing.T) {
	t.Parallel()
	s := startServer(t, Config{}, newTestSource())
	silent := make([]net.Conn, 0, maxOpenConns)
	defer func() {
		for _, c := range silent {
			_ = c.Close()
		}
	}()
	for range maxOpenConns {
		c, err := net.DialTimeout("tcp", s.Addr(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		silent = append(silent, c)
	}
	// The server accepts in its own goroutine: wait until all are counted.
	for start := time.Now(); testutil.ToFloat64(s.metrics.connsRejected) == 0 && time.Since(start) < readHeaderTimeout; time.Sleep(20 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", s.Addr(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		_, err = c.Read(make([]byte, 1))
		_ = c.Close()
		if err == nil {
			t.Fatal("a connection beyond the cap was served")
		}
	}
	if testutil.ToFloat64(s.metrics.connsRejected) == 0 {
		t.Fatal("no connection rejected with every slot held")
	}
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 3 * readHeaderTimeout}
	if status, err := get(t, c, "http://"+s.Addr()+"/healthz", "", ""); err != nil || status != http.StatusOK {
		// Retried until the silent connections are cut.
		deadline := time.Now().Add(2 * readHeaderTimeout)
		for time.Now().Before(deadline) && (err != nil || status != http.StatusOK) {
			time.Sleep(200 * time.Millisecond)
			status, err = get(t, c, "http://"+s.Addr()+"/healthz", "", "")
		}
		if err != nil || status != http.StatusOK {
			t.Errorf("after the header timeout: %d %v, want 200", status, err)
		}
	}
}
