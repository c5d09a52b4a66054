package server

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/leakwatch/leakwatch/pkg/view"
)

// rawRequest sends req as written on a new connection to addr and returns
// the response, its body read.
func rawRequest(t *testing.T, addr, req string) (*http.Response, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	return resp, string(body)
}

// agentProfiles reads ids as the agent's Profile does, as a number: "0100"
// is container 100 to it.
type agentProfiles struct{ *profileSource }

func (a agentProfiles) Profile(ctx context.Context, id, kind string, window time.Duration) ([]byte, error) {
	n, err := strconv.ParseUint(id, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("container %q: %w", id, view.ErrNotFound)
	}
	return a.profileSource.Profile(ctx, strconv.FormatUint(n, 10), kind, window)
}

// An id that names no container is 404 on the container and on its
// profile alike, leading zeros or not: both resolve it through pkg/lookup,
// and the source is asked for the id found, never for what was typed.
func TestProfileIDResolvedLikeContainer(t *testing.T) {
	src := agentProfiles{&profileSource{fakeSource: newTestSource()}}
	s := startServer(t, Config{}, src)
	for _, id := range []string{"0100", "00100", "100%2F", "+100", "1e2"} {
		for _, path := range []string{"/api/v1/containers/" + id, "/api/v1/containers/" + id + "/profile"} {
			resp, _ := rawRequest(t, s.Addr(), "GET "+path+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("GET %s: %d, want 404", path, resp.StatusCode)
			}
		}
	}
	resp, _ := rawRequest(t, s.Addr(), "GET /api/v1/containers/100/profile HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET the profile of 100: %d, want 200", resp.StatusCode)
	}
}

// A long id is not echoed back whole in the 404.
func TestLongIDNotEchoed(t *testing.T) {
	s := startServer(t, Config{}, &profileSource{fakeSource: newTestSource()})
	id := strings.Repeat("a", 60<<10)
	for _, path := range []string{"/api/v1/containers/" + id, "/api/v1/containers/" + id + "/profile", "/" + id} {
		resp, body := rawRequest(t, s.Addr(), "GET "+path+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		var e struct{ Error string }
		if err := json.Unmarshal([]byte(body), &e); err != nil || resp.StatusCode/100 != 4 {
			t.Errorf("GET %.40s...: %d %.200q, want a JSON 4xx", path, resp.StatusCode, body)
		}
		if len(body) > 1024 {
			t.Errorf("GET %.40s...: %d bytes of body, want the id cut short", path, len(body))
		}
	}
}

// A path with dot segments is not redirected (ServeMux would answer 307 to
// its clean form): it is not a path any client of the agent writes.
func TestDotSegmentsNotRedirected(t *testing.T) {
	s := startServer(t, Config{}, newTestSource())
	for _, path := range []string{"/api/v1/../metrics", "/api/v1/containers/../../healthz", "/./healthz", "//metrics", "/api/v1/containers/100/."} {
		resp, body := rawRequest(t, s.Addr(), "GET "+path+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		if resp.StatusCode != http.StatusNotFound || resp.Header.Get("Location") != "" {
			t.Errorf("GET %s: %d (Location %q) %q, want 404 and no redirect", path, resp.StatusCode, resp.Header.Get("Location"), body)
		}
	}
}

// With pprof off, a POST to a symbolz path is answered without reading its
// body: the answer comes while the body is still being sent.
func TestSymbolzBodyNotRead(t *testing.T) {
	s := startServer(t, Config{}, newTestSource())
	c, err := net.DialTimeout("tcp", s.Addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	_ = c.SetDeadline(time.Now().Add(readTimeout + 5*time.Second))
	// A chunked body of which only the first chunk ever comes.
	if _, err := io.WriteString(c, "POST /api/v1/containers/100/symbolz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n100000\r\n"+strings.Repeat("0x1+", 1024)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("answered after %v: the body was waited for", took)
	}
	if resp.StatusCode != http.StatusOK || !resp.Close {
		t.Errorf("status %d, close %v; want 200 and the connection closed", resp.StatusCode, resp.Close)
	}
}
