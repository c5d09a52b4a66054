package server

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/leakwatch/leakwatch/pkg/view"
)

// profileSource adds view.Profiles to the fake source: it returns fixed
// bytes and records what it was asked.
type profileSource struct {
	*fakeSource
	kind   string
	window time.Duration
}

func (p *profileSource) Profile(_ context.Context, id, kind string, window time.Duration) ([]byte, error) {
	if id != "100" && id != "300" {
		return nil, fmt.Errorf("container %q: %w", id, view.ErrNotFound)
	}
	// Concurrent in the limit tests.
	p.mu.Lock()
	p.kind, p.window = kind, window
	p.mu.Unlock()
	return []byte("\x1f\x8bprofile"), nil
}

func (p *profileSource) MaxProfileWindow() time.Duration { return time.Hour }

func (p *profileSource) OOMProfile(seq uint64, kind string) ([]byte, error) {
	if seq != 1 {
		return nil, fmt.Errorf("OOM kill %d: %w", seq, view.ErrNotFound)
	}
	return []byte("\x1f\x8b" + kind), nil
}

func TestOOMKillsEndpoints(t *testing.T) {
	src := &profileSource{fakeSource: newTestSource()}
	snap := readySnapshot()
	snap.OOMKills = []view.OOMKill{
		{Seq: 1, ID: "100", Cgroup: "/kubepods.slice/a.scope", PID: 9, Comm: "cart", Trigger: "container", ProfileURL: "/api/v1/oomkills/1/profile"},
		{Seq: 2, ID: "200", Cgroup: "/kubepods.slice/b.scope", PID: 10, Comm: "web", Trigger: "node"},
	}
	src.set(snap)
	h := newTestServer(t, src).Handler()

	kills := decode[[]view.OOMKill](t, do(t, h, http.MethodGet, "/api/v1/oomkills"), http.StatusOK)
	if len(kills) != 2 || kills[0].Seq != 2 || kills[1].ProfileURL != "/api/v1/oomkills/1/profile" {
		t.Errorf("kills %+v: want both, newest first, with the profile link", kills)
	}
	if rec := do(t, h, http.MethodGet, "/api/v1/oomkills/1/profile?type=faults"); rec.Code != http.StatusOK || rec.Body.String() != "\x1f\x8bfaults" {
		t.Errorf("retained profile: %d %q", rec.Code, rec.Body.String())
	}
	for target, status := range map[string]int{
		"/api/v1/oomkills/2/profile":          http.StatusNotFound,
		"/api/v1/oomkills/x/profile":          http.StatusBadRequest,
		"/api/v1/oomkills/1/profile?type=bad": http.StatusBadRequest,
	} {
		if rec := do(t, h, http.MethodGet, target); rec.Code != status {
			t.Errorf("%s: %d, want %d", target, rec.Code, status)
		}
	}
}

func TestProfileEndpoint(t *testing.T) {
	src := &profileSource{fakeSource: newTestSource()}
	h := newTestServer(t, src).Handler()

	rec := do(t, h, http.MethodGet, "/api/v1/containers/100/profile?type=faults&seconds=600")
	if rec.Code != http.StatusOK || !strings.HasPrefix(rec.Body.String(), "\x1f\x8b") {
		t.Fatalf("profile: %d %q", rec.Code, rec.Body.String())
	}
	if src.kind != "faults" || src.window != 10*time.Minute {
		t.Errorf("asked for %q over %v, want faults over 10m", src.kind, src.window)
	}
	if cd := rec.Header().Get("Content-Disposition"); cd != `attachment; filename="shop_cart-0_cart_100.faults-600s.pb.gz"` {
		t.Errorf("Content-Disposition %q does not name the container", cd)
	}
	if do(t, h, http.MethodGet, "/api/v1/containers/300/profile"); src.kind != "inuse" || src.window != 0 {
		t.Errorf("defaults: %q over %v, want inuse, no window", src.kind, src.window)
	}
	// By name, as the CLI takes it: the profile of the container it names.
	rec = do(t, h, http.MethodGet, "/api/v1/containers/shop%2Fcart-0%2Fcart/profile")
	if cd := rec.Header().Get("Content-Disposition"); rec.Code != http.StatusOK || !strings.Contains(cd, "_100.inuse") {
		t.Errorf("profile by name: %d %q, want the profile of container 100", rec.Code, cd)
	}

	for target, status := range map[string]int{
		"/api/v1/containers/100/profile?type=heap":      http.StatusBadRequest,
		"/api/v1/containers/100/profile?seconds=-1":     http.StatusBadRequest,
		"/api/v1/containers/100/profile?seconds=3601":   http.StatusBadRequest,
		"/api/v1/containers/100/profile?seconds=1e3":    http.StatusBadRequest,
		"/api/v1/containers/999/profile":                http.StatusNotFound,
		"/api/v1/containers/100/profile?seconds=3600":   http.StatusOK,
		"/api/v1/containers/100/profile?type=inuse&x=1": http.StatusOK,
	} {
		rec := do(t, h, http.MethodGet, target)
		if rec.Code != status {
			t.Errorf("%s: %d, want %d (%s)", target, rec.Code, status, rec.Body.String())
		}
		if status != http.StatusOK {
			if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") || !strings.Contains(rec.Body.String(), `"error"`) {
				t.Errorf("%s: error not JSON: %s %q", target, ct, rec.Body.String())
			}
		}
	}
}

// go tool pprof URL asks the server to symbolize addresses the profile left
// unresolved; an error there makes pprof give up on the whole profile.
func TestSymbolzTellsPprofThereIsNothingToAdd(t *testing.T) {
	h := newTestServer(t, newTestSource()).Handler()
	if rec := do(t, h, http.MethodGet, "/api/v1/containers/100/symbolz"); rec.Code != http.StatusOK || rec.Body.String() != "num_symbols: 0\n" {
		t.Errorf("GET symbolz: %d %q", rec.Code, rec.Body.String())
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/api/v1/oomkills/1/symbolz", strings.NewReader("0x7f278fa079b3+0x55ae94cf730e")))
	if rec.Code != http.StatusOK || rec.Body.Len() != 0 {
		t.Errorf("POST symbolz: %d %q, want 200 and nothing", rec.Code, rec.Body.String())
	}
}

func TestProfileWithoutTracerIs501(t *testing.T) {
	h := newTestServer(t, newTestSource()).Handler()
	if rec := do(t, h, http.MethodGet, "/api/v1/containers/100/profile"); rec.Code != http.StatusNotImplemented {
		t.Errorf("profile without profiles: %d, want 501", rec.Code)
	}
}

// An agent whose tracer does not trace mappings (the faults tier) refuses
// an inuse profile with the reason, rather than serve an empty one; faults
// profiles still work.
func TestInuseProfileRefusedWithoutMappings(t *testing.T) {
	src := &profileSource{fakeSource: newTestSource()}
	src.snap.Agent.Degraded = map[string]string{"mappings": "tracing tier faults: mmap, munmap, mremap and brk are not traced"}
	h := newTestServer(t, src).Handler()
	rec := do(t, h, http.MethodGet, "/api/v1/containers/100/profile?type=inuse")
	if rec.Code != http.StatusConflict || !strings.Contains(rec.Body.String(), "tracing tier faults") {
		t.Errorf("inuse without mappings: %d %s, want 409 with the reason", rec.Code, rec.Body)
	}
	if rec := do(t, h, http.MethodGet, "/api/v1/containers/100/profile?type=faults"); rec.Code != http.StatusOK {
		t.Errorf("faults without mappings: %d %s, want 200", rec.Code, rec.Body)
	}
}
