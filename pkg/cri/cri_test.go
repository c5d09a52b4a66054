package cri

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/leakwatch/leakwatch/pkg/podpolicy"
)

const (
	podUID   = "0b7d5c1e-8a51-4a0c-9d5e-3f4f6a1b2c3d"
	ctrApp   = "1111111111111111111111111111111111111111111111111111111111111111"
	ctrSide  = "2222222222222222222222222222222222222222222222222222222222222222"
	ctrLater = "3333333333333333333333333333333333333333333333333333333333333333"
	sandbox  = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
)

// fakeRuntime serves the real CRI RuntimeService over gRPC from memory. It is
// a stand-in for containerd or CRI-O: no container runtime runs on the
// machines these tests run on.
type fakeRuntime struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	mu         sync.Mutex
	sandboxes  map[string]*runtimeapi.PodSandbox
	containers map[string]*runtimeapi.Container
	srv        *grpc.Server
	served     chan struct{}
}

func (f *fakeRuntime) Version(context.Context, *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	return &runtimeapi.VersionResponse{RuntimeName: "fake", RuntimeVersion: "1.0", RuntimeApiVersion: "v1"}, nil
}

func (f *fakeRuntime) ListPodSandbox(context.Context, *runtimeapi.ListPodSandboxRequest) (*runtimeapi.ListPodSandboxResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := &runtimeapi.ListPodSandboxResponse{}
	for _, sb := range f.sandboxes {
		resp.Items = append(resp.Items, sb)
	}
	return resp, nil
}

func (f *fakeRuntime) ListContainers(context.Context, *runtimeapi.ListContainersRequest) (*runtimeapi.ListContainersResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := &runtimeapi.ListContainersResponse{}
	for _, c := range f.containers {
		resp.Containers = append(resp.Containers, c)
	}
	return resp, nil
}

func (f *fakeRuntime) addContainer(c *runtimeapi.Container) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.containers[c.Id] = c
}

func (f *fakeRuntime) removeContainer(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.containers, id)
}

func (f *fakeRuntime) removeSandbox(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.sandboxes, id)
}

// stop stops serving and waits for the server's goroutines.
func (f *fakeRuntime) stop() {
	f.srv.Stop()
	<-f.served
}

// startRuntime serves a runtime holding one pod with two containers: one the
// kubelet labelled, one named only by its metadata and its sandbox.
func startRuntime(t *testing.T, path string) *fakeRuntime {
	t.Helper()
	f := &fakeRuntime{
		sandboxes: map[string]*runtimeapi.PodSandbox{
			sandbox: {
				Id:       sandbox,
				Metadata: &runtimeapi.PodSandboxMetadata{Name: "web-7d9f", Uid: podUID, Namespace: "shop"},
				State:    runtimeapi.PodSandboxState_SANDBOX_READY,
				// Pod annotations reach the runtime on the sandbox.
				Annotations: map[string]string{podpolicy.KeyIgnore: "true", podpolicy.KeyWarmUp: "30m"},
			},
		},
		containers: map[string]*runtimeapi.Container{},
		srv:        grpc.NewServer(),
		served:     make(chan struct{}),
	}
	f.addContainer(&runtimeapi.Container{
		Id:           ctrApp,
		PodSandboxId: sandbox,
		Metadata:     &runtimeapi.ContainerMetadata{Name: "app"},
		Image:        &runtimeapi.ImageSpec{Image: "sha256:abc", UserSpecifiedImage: "registry.example/app:1.2"},
		Labels: map[string]string{
			labelPodName:       "web-7d9f",
			labelPodNamespace:  "shop",
			labelPodUID:        podUID,
			labelContainerName: "app",
		},
	})
	f.addContainer(&runtimeapi.Container{
		Id:           ctrSide,
		PodSandboxId: sandbox,
		Metadata:     &runtimeapi.ContainerMetadata{Name: "sidecar"},
		Image:        &runtimeapi.ImageSpec{Image: "registry.example/proxy:2"},
		// Container annotations override the pod's, key by key.
		Annotations: map[string]string{podpolicy.KeyIgnore: "false", podpolicy.KeySensitivity: "max"},
	})
	runtimeapi.RegisterRuntimeServiceServer(f.srv, f)
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(f.served)
		_ = f.srv.Serve(ln)
	}()
	t.Cleanup(f.stop)
	return f
}

// hangingSocket accepts connections and never answers, like a wedged runtime.
// Each accepted connection is announced on the returned channel.
func hangingSocket(t *testing.T, path string) <-chan struct{} {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan struct{}, 16)
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, conn)
			select {
			case accepted <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return accepted
}

// socketDir returns a short directory: unix socket paths are limited to 108 bytes.
func socketDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "lwcri")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

// syncBuffer collects log output written from several goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func testLogger(t *testing.T, extra io.Writer) *slog.Logger {
	w := t.Output()
	if extra != nil {
		w = io.MultiWriter(w, extra)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func newClient(t *testing.T, cfg Config, logs io.Writer) *Client {
	t.Helper()
	c, err := New(cfg, testLogger(t, logs))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// startRun runs c.Run and returns a channel that yields its result.
func startRun(t *testing.T, c *Client) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- c.Run(context.Background()) }()
	return done
}

func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestEnrichment(t *testing.T) {
	dir := socketDir(t)
	sock := filepath.Join(dir, "cri.sock")
	startRuntime(t, sock)
	// The first endpoint does not exist: the second must be used.
	c := newClient(t, Config{Endpoints: []string{filepath.Join(dir, "absent.sock"), "unix://" + sock}, Timeout: time.Second}, nil)

	if !c.Available() {
		t.Fatal("Available() = false with a runtime serving")
	}
	tests := []struct {
		id   string
		want Info
	}{
		{ctrApp, Info{PodName: "web-7d9f", Namespace: "shop", PodUID: podUID, ContainerName: "app", Image: "registry.example/app:1.2",
			Policy: podpolicy.Policy{Ignore: true, WarmUp: 30 * time.Minute, Sensitivity: podpolicy.SensitivityNormal}}},
		// No kubelet labels: pod fields come from the sandbox.
		{ctrSide, Info{PodName: "web-7d9f", Namespace: "shop", PodUID: podUID, ContainerName: "sidecar", Image: "registry.example/proxy:2",
			Policy: podpolicy.Policy{WarmUp: 30 * time.Minute, Sensitivity: podpolicy.SensitivityNormal, Invalid: `leakwatch.io/sensitivity="max"`}}},
	}
	for _, tt := range tests {
		got, ok := c.Lookup(tt.id)
		if !ok || got != tt.want {
			t.Errorf("Lookup(%.8s) = %+v, %v; want %+v, true", tt.id, got, ok, tt.want)
		}
	}
	if got, ok := c.LookupPod(podUID); !ok || got != (PodInfo{PodName: "web-7d9f", Namespace: "shop", PodUID: podUID}) {
		t.Errorf("LookupPod = %+v, %v", got, ok)
	}
	if _, ok := c.LookupPod(strings.ReplaceAll(podUID, "-", "_")); !ok {
		t.Error("LookupPod of a UID spelled by the systemd driver failed")
	}
	if _, ok := c.Lookup(ctrLater); ok {
		t.Error("Lookup of an unknown id succeeded")
	}
	if s := c.Stats(); s.Calls != 3 || s.Failures != 0 || s.Refreshes != 1 {
		t.Errorf("Stats = %+v; want 3 calls (version, two lists), no failure, one refresh", s)
	}
}

func TestMissingSocket(t *testing.T) {
	sock := filepath.Join(socketDir(t), "nothing-here.sock")
	var logs syncBuffer
	c := newClient(t, Config{Endpoints: []string{"unix://" + sock}}, &logs)

	if c.Available() {
		t.Fatal("Available() = true without a socket")
	}
	if _, ok := c.Lookup(ctrApp); ok {
		t.Error("Lookup succeeded without a runtime")
	}
	if s := c.Stats(); s.Calls != 0 {
		t.Errorf("Stats = %+v; a missing socket should cost no call", s)
	}
	// A configured endpoint that fails must say which, what and what to do.
	for _, want := range []string{sock, "no such file", "start the container runtime"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log does not mention %q:\n%s", want, logs.String())
		}
	}
}

func TestInvalidEndpoint(t *testing.T) {
	for _, ep := range []string{"tcp://127.0.0.1:1234", "unix://relative.sock", "run/crio.sock"} {
		if _, err := New(Config{Endpoints: []string{ep}}, nil); err == nil {
			t.Errorf("New with endpoint %q: no error", ep)
		}
	}
}

func TestHangingSocket(t *testing.T) {
	const timeout = 500 * time.Millisecond
	sock := filepath.Join(socketDir(t), "hang.sock")
	accepted := hangingSocket(t, sock)
	var logs syncBuffer

	start := time.Now()
	c := newClient(t, Config{Endpoints: []string{sock}, Timeout: timeout, Refresh: 50 * time.Millisecond}, &logs)
	if d := time.Since(start); d > timeout+time.Second {
		t.Fatalf("New took %v with a %v timeout", d, timeout)
	}
	if c.Available() {
		t.Fatal("Available() = true for a socket that never answers")
	}
	if s := c.Stats(); s.Failures != 1 {
		t.Fatalf("Stats = %+v after New; want the Version call failed", s)
	}

	// Drain New's connection, then catch Run in the middle of a hanging call.
	for len(accepted) > 0 {
		<-accepted
	}
	run := startRun(t, c)
	select {
	case <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("Run never dialed the socket")
	}
	before := c.Stats().Failures
	if _, ok := c.Lookup(ctrApp); ok {
		t.Error("Lookup succeeded")
	}
	if c.Stats().Failures != before {
		t.Fatal("the refresh ended before Lookup returned; cannot tell that Lookup did not wait")
	}
	// The hanging refresh gives up by its deadline; later ones keep trying.
	eventually(t, timeout+2*time.Second, "a hanging refresh gave up", func() bool {
		return c.Stats().Failures > before
	})
	eventually(t, 3*(timeout+time.Second), "a second refresh failed", func() bool {
		return c.Stats().Failures > before+1
	})
	if n := strings.Count(logs.String(), "CRI endpoint failed"); n != 1 {
		t.Errorf("%d failure logs within a minute; want 1:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "did not answer in time") {
		t.Errorf("the failure log gives no hint:\n%s", logs.String())
	}

	// Close cuts a call in flight rather than waiting for its deadline.
	<-accepted
	start = time.Now()
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if d := time.Since(start); d > timeout {
		t.Errorf("Close took %v with a hanging call in flight", d)
	}
	if err := <-run; err != nil {
		t.Errorf("Run: %v", err)
	}
}

func TestRuntimeAppearsLater(t *testing.T) {
	sock := filepath.Join(socketDir(t), "late.sock")
	c := newClient(t, Config{Endpoints: []string{sock}, Refresh: 50 * time.Millisecond}, nil)
	if c.Available() {
		t.Fatal("Available() = true before the runtime started")
	}
	startRun(t, c)
	startRuntime(t, sock)

	eventually(t, 5*time.Second, "the runtime started later was found", func() bool {
		_, ok := c.Lookup(ctrApp)
		return ok && c.Available()
	})
}

func TestEviction(t *testing.T) {
	sock := filepath.Join(socketDir(t), "cri.sock")
	rt := startRuntime(t, sock)
	c := newClient(t, Config{Endpoints: []string{sock}, Refresh: 50 * time.Millisecond}, nil)
	if _, ok := c.Lookup(ctrSide); !ok {
		t.Fatal("sidecar not listed")
	}
	startRun(t, c)

	rt.removeContainer(ctrSide)
	eventually(t, 5*time.Second, "a removed container was evicted", func() bool {
		_, ok := c.Lookup(ctrSide)
		return !ok
	})
	if _, ok := c.Lookup(ctrApp); !ok {
		t.Error("a listed container was evicted too")
	}

	rt.removeContainer(ctrApp)
	rt.removeSandbox(sandbox)
	eventually(t, 5*time.Second, "a removed pod was evicted", func() bool {
		_, ok := c.LookupPod(podUID)
		return !ok
	})
}

func TestMissRefreshes(t *testing.T) {
	sock := filepath.Join(socketDir(t), "cri.sock")
	rt := startRuntime(t, sock)
	// No periodic refresh within the test: only misses can refresh.
	c := newClient(t, Config{Endpoints: []string{sock}, Refresh: time.Hour, MissInterval: 20 * time.Millisecond}, nil)
	startRun(t, c)

	rt.addContainer(&runtimeapi.Container{Id: ctrLater, PodSandboxId: sandbox, Metadata: &runtimeapi.ContainerMetadata{Name: "late"}})
	eventually(t, 5*time.Second, "a miss refreshed the cache", func() bool {
		info, ok := c.Lookup(ctrLater)
		return ok && info.ContainerName == "late" && info.PodName == "web-7d9f"
	})

	// An id the runtime does not know refreshes once, then is remembered as
	// unknown, so repeated lookups cost no calls.
	const hostCgroup = "4444444444444444444444444444444444444444444444444444444444444444"
	refreshes := c.Stats().Refreshes
	c.Lookup(hostCgroup)
	eventually(t, 5*time.Second, "the unknown id was settled", func() bool {
		c.missMu.Lock()
		defer c.missMu.Unlock()
		_, neg := c.negative[missKey{id: hostCgroup}]
		return neg
	})
	if got := c.Stats().Refreshes; got != refreshes+1 {
		t.Errorf("refreshes went from %d to %d; want one", refreshes, got)
	}
	c.Lookup(hostCgroup)
	c.missMu.Lock()
	pending := len(c.pending)
	c.missMu.Unlock()
	if pending != 0 || len(c.missCh) != 0 {
		t.Errorf("a known-unknown id asked for a refresh again (pending %d, signals %d)", pending, len(c.missCh))
	}
}

func TestCloseLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()

	sock := filepath.Join(socketDir(t), "cri.sock")
	rt := startRuntime(t, sock)
	c, err := New(Config{Endpoints: []string{sock}, Refresh: 20 * time.Millisecond}, testLogger(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	run := startRun(t, c)
	refreshes := c.Stats().Refreshes
	eventually(t, 5*time.Second, "Run refreshed", func() bool { return c.Stats().Refreshes > refreshes })

	for range 2 {
		if err := c.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
	if err := <-run; err != nil {
		t.Errorf("Run: %v", err)
	}
	if err := c.Run(context.Background()); err == nil {
		t.Error("Run after Close did not fail")
	}
	if c.Available() {
		t.Error("Available() = true after Close")
	}
	rt.stop()

	eventually(t, 5*time.Second, "goroutines returned to their count before the test", func() bool {
		return runtime.NumGoroutine() <= before
	})
}

func TestRestartedPodPrefersReadySandbox(t *testing.T) {
	sb := func(id, name string, state runtimeapi.PodSandboxState, created int64) *runtimeapi.PodSandbox {
		return &runtimeapi.PodSandbox{
			Id:        id,
			Metadata:  &runtimeapi.PodSandboxMetadata{Name: name, Uid: podUID, Namespace: "shop"},
			State:     state,
			CreatedAt: created,
		}
	}
	for _, order := range [][]int{{0, 1, 2}, {2, 1, 0}, {1, 2, 0}} {
		all := []*runtimeapi.PodSandbox{
			sb("old", "old", runtimeapi.PodSandboxState_SANDBOX_NOTREADY, 1),
			sb("ready", "ready", runtimeapi.PodSandboxState_SANDBOX_READY, 2),
			sb("dying", "dying", runtimeapi.PodSandboxState_SANDBOX_NOTREADY, 3),
		}
		var listed []*runtimeapi.PodSandbox
		for _, i := range order {
			listed = append(listed, all[i])
		}
		if got := buildSnapshot(listed, nil).pods[podUID].PodName; got != "ready" {
			t.Errorf("order %v: pod named from sandbox %q; want the ready one", order, got)
		}
	}
}
