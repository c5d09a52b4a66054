package server

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// logBuffer collects a server's log lines; the server logs from its
// connections' goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newLogBuffer() (*logBuffer, *slog.Logger) {
	b := &logBuffer{}
	return b, slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// startLogged runs a server with cfg (its Listen kept) until the test
// ends, logging into the returned buffer.
func startLogged(t *testing.T, cfg Config) (*Server, *logBuffer) {
	t.Helper()
	logs, logger := newLogBuffer()
	s, err := New(cfg, newTestSource(), newTestRegistry(), logger)
	if err != nil {
		t.Fatal(err)
	}
	runServer(t, s)
	return s, logs
}

// A web config file that grants no protection (empty, comments only, an
// empty TLS section or user list) is refused at start, naming the reason:
// the toolkit would serve every endpoint to anyone with it.
func TestWebConfigWithoutProtectionIsRefused(t *testing.T) {
	for name, content := range map[string]string{
		"empty":         "",
		"comments only": "# basic_auth_users:\n#   prometheus: $2y$...\n",
		"empty TLS":     "tls_server_config: {}\n",
		"no users":      "basic_auth_users: {}\n",
		"headers only":  "http_server_config:\n  headers:\n    X-Frame-Options: deny\n",
	} {
		t.Run(name, func(t *testing.T) {
			path := writeWebConfig(t, t.TempDir(), content)
			_, err := New(Config{WebConfigFile: path}, newTestSource(), prometheus.NewRegistry(), nil)
			if !errors.Is(err, errNoProtection) || !strings.Contains(err.Error(), path) {
				t.Errorf("New: %v, want %v naming %s", err, errNoProtection, path)
			}
		})
	}
}

// A file emptied (or left with comments only) while running does not open
// the agent: the last good file stays in force, the refusal is logged and
// counted once. A garbage or deleted file fails closed; a good one written
// back is used again.
func TestWebConfigEmptiedWhileRunningKeepsLastGood(t *testing.T) {
	dir := t.TempDir()
	good := "basic_auth_users:\n  " + testUser + ": " + bcryptHash(t, testPassword) + "\n"
	path := writeWebConfig(t, dir, good)
	s, logs := startLogged(t, Config{Listen: "127.0.0.1:0", WebConfigFile: path})
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	url := "http://" + s.Addr() + "/api/v1/containers"
	expect := func(stage, user, password string, want int) {
		t.Helper()
		if status, err := get(t, c, url, user, password); err != nil || status != want {
			t.Errorf("%s: status %d, %v; want %d", stage, status, err, want)
		}
	}
	expect("good file, no credentials", "", "", http.StatusUnauthorized)
	expect("good file, credentials", testUser, testPassword, http.StatusOK)

	for _, emptied := range []string{"", "# emptied by a bad rollout\n"} {
		writeWebConfig(t, dir, emptied)
		for range 3 {
			expect("emptied file, no credentials", "", "", http.StatusUnauthorized)
			expect("emptied file, wrong password", testUser, "wrong", http.StatusUnauthorized)
			expect("emptied file, credentials", testUser, testPassword, http.StatusOK)
		}
	}
	if got := testutil.ToFloat64(s.metrics.webConfigRefused); got != 2 {
		t.Errorf("config_refused_total = %v after two bad contents, want 2", got)
	}
	if n := strings.Count(logs.String(), "refusing the web config file"); n != 2 {
		t.Errorf("%d refusal log lines, want 2:\n%s", n, logs)
	}

	writeWebConfig(t, dir, "{{{ not yaml")
	expect("garbage file, credentials", testUser, testPassword, http.StatusInternalServerError)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	expect("deleted file, credentials", testUser, testPassword, http.StatusInternalServerError)

	writeWebConfig(t, dir, good)
	expect("good file again, no credentials", "", "", http.StatusUnauthorized)
	expect("good file again, credentials", testUser, testPassword, http.StatusOK)
}

// Serving beyond loopback without a web config logs a warning at start and
// sets leakwatch_web_unauthenticated; loopback does neither.
func TestUnauthenticatedListenWarns(t *testing.T) {
	for _, tc := range []struct {
		listen string
		want   float64
	}{
		{"127.0.0.1:0", 0},
		{"0.0.0.0:0", 1},
	} {
		s, logs := startLogged(t, Config{Listen: tc.listen, EnablePprof: true})
		if got := testutil.ToFloat64(s.metrics.unauthenticated); got != tc.want {
			t.Errorf("%s: leakwatch_web_unauthenticated = %v, want %v", tc.listen, got, tc.want)
		}
		warned := strings.Contains(logs.String(), "level=WARN msg=\"serving beyond loopback without --web.config.file")
		if warned != (tc.want == 1) {
			t.Errorf("%s: warned %v, want %v:\n%s", tc.listen, warned, tc.want == 1, logs)
		}
	}
}

// The server's own metrics are served on /metrics once registered.
func TestServerMetricsExposed(t *testing.T) {
	reg := newTestRegistry()
	s, err := New(Config{Listen: "127.0.0.1:0"}, newTestSource(), reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	reg.MustRegister(s.Collector())
	runServer(t, s)
	resp, err := http.Get("http://" + s.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	body := string(b)
	for _, name := range []string{"leakwatch_web_config_refused_total", "leakwatch_web_unauthenticated", "leakwatch_http_connections_rejected_total", "leakwatch_http_tls_handshake_errors_total"} {
		if !strings.Contains(body, "\n"+name+" ") {
			t.Errorf("/metrics lacks %s", name)
		}
	}
}
