package server

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/pprof/profile"
)

// newPprofServer is a server with the agent's own profiles on.
func newPprofServer(t *testing.T) *Server {
	t.Helper()
	s, err := New(Config{Listen: "127.0.0.1:0", EnablePprof: true}, newTestSource(), newTestRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// Off by default, /debug/pprof/ is unknown like any other path, over the
// network too: net/http/pprof registered itself on http.DefaultServeMux,
// which the server must never serve.
func TestPprofOffByDefault(t *testing.T) {
	s := startServer(t, Config{}, newTestSource())
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/cmdline", "/debug/pprof/profile?seconds=1"} {
		resp, err := c.Get("http://" + s.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound || resp.Header.Get("Content-Type") != "application/json" || !strings.Contains(string(body), `"error"`) {
			t.Errorf("%s: %d %s %q, want a JSON 404", path, resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
	}
	// Nor does the symbol lookup take a body then.
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/debug/pprof/symbol", strings.NewReader("0x1")))
	decode[errorBody](t, rec, http.StatusRequestEntityTooLarge)
}

// On, /debug/pprof/heap is a Go heap profile that pprof reads, and the
// other endpoints of net/http/pprof answer.
func TestPprofServesProfiles(t *testing.T) {
	h := newPprofServer(t).Handler()

	rec := do(t, h, http.MethodGet, "/debug/pprof/heap")
	if rec.Code != http.StatusOK {
		t.Fatalf("heap: %d %q", rec.Code, rec.Body)
	}
	p, err := profile.Parse(rec.Body)
	if err != nil {
		t.Fatalf("heap profile does not parse: %v", err)
	}
	if len(p.SampleType) == 0 || p.SampleType[len(p.SampleType)-1].Type != "inuse_space" {
		t.Errorf("heap profile sample types %v, want inuse_space last", p.SampleType)
	}

	for _, tc := range []struct{ target, contentType, contains string }{
		{"/debug/pprof/", "text/html", "goroutine"},
		{"/debug/pprof/cmdline", "text/plain", ""},
		{"/debug/pprof/goroutine?debug=1", "text/plain", "goroutine profile:"},
		{"/debug/pprof/allocs", "application/octet-stream", ""},
		{"/debug/pprof/symbol", "text/plain", "num_symbols: 1"},
	} {
		rec := do(t, h, http.MethodGet, tc.target)
		if rec.Code != http.StatusOK || !strings.HasPrefix(rec.Header().Get("Content-Type"), tc.contentType) || !strings.Contains(rec.Body.String(), tc.contains) {
			t.Errorf("%s: %d %s, want 200 %s with %q", tc.target, rec.Code, rec.Header().Get("Content-Type"), tc.contentType, tc.contains)
		}
	}

	// pprof posts the addresses it wants symbolized: the one body accepted.
	pc, _, _, _ := runtime.Caller(0)
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/debug/pprof/symbol", strings.NewReader(fmt.Sprintf("%#x", pc))))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "TestPprofServesProfiles") {
		t.Errorf("POST symbol: %d %q, want this test's name", rec.Code, rec.Body)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/debug/pprof/symbol", strings.NewReader(strings.Repeat("0x1+", maxSymbolRequestBytes))))
	decode[errorBody](t, rec, http.StatusRequestEntityTooLarge)
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/debug/pprof/heap", strings.NewReader("0x1")))
	decode[errorBody](t, rec, http.StatusRequestEntityTooLarge)
	if rec := do(t, h, http.MethodPut, "/debug/pprof/symbol"); rec.Header().Get("Allow") != "GET, HEAD, POST" {
		t.Errorf("PUT symbol: Allow %q, want GET, HEAD, POST", rec.Header().Get("Allow"))
	}
}

func TestPprofDuration(t *testing.T) {
	for _, tc := range []struct {
		name, seconds string
		want          time.Duration
		bad           bool
	}{
		{"", "5", 0, false},
		{"cmdline", "", 0, false},
		{"symbol", "nope", 0, false},
		{"heap", "", 0, false},
		{"heap", "10", 10 * time.Second, false},
		{"goroutine", "60", time.Minute, false},
		{"profile", "", 30 * time.Second, false},
		{"profile", "60", time.Minute, false},
		{"profile", "61", 0, true},
		{"profile", "0", 0, true},
		{"profile", "2.5", 0, true},
		{"profile", "99999999999999999999", 0, true},
		{"trace", "", time.Second, false},
		{"trace", "0.5", 500 * time.Millisecond, false},
		{"trace", "60.5", 0, true},
		{"trace", "Inf", 0, true},
		{"trace", "1e-400", 0, true},
	} {
		got, err := pprofDuration(tc.name, tc.seconds)
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("pprofDuration(%q, %q) = %v, %v; want %v (error: %v)", tc.name, tc.seconds, got, err, tc.want, tc.bad)
		}
	}
}

// A CPU profile longer than the server's write timeout is delivered
// whole: the deadline moves for it.
func TestPprofProfileOutlastsWriteTimeout(t *testing.T) {
	s, err := New(Config{Listen: "127.0.0.1:0", EnablePprof: true}, newTestSource(), newTestRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	s.http.WriteTimeout = 500 * time.Millisecond
	runServer(t, s)
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + s.Addr() + "/debug/pprof/profile?seconds=2")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	p, err := profile.Parse(resp.Body)
	if err != nil {
		t.Fatalf("CPU profile cut or unreadable: %v", err)
	}
	if d := time.Duration(p.DurationNanos); d < 2*time.Second {
		t.Errorf("profile lasted %v, want 2s", d)
	}
}

// One profile or trace that lasts runs at a time; another is told to come
// back, while the instant profiles and the rest of the API still answer.
func TestPprofConcurrencyLimit(t *testing.T) {
	s := newPprofServer(t)
	h := s.Handler()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/debug/pprof/goroutine?seconds=60", nil)
		h.ServeHTTP(httptest.NewRecorder(), req)
	})
	defer wg.Wait()
	defer cancel()
	for deadline := time.Now().Add(10 * time.Second); len(s.pprofRuns.slots) == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the first profile never took its slot")
		}
		time.Sleep(10 * time.Millisecond)
	}

	rec := do(t, h, http.MethodGet, "/debug/pprof/trace?seconds=1")
	decode[errorBody](t, rec, http.StatusTooManyRequests)
	if rec.Header().Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	for _, target := range []string{"/debug/pprof/heap", "/api/v1/containers"} {
		if rec := do(t, h, http.MethodGet, target); rec.Code != http.StatusOK {
			t.Errorf("%s while profiling: %d", target, rec.Code)
		}
	}
}

// Behind a web config with basic auth, the profiles are as guarded as
// every other endpoint.
func TestPprofBehindBasicAuth(t *testing.T) {
	cfgFile := writeWebConfig(t, t.TempDir(), "basic_auth_users:\n  "+testUser+": "+bcryptHash(t, testPassword)+"\n")
	s := startServer(t, Config{WebConfigFile: cfgFile, EnablePprof: true}, newTestSource())
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/cmdline", "/debug/pprof/profile?seconds=1"} {
		if status, err := get(t, c, "http://"+s.Addr()+path, "", ""); err != nil || status != http.StatusUnauthorized {
			t.Errorf("%s without credentials: %d %v, want 401", path, status, err)
		}
		if status, err := get(t, c, "http://"+s.Addr()+path, testUser, "wrong"); err != nil || status != http.StatusUnauthorized {
			t.Errorf("%s with a wrong password: %d %v, want 401", path, status, err)
		}
	}
	if status, err := get(t, c, "http://"+s.Addr()+"/debug/pprof/heap", testUser, testPassword); err != nil || status != http.StatusOK {
		t.Errorf("heap with credentials: %d %v, want 200", status, err)
	}
}
