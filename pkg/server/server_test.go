package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/leakwatch/leakwatch/pkg/detect"
	"github.com/leakwatch/leakwatch/pkg/view"
)

// TestMain fails when a test leaves a goroutine behind: a server that does
// not stop its listener or connections would show here.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeSource is a view.Source over plain data set by the test: no agent, no
// kernel, no privileges.
type fakeSource struct {
	mu     sync.Mutex
	snap   *view.Snapshot
	series map[string][]view.Point
}

func (f *fakeSource) Snapshot() *view.Snapshot {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.snap
}

func (f *fakeSource) Series(id string) ([]view.Point, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.series[id]
	return p, ok
}

func (f *fakeSource) set(s *view.Snapshot) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.snap = s
}

var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func testContainers() []view.Container {
	return []view.Container{
		{
			ID: "100", Cgroup: "/kubepods.slice/a.scope", Kind: "container", Runtime: "containerd",
			ContainerID: "aaa", Namespace: "shop", Pod: "cart-0", Container: "cart",
			Memory:   view.Memory{Usage: 1000, LeakSignal: 600, Limit: 4000},
			Verdict:  view.Verdict{Leaking: true, GrowthBytesPerSecond: 10, Confidence: 0.9, TimeToLimit: 340 * time.Second, LeakingSince: t0},
			OOMKills: 1, MappedBytes: 500, FirstSeen: t0, LastSeen: t0,
		},
		{
			ID: "200", Cgroup: "/kubepods.slice/b.scope", Kind: "container", Runtime: "containerd",
			ContainerID: "bbb", Namespace: "shop", Pod: "web-0", Container: "web",
			Memory:    view.Memory{Usage: 2000, LeakSignal: 100},
			Verdict:   view.Verdict{GrowthBytesPerSecond: 50, Confidence: 0.2, TimeToLimit: -1},
			FirstSeen: t0, LastSeen: t0,
		},
		{
			ID: "300", Cgroup: "/system.slice/nginx.service", Kind: "service", Runtime: "systemd",
			Container: "nginx.service",
			// Gone as the agent leaves a leaking container that went:
			// its verdict ended, the one it went with kept apart.
			Memory:    view.Memory{Usage: 300, LeakSignal: 30},
			Verdict:   view.Verdict{TimeToLimit: -1},
			FirstSeen: t0.Add(-time.Hour), LastSeen: t0.Add(-10 * time.Second), Gone: true, GoneAt: t0, WasLeaking: true,
		},
		{
			ID: "400", Cgroup: "/kubepods.slice/c.scope", Kind: "container",
			Namespace: "kube-system", Pod: "dns-0", Container: "dns",
			Verdict:   view.Verdict{GrowthBytesPerSecond: -5, TimeToLimit: -1},
			FirstSeen: t0, LastSeen: t0,
		},
	}
}

func readySnapshot() *view.Snapshot {
	return &view.Snapshot{
		Taken:      t0,
		Containers: testContainers(),
		Agent: view.Agent{
			Ready:       true,
			Collections: 3,
			Degraded:    map[string]string{"fault_sampling": "no perf events"},
		},
	}
}

func newTestSource() *fakeSource {
	return &fakeSource{
		snap: readySnapshot(),
		series: map[string][]view.Point{
			"100": {
				{T: t0.Add(-time.Minute), LeakSignal: 500, Usage: 900, Min: 500, Max: 500},
				{T: t0, LeakSignal: 600, Usage: 1000, Min: 600, Max: 600},
			},
		},
	}
}

// newTestRegistry holds one gauge, leakwatch_test_value 42.
func newTestRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "leakwatch_test_value", Help: "A value for the test.",
	}, func() float64 { return 42 }))
	return reg
}

func newTestServer(t *testing.T, src view.Source) *Server {
	t.Helper()
	s, err := New(Config{Listen: "127.0.0.1:0"}, src, newTestRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// do serves one request through the handler, without a network.
func do(t *testing.T, h http.Handler, method, target string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, target, nil))
	return rec
}

// decode checks the status and JSON content type and decodes the body.
func decode[T any](t *testing.T, rec *httptest.ResponseRecorder, status int) T {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("status %d, want %d; body %s", rec.Code, status, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q, want application/json", ct)
	}
	var v T
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatalf("decoding %s: %v", rec.Body, err)
	}
	return v
}

type errorBody struct {
	Error string `json:"error"`
}

func TestMetrics(t *testing.T) {
	h := newTestServer(t, newTestSource()).Handler()
	rec := do(t, h, http.MethodGet, "/metrics")
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d", rec.Code)
	}
	if !strings.Contains(rec.Body.String(), "leakwatch_test_value 42") {
		t.Errorf("metrics lack the registered gauge:\n%s", rec.Body)
	}
}

// A failing collector must not take the other metrics down with it.
func TestMetricsContinueOnError(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "leakwatch_test_value", Help: "A value for the test.",
	}, func() float64 { return 42 }))
	reg.MustRegister(failingCollector{prometheus.NewDesc("leakwatch_test_broken", "A broken metric.", nil, nil)})
	s, err := New(Config{}, newTestSource(), reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	rec := do(t, s.Handler(), http.MethodGet, "/metrics")
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "leakwatch_test_value 42") {
		t.Errorf("status %d, body:\n%s", rec.Code, rec.Body)
	}
}

type failingCollector struct{ desc *prometheus.Desc }

func (f failingCollector) Describe(ch chan<- *prometheus.Desc) { ch <- f.desc }
func (f failingCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.NewInvalidMetric(f.desc, errors.New("broken on purpose"))
}

func TestHealthz(t *testing.T) {
	// Health does not depend on collections: a process that serves is alive.
	h := newTestServer(t, &fakeSource{}).Handler()
	rec := do(t, h, http.MethodGet, "/healthz")
	if rec.Code != http.StatusOK || rec.Body.String() != "ok" {
		t.Errorf("got %d %q, want 200 \"ok\"", rec.Code, rec.Body)
	}
}

func TestReadyzTransitions(t *testing.T) {
	src := &fakeSource{}
	h := newTestServer(t, src).Handler()

	r := decode[readiness](t, do(t, h, http.MethodGet, "/readyz"), http.StatusServiceUnavailable)
	if r.Ready || r.Error != "no collection yet" {
		t.Errorf("before the first collection: %+v", r)
	}

	notReady := readySnapshot()
	notReady.Agent.Ready = false
	notReady.Agent.NotReady = "tracer not attached"
	src.set(notReady)
	r = decode[readiness](t, do(t, h, http.MethodGet, "/readyz"), http.StatusServiceUnavailable)
	if r.Ready || r.Error != "tracer not attached" || r.Degraded["fault_sampling"] == "" {
		t.Errorf("agent not ready: %+v", r)
	}

	src.set(readySnapshot())
	r = decode[readiness](t, do(t, h, http.MethodGet, "/readyz"), http.StatusOK)
	if !r.Ready || r.Error != "" || r.Collections != 3 || r.Degraded["fault_sampling"] != "no perf events" ||
		r.LastCollection == nil || !r.LastCollection.Equal(t0) {
		t.Errorf("ready: %+v", r)
	}

	unreadyNoReason := readySnapshot()
	unreadyNoReason.Agent.Ready = false
	src.set(unreadyNoReason)
	r = decode[readiness](t, do(t, h, http.MethodGet, "/readyz"), http.StatusServiceUnavailable)
	if r.Error == "" {
		t.Errorf("not ready without a reason from the agent must still say why: %+v", r)
	}
}

func TestListContainers(t *testing.T) {
	h := newTestServer(t, newTestSource()).Handler()
	tests := []struct {
		target string
		want   []string // ids, in order
	}{
		// Live ones by growth, gone ones last.
		{"/api/v1/containers", []string{"200", "100", "400", "300"}},
		{"/api/v1/containers?leaking=true", []string{"100"}},
		{"/api/v1/containers?leaking=false", []string{"200", "400", "300"}},
		{"/api/v1/containers?namespace=shop", []string{"200", "100"}},
		{"/api/v1/containers?namespace=shop&leaking=true", []string{"100"}},
		{"/api/v1/containers?namespace=", []string{"300"}},
		{"/api/v1/containers?namespace=nope", []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			got := decode[[]container](t, do(t, h, http.MethodGet, tt.target), http.StatusOK)
			ids := []string{}
			for _, c := range got {
				ids = append(ids, c.ID)
			}
			if strings.Join(ids, ",") != strings.Join(tt.want, ",") {
				t.Errorf("ids %v, want %v", ids, tt.want)
			}
		})
	}
}

func TestListContainersFields(t *testing.T) {
	h := newTestServer(t, newTestSource()).Handler()
	rec := do(t, h, http.MethodGet, "/api/v1/containers?namespace=shop&leaking=true")
	raw := decode[[]map[string]any](t, rec, http.StatusOK)
	if len(raw) != 1 {
		t.Fatalf("got %d containers", len(raw))
	}
	want := map[string]any{
		"id": "100", "cgroup": "/kubepods.slice/a.scope", "container_id": "aaa", "pod": "cart-0",
		"namespace": "shop", "container": "cart", "memory_bytes": 1000.0, "leak_signal_bytes": 600.0,
		"limit_bytes": 4000.0, "growth_bytes_per_second": 10.0, "confidence": 0.9, "leaking": true,
		"time_to_limit_seconds": 340.0, "oom_kills": 1.0, "mapped_bytes": 500.0, "kind": "container",
		"runtime": "containerd", "status": "leaking", "gone": false, "gone_at": nil, "was_leaking": false,
		"first_seen": "2026-11-27T12:00:00Z", "last_seen": "2026-11-27T12:00:00Z",
	}
	for k, v := range want {
		if got, ok := raw[0][k]; !ok || got != v {
			t.Errorf("%s = %#v (present %v), want %#v", k, got, ok, v)
		}
	}

	// A gone container says so, and when; nothing of it reads as a
	// current verdict.
	gone := decode[[]map[string]any](t, do(t, h, http.MethodGet, "/api/v1/containers?namespace="), http.StatusOK)
	for k, v := range map[string]any{
		"id": "300", "status": "gone", "gone": true, "gone_at": "2026-11-27T12:00:00Z", "was_leaking": true,
		"last_seen": "2026-11-27T11:59:50Z", "leaking": false, "leaking_since": nil, "growth_bytes_per_second": 0.0,
		"confidence": 0.0, "time_to_limit_seconds": nil,
	} {
		if got, ok := gone[0][k]; !ok || got != v {
			t.Errorf("gone container: %s = %#v (present %v), want %#v", k, got, ok, v)
		}
	}

	// Unknown time to limit is null, not a misleading number.
	all := decode[[]map[string]any](t, do(t, h, http.MethodGet, "/api/v1/containers?namespace=kube-system"), http.StatusOK)
	if v, ok := all[0]["time_to_limit_seconds"]; !ok || v != nil {
		t.Errorf("time_to_limit_seconds = %#v (present %v), want null", v, ok)
	}
}

func TestListContainersBadFilter(t *testing.T) {
	h := newTestServer(t, newTestSource()).Handler()
	e := decode[errorBody](t, do(t, h, http.MethodGet, "/api/v1/containers?leaking=maybe"), http.StatusBadRequest)
	if !strings.Contains(e.Error, "leaking") {
		t.Errorf("error %q does not name the filter", e.Error)
	}
}

func TestContainersBeforeFirstCollection(t *testing.T) {
	h := newTestServer(t, &fakeSource{}).Handler()
	for _, target := range []string{"/api/v1/containers", "/api/v1/containers/100"} {
		e := decode[errorBody](t, do(t, h, http.MethodGet, target), http.StatusServiceUnavailable)
		if e.Error != "no collection yet" {
			t.Errorf("%s: error %q", target, e.Error)
		}
	}
}

func TestGetContainer(t *testing.T) {
	h := newTestServer(t, newTestSource()).Handler()
	got := decode[containerDetail](t, do(t, h, http.MethodGet, "/api/v1/containers/100"), http.StatusOK)
	if got.ID != "100" || got.Pod != "cart-0" || got.Memory.Limit != 4000 || got.Memory.Usage != 1000 {
		t.Errorf("container: %+v", got)
	}
	if len(got.Series) != 2 || got.Series[1].LeakSignal != 600 || !got.Series[0].T.Before(got.Series[1].T) {
		t.Errorf("series: %+v", got.Series)
	}

	// Flattened fields and the nested memory object side by side.
	raw := decode[map[string]any](t, do(t, h, http.MethodGet, "/api/v1/containers/100"), http.StatusOK)
	for _, k := range []string{"id", "memory_bytes", "memory", "series", "leaking"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("field %q missing", k)
		}
	}

	// A container without points has an empty series, not null.
	raw = decode[map[string]any](t, do(t, h, http.MethodGet, "/api/v1/containers/300"), http.StatusOK)
	if s, ok := raw["series"].([]any); !ok || len(s) != 0 {
		t.Errorf("series = %#v, want []", raw["series"])
	}
}

func TestGetContainerUnknown(t *testing.T) {
	h := newTestServer(t, newTestSource()).Handler()
	e := decode[errorBody](t, do(t, h, http.MethodGet, "/api/v1/containers/999"), http.StatusNotFound)
	if !strings.Contains(e.Error, `"999"`) || !strings.Contains(e.Error, "cgroup path") || !strings.Contains(e.Error, "%2F") {
		t.Errorf("error %q: want the name asked for and the forms that work", e.Error)
	}
}

// {id} takes every form the CLI takes (pkg/lookup), in the container and
// the profile endpoints alike; names with slashes come escaped.
func TestGetContainerByEveryCLIForm(t *testing.T) {
	h := newTestServer(t, newTestSource()).Handler()
	for q, want := range map[string]string{
		"100":                             "100", // API id
		"bbb":                             "",    // container id prefix shorter than 6: no
		"%2Fkubepods.slice%2Fa.scope":     "100", // cgroup path
		"cart":                            "100", // container name
		"web-0":                           "200", // pod
		"kube-system%2Fdns-0%2Fdns":       "400", // namespace/pod/container
		"%2Fsystem.slice%2Fnginx.service": "300",
		"nginx.service":                   "300",
		"%2Fkubepods.slice%2Fnone.scope":  "",
	} {
		rec := do(t, h, http.MethodGet, "/api/v1/containers/"+q)
		if want == "" {
			if rec.Code != http.StatusNotFound {
				t.Errorf("%s: %d, want 404", q, rec.Code)
			}
			continue
		}
		if got := decode[containerDetail](t, rec, http.StatusOK); got.ID != want {
			t.Errorf("%s: container %s, want %s", q, got.ID, want)
		}
	}
	// Two pods named alike: ambiguous, and the ids to use are given.
	src := newTestSource()
	snap := readySnapshot()
	snap.Containers[1].Container = "cart"
	src.set(snap)
	h = newTestServer(t, src).Handler()
	e := decode[errorBody](t, do(t, h, http.MethodGet, "/api/v1/containers/cart"), http.StatusConflict)
	if !strings.Contains(e.Error, "100") || !strings.Contains(e.Error, "200") {
		t.Errorf("ambiguous name: %q, want both ids", e.Error)
	}
}

// Bad requests get JSON errors, those of the agent's own profiles too
// (on here), which net/http/pprof would answer in plain text.
func TestErrors(t *testing.T) {
	h := newPprofServer(t).Handler()
	tests := []struct {
		method, target string
		status         int
	}{
		{http.MethodGet, "/nope", http.StatusNotFound},
		{http.MethodGet, "/api/v1/containers/100/nope", http.StatusNotFound},
		{http.MethodGet, "/api/v2/containers", http.StatusNotFound},
		{http.MethodPost, "/metrics", http.StatusMethodNotAllowed},
		{http.MethodDelete, "/healthz", http.StatusMethodNotAllowed},
		{http.MethodPut, "/readyz", http.StatusMethodNotAllowed},
		{http.MethodPost, "/api/v1/containers", http.StatusMethodNotAllowed},
		{http.MethodDelete, "/api/v1/containers/100", http.StatusMethodNotAllowed},
		{http.MethodGet, "/debug/pprof/nope", http.StatusNotFound},
		{http.MethodGet, "/debug/pprof/heap/x", http.StatusNotFound},
		{http.MethodGet, "/debug/pprof/profile?seconds=61", http.StatusBadRequest},
		{http.MethodGet, "/debug/pprof/profile?seconds=0", http.StatusBadRequest},
		{http.MethodGet, "/debug/pprof/profile?seconds=1.5", http.StatusBadRequest},
		{http.MethodGet, "/debug/pprof/trace?seconds=-1", http.StatusBadRequest},
		{http.MethodGet, "/debug/pprof/trace?seconds=NaN", http.StatusBadRequest},
		{http.MethodGet, "/debug/pprof/heap?seconds=3600", http.StatusBadRequest},
		// Refused by net/http/pprof itself, before it waits.
		{http.MethodGet, "/debug/pprof/heap?seconds=1&debug=1", http.StatusBadRequest},
		{http.MethodDelete, "/debug/pprof/heap", http.StatusMethodNotAllowed},
		{http.MethodPost, "/debug/pprof/", http.StatusMethodNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.target, func(t *testing.T) {
			rec := do(t, h, tt.method, tt.target)
			e := decode[errorBody](t, rec, tt.status)
			if e.Error == "" {
				t.Error("empty error message")
			}
			if tt.status == http.StatusMethodNotAllowed && rec.Header().Get("Allow") == "" {
				t.Error("405 without an Allow header")
			}
			if rec.Header().Get("X-Go-Pprof") != "" || rec.Header().Get("Content-Disposition") != "" {
				t.Errorf("pprof's headers left on a JSON error: %v", rec.Header())
			}
		})
	}
}

func TestHead(t *testing.T) {
	h := newTestServer(t, newTestSource()).Handler()
	if rec := do(t, h, http.MethodHead, "/api/v1/containers"); rec.Code != http.StatusOK {
		t.Errorf("HEAD: status %d", rec.Code)
	}
}

func TestNewValidates(t *testing.T) {
	reg := prometheus.NewRegistry()
	for name, fn := range map[string]func() error{
		"bad listen": func() error { _, err := New(Config{Listen: "9753"}, &fakeSource{}, reg, nil); return err },
		"no source":  func() error { _, err := New(Config{}, nil, reg, nil); return err },
		"no gatherer": func() error {
			_, err := New(Config{}, &fakeSource{}, nil, nil)
			return err
		},
		"negative timeout": func() error {
			_, err := New(Config{ShutdownTimeout: -time.Second}, &fakeSource{}, reg, nil)
			return err
		},
	} {
		if fn() == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
}

func TestRunServesAndStopsWithContext(t *testing.T) {
	s := newTestServer(t, newTestSource())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	waitListening(t, s, done)

	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := client.Get("http://" + s.Addr() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "ok" {
		t.Errorf("healthz over TCP: %d %q", resp.StatusCode, body)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	if _, err := net.DialTimeout("tcp", s.Addr(), time.Second); err == nil {
		t.Error("still accepting connections after Run returned")
	}
	if err := s.Run(context.Background()); err == nil {
		t.Error("a second Run succeeded")
	}
}

func TestCloseStopsRunAndIsIdempotent(t *testing.T) {
	s := newTestServer(t, newTestSource())
	done := make(chan error, 1)
	go func() { done <- s.Run(context.Background()) }()
	waitListening(t, s, done)

	for range 2 {
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run after Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after Close")
	}
}

func TestCloseBeforeRun(t *testing.T) {
	s := newTestServer(t, newTestSource())
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Run(context.Background()); err == nil {
		t.Error("Run after Close succeeded")
	}
}

func TestRunAddressInUse(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = busy.Close() }()

	s, err := New(Config{Listen: busy.Addr().String()}, newTestSource(), prometheus.NewRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	err = s.Run(context.Background())
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("Run: %v, want address in use", err)
	}
	want := "listening on " + busy.Addr().String() + ": address already in use; pass --listen"
	if err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
}

func waitListening(t *testing.T, s *Server, done <-chan error) {
	t.Helper()
	select {
	case <-s.Listening():
	case err := <-done:
		t.Fatalf("Run returned before listening: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not listen")
	}
	if s.Addr() == "" || strings.HasSuffix(s.Addr(), ":0") {
		t.Fatalf("Addr() = %q after listening", s.Addr())
	}
}

// A leaking container's detail says why, with the detector's own
// explanation; one without growth has explanation null.
func TestGetContainerExplainsTheVerdict(t *testing.T) {
	d, err := detect.New(detect.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	var v detect.Verdict
	for s := 0; s < 5400 && !v.Leaking; s += 10 {
		v = d.Observe(detect.Point{T: t0.Add(time.Duration(s) * time.Second), Bytes: float64(256<<20 + max(0, s-900)<<20)})
	}
	if !v.Leaking || v.Why == nil {
		t.Fatalf("the detector did not flag a 1 MiB/s leak with an explanation: %v", v)
	}
	src := newTestSource()
	src.snap.Containers[0].Verdict.Leaking = true
	src.snap.Containers[0].Verdict.Why = v.Why.JSON()
	h := newTestServer(t, src).Handler()
	raw := decode[map[string]any](t, do(t, h, http.MethodGet, "/api/v1/containers/100"), http.StatusOK)
	why, ok := raw["explanation"].(map[string]any)
	if !ok {
		t.Fatalf("explanation = %#v, want an object", raw["explanation"])
	}
	for _, k := range []string{"tier", "window_seconds", "growth_bytes_per_second", "cycle_seconds", "floor_width_seconds", "floor_bytes", "previous_high_bytes", "persistence_seconds", "summary"} {
		if _, ok := why[k]; !ok {
			t.Errorf("explanation field %q missing: %v", k, why)
		}
	}
	if g, _ := why["growth_bytes_per_second"].(float64); g < 0.5*(1<<20) || g > 2*(1<<20) {
		t.Errorf("explained growth %v B/s, want about 1 MiB/s", why["growth_bytes_per_second"])
	}
	raw = decode[map[string]any](t, do(t, h, http.MethodGet, "/api/v1/containers/300"), http.StatusOK)
	if e, ok := raw["explanation"]; !ok || e != nil {
		t.Errorf("a container without growth: explanation = %#v, want null", e)
	}
}
