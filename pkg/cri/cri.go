// Package cri names containers. It asks the container runtime, through the
// CRI RuntimeService (v1), which pod, namespace and container each container id
// belongs to, and keeps the answers in a cache that lookups read without I/O.
//
// The runtime is optional: on a plain host, or when its socket is not mounted
// into the agent, the client reports Available() == false and every lookup
// misses, so the agent names containers from their cgroup paths alone.
package cri

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/leakwatch/leakwatch/pkg/podpolicy"
)

// Defaults for the zero values of Config.
const (
	DefaultTimeout      = 2 * time.Second
	DefaultRefresh      = 30 * time.Second
	DefaultMissInterval = 5 * time.Second
)

// defaultEndpoints are tried in order when Config.Endpoints is empty.
var defaultEndpoints = []string{
	"unix:///run/containerd/containerd.sock",
	"unix:///run/crio/crio.sock",
	"unix:///var/run/cri-dockerd.sock",
}

const (
	// A node with a few hundred pods answers ListContainers with more than
	// gRPC's default 4 MiB; the kubelet allows 16 MiB for the same reason.
	maxRecvMsgSize = 16 << 20
	// failureLogInterval spaces the logs of one kind of failure.
	failureLogInterval = time.Minute
	// maxMisses bounds the ids remembered between a miss and the refresh that
	// settles it, so that a caller looking up endless unknown ids costs memory
	// no more than refreshes.
	maxMisses = 4096
)

// Labels the kubelet puts on every container it creates.
const (
	labelPodName       = "io.kubernetes.pod.name"
	labelPodNamespace  = "io.kubernetes.pod.namespace"
	labelPodUID        = "io.kubernetes.pod.uid"
	labelContainerName = "io.kubernetes.container.name"
)

// Log keys.
const (
	logKeyEndpoint       = "endpoint"
	logKeyEndpoints      = "endpoints"
	logKeyErr            = "err"
	logKeyHint           = "hint"
	logKeyKind           = "kind"
	logKeySuppressed     = "suppressed"
	logKeyRuntime        = "runtime"
	logKeyRuntimeVersion = "runtime_version"
	logKeyTimeout        = "timeout"
)

// Kinds of failure, each logged at most once per failureLogInterval and endpoint.
const (
	failSocket         = "socket"
	failVersion        = "version"
	failListSandboxes  = "list_pod_sandbox"
	failListContainers = "list_containers"
)

// Config configures a Client. Zero values take the defaults.
type Config struct {
	// Endpoints are CRI sockets ("unix:///path" or "/path"), tried in order;
	// the first that answers Version is used. Empty means containerd, CRI-O
	// and cri-dockerd at their usual paths.
	Endpoints []string
	// Timeout bounds every call to the runtime, connection included.
	Timeout time.Duration
	// Refresh is the period of full listings.
	Refresh time.Duration
	// MissInterval is the least time between two refreshes caused by lookups
	// of unknown ids.
	MissInterval time.Duration
}

// Info names a container.
type Info struct {
	PodName       string
	Namespace     string
	PodUID        string
	ContainerName string
	Image         string
	// Policy is what the pod's and the container's leakwatch.io/*
	// annotations ask for (container annotations override the pod's).
	Policy podpolicy.Policy
}

// PodInfo names a pod, for pod-level cgroups.
type PodInfo struct {
	PodName   string
	Namespace string
	PodUID    string
}

// Stats counts calls to the runtime. A socket that does not exist costs no
// call and counts nothing.
type Stats struct {
	Calls     uint64 // RPCs issued
	Failures  uint64 // RPCs that failed or timed out
	Refreshes uint64 // full listings stored in the cache
}

// Client keeps a cache of container and pod names listed from a CRI runtime.
// Lookup and LookupPod are safe for concurrent use and never wait on the
// runtime; Run keeps the cache fresh.
type Client struct {
	cfg       Config
	explicit  bool // endpoints were configured, so their failures deserve a warning
	endpoints []string
	logger    *slog.Logger

	cache     atomic.Pointer[snapshot]
	available atomic.Bool
	calls     atomic.Uint64
	failures  atomic.Uint64
	refreshes atomic.Uint64

	missMu   sync.Mutex
	pending  map[missKey]time.Time // unknown ids looked up since the last refresh, with when
	negative map[missKey]struct{}  // unknown ids a refresh did not find: no more refreshes for them
	missCh   chan struct{}

	// Owned by the refresher: New, then the Run goroutine, then Close once
	// Run has returned.
	conn        *grpc.ClientConn
	rt          runtimeapi.RuntimeServiceClient
	endpoint    string
	lastRefresh time.Time
	logged      map[string]logState

	stop    context.Context // cancelled by Close, cutting calls in flight
	cancel  context.CancelFunc
	mu      sync.Mutex
	running bool
	closed  bool
	runWG   sync.WaitGroup
}

type snapshot struct {
	containers map[string]Info
	pods       map[string]PodInfo
}

type missKey struct {
	pod bool
	id  string
}

type logState struct {
	last       time.Time
	suppressed int
}

// New returns a client connected to the first endpoint that answers, with its
// cache filled. No reachable runtime is not an error: the client is then not
// Available, and Run keeps trying. New waits at most Timeout per endpoint that
// exists, plus two calls. An error means the configuration is wrong.
func New(cfg Config, logger *slog.Logger) (*Client, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Timeout < 0 || cfg.Refresh < 0 || cfg.MissInterval < 0 {
		return nil, errors.New("cri: negative timeout, refresh or miss interval")
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Refresh == 0 {
		cfg.Refresh = DefaultRefresh
	}
	if cfg.MissInterval == 0 {
		cfg.MissInterval = DefaultMissInterval
	}
	c := &Client{
		cfg:      cfg,
		explicit: len(cfg.Endpoints) > 0,
		logger:   logger,
		pending:  make(map[missKey]time.Time),
		negative: make(map[missKey]struct{}),
		missCh:   make(chan struct{}, 1),
		logged:   make(map[string]logState),
	}
	raw := cfg.Endpoints
	if !c.explicit {
		raw = defaultEndpoints
	}
	for _, ep := range raw {
		path, err := socketPath(ep)
		if err != nil {
			return nil, fmt.Errorf("cri endpoint %q: %w", ep, err)
		}
		c.endpoints = append(c.endpoints, path)
	}
	c.cache.Store(&snapshot{})
	c.stop, c.cancel = context.WithCancel(context.Background())

	c.refresh(c.stop, true)
	if !c.available.Load() {
		if c.explicit {
			logger.Warn("no configured CRI endpoint answered; pods will not be named until one does",
				logKeyEndpoints, c.endpoints)
		} else {
			logger.Info("no CRI runtime socket answered; containers are named from cgroup paths only",
				logKeyEndpoints, c.endpoints,
				logKeyHint, "on Kubernetes, mount the runtime socket into the agent or configure its endpoint")
		}
	}
	return c, nil
}

// Run refreshes the cache every Refresh, and sooner (at most once per
// MissInterval) after lookups of unknown ids, until ctx is done or Close is
// called. It connects to a runtime that was not reachable before.
func (c *Client) Run(ctx context.Context) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return errors.New("cri: client closed")
	}
	if c.running {
		c.mu.Unlock()
		return errors.New("cri: Run already called")
	}
	c.running = true
	c.runWG.Add(1)
	c.mu.Unlock()
	defer c.runWG.Done()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(c.stop, cancel)()

	ticker := time.NewTicker(c.cfg.Refresh)
	defer ticker.Stop()
	missTimer := time.NewTimer(time.Hour)
	missTimer.Stop()
	defer missTimer.Stop()
	armed := false

	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
			c.refresh(ctx, true)
		case <-c.missCh:
			if wait := c.cfg.MissInterval - time.Since(c.lastRefresh); wait > 0 {
				if !armed {
					missTimer.Reset(wait)
					armed = true
				}
				continue
			}
			c.refresh(ctx, false)
		case <-missTimer.C:
			armed = false
			c.refresh(ctx, false)
		}
	}
}

// Close stops Run and closes the connection. It is idempotent.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	c.cancel()
	c.runWG.Wait()
	return c.disconnect()
}

// Available reports whether a runtime answered the last attempt to reach it.
func (c *Client) Available() bool { return c.available.Load() }

// Stats returns the call counters.
func (c *Client) Stats() Stats {
	return Stats{
		Calls:     c.calls.Load(),
		Failures:  c.failures.Load(),
		Refreshes: c.refreshes.Load(),
	}
}

// Lookup names a container by its full id. It reads the cache only; a miss
// asks Run for an early refresh.
func (c *Client) Lookup(containerID string) (Info, bool) {
	info, ok := c.cache.Load().containers[containerID]
	if !ok && containerID != "" {
		c.noteMiss(missKey{id: containerID})
	}
	return info, ok
}

// LookupPod names a pod by its UID. It reads the cache only; a miss asks Run
// for an early refresh. The systemd cgroup driver writes UIDs with
// underscores for dashes; both spellings are accepted.
func (c *Client) LookupPod(podUID string) (PodInfo, bool) {
	podUID = strings.ReplaceAll(podUID, "_", "-")
	info, ok := c.cache.Load().pods[podUID]
	if !ok && podUID != "" {
		c.noteMiss(missKey{pod: true, id: podUID})
	}
	return info, ok
}

// noteMiss wakes Run for an id it has not yet looked for. Ids a refresh has
// already failed to find (host cgroups, containers of other runtimes) do not
// wake it again until the next full refresh, so they cost no extra calls.
func (c *Client) noteMiss(k missKey) {
	if !c.available.Load() {
		return // the periodic refresh looks for a runtime; misses cannot help
	}
	c.missMu.Lock()
	_, neg := c.negative[k]
	_, pend := c.pending[k]
	fresh := !neg && !pend && len(c.pending) < maxMisses
	if fresh {
		c.pending[k] = time.Now()
	}
	c.missMu.Unlock()
	if fresh {
		select {
		case c.missCh <- struct{}{}:
		default:
		}
	}
}

// refresh connects if needed, lists sandboxes and containers, and replaces
// the cache, which drops whatever the runtime no longer lists. On failure the
// cache is kept and the connection dropped, so that the next refresh probes
// the endpoints again.
func (c *Client) refresh(ctx context.Context, full bool) {
	start := time.Now()
	c.lastRefresh = start
	if c.rt == nil && !c.connect(ctx) {
		return
	}
	snap, err := c.list(ctx)
	if err != nil {
		_ = c.disconnect()
		return
	}
	c.cache.Store(snap)
	c.refreshes.Add(1)
	c.settleMisses(snap, start, full)
}

// settleMisses marks the ids looked up before the listing began and not in
// it as known to be unknown. A full refresh forgets them all, so the set
// stays bounded and a late container gets another chance.
func (c *Client) settleMisses(snap *snapshot, listed time.Time, full bool) {
	c.missMu.Lock()
	defer c.missMu.Unlock()
	if full || len(c.negative) >= maxMisses {
		clear(c.negative)
	}
	for k, at := range c.pending {
		if at.After(listed) {
			continue // the listing may predate the container
		}
		delete(c.pending, k)
		if !snap.has(k) {
			c.negative[k] = struct{}{}
		}
	}
}

func (s *snapshot) has(k missKey) bool {
	if k.pod {
		_, ok := s.pods[k.id]
		return ok
	}
	_, ok := s.containers[k.id]
	return ok
}

// connect tries the endpoints in order and keeps the first that answers Version.
func (c *Client) connect(ctx context.Context) bool {
	for _, ep := range c.endpoints {
		if ctx.Err() != nil {
			break
		}
		if err := c.dial(ctx, ep); err != nil {
			continue
		}
		c.available.Store(true)
		return true
	}
	c.available.Store(false)
	return false
}

func (c *Client) dial(ctx context.Context, path string) error {
	if _, err := os.Stat(path); err != nil {
		// A missing default socket is the normal state of a plain host or
		// of another runtime's node: only configured endpoints warn.
		if c.explicit || !errors.Is(err, os.ErrNotExist) {
			c.logFailure(failSocket, path, err)
		}
		return err
	}
	timeout := c.cfg.Timeout
	conn, err := grpc.NewClient("passthrough:///localhost",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			d := net.Dialer{Timeout: timeout}
			return d.DialContext(ctx, "unix", path)
		}),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.DefaultConfig,
			MinConnectTimeout: timeout,
		}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxRecvMsgSize)),
	)
	if err != nil {
		c.logFailure(failSocket, path, err)
		return err
	}
	rt := runtimeapi.NewRuntimeServiceClient(conn)
	var ver *runtimeapi.VersionResponse
	err = c.call(ctx, failVersion, path, func(ctx context.Context) (err error) {
		ver, err = rt.Version(ctx, &runtimeapi.VersionRequest{})
		return err
	})
	if err != nil {
		_ = conn.Close()
		return err
	}
	c.conn, c.rt, c.endpoint = conn, rt, path
	c.logger.Info("connected to CRI runtime",
		logKeyEndpoint, path,
		logKeyRuntime, ver.GetRuntimeName(),
		logKeyRuntimeVersion, ver.GetRuntimeVersion())
	return nil
}

func (c *Client) disconnect() error {
	c.available.Store(false)
	if c.conn == nil {
		return nil
	}
	err := c.conn.Close()
	c.conn, c.rt, c.endpoint = nil, nil, ""
	if err != nil {
		return fmt.Errorf("closing cri connection: %w", err)
	}
	return nil
}

func (c *Client) list(ctx context.Context) (*snapshot, error) {
	var sandboxes []*runtimeapi.PodSandbox
	err := c.call(ctx, failListSandboxes, c.endpoint, func(ctx context.Context) error {
		resp, err := c.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
		sandboxes = resp.GetItems()
		return err
	})
	if err != nil {
		return nil, err
	}
	var containers []*runtimeapi.Container
	err = c.call(ctx, failListContainers, c.endpoint, func(ctx context.Context) error {
		resp, err := c.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
		containers = resp.GetContainers()
		return err
	})
	if err != nil {
		return nil, err
	}
	return buildSnapshot(sandboxes, containers), nil
}

// call runs one RPC under its own deadline, counting it and logging its failure.
func (c *Client) call(ctx context.Context, kind, endpoint string, rpc func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	c.calls.Add(1)
	err := rpc(ctx)
	if err == nil {
		return nil
	}
	if ctx.Err() != nil && errors.Is(context.Cause(ctx), context.Canceled) {
		return err // shutting down: neither a failure of the runtime nor news
	}
	c.failures.Add(1)
	c.logFailure(kind, endpoint, err)
	return err
}

// logFailure warns at most once per failureLogInterval for each kind of
// failure and endpoint, saying how many were left out in between.
func (c *Client) logFailure(kind, endpoint string, err error) {
	key := kind + " " + endpoint
	st := c.logged[key]
	now := time.Now()
	if !st.last.IsZero() && now.Sub(st.last) < failureLogInterval {
		st.suppressed++
		c.logged[key] = st
		return
	}
	c.logged[key] = logState{last: now}
	c.logger.Warn("CRI endpoint failed",
		logKeyKind, kind,
		logKeyEndpoint, endpoint,
		logKeyErr, err,
		logKeyHint, hint(err),
		logKeyTimeout, c.cfg.Timeout,
		logKeySuppressed, st.suppressed)
}

// hint says what an operator can do about a failure.
func hint(err error) string {
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "the socket does not exist: start the container runtime, mount its socket into the agent, or fix the endpoint"
	case errors.Is(err, os.ErrPermission):
		return "permission denied on the socket: run the agent as root or grant it access to the socket"
	}
	switch status.Code(err) {
	case codes.DeadlineExceeded:
		return "the runtime did not answer in time: check that it is healthy, or raise the timeout"
	case codes.Unimplemented:
		return "the endpoint does not serve the CRI v1 RuntimeService: upgrade the runtime or point at its CRI socket"
	case codes.Unavailable:
		return "could not reach the runtime: check that it is running and that the endpoint is its CRI socket"
	}
	return "check the runtime's logs"
}

// socketPath accepts "unix:///path" and "/path"; the agent runs on Linux
// nodes, where runtimes listen on unix sockets only.
func socketPath(endpoint string) (string, error) {
	path := endpoint
	if rest, ok := strings.CutPrefix(endpoint, "unix://"); ok {
		path = rest
	} else if strings.Contains(endpoint, "://") {
		return "", errors.New("only unix:// endpoints are supported")
	}
	if !strings.HasPrefix(path, "/") {
		return "", errors.New("socket path must be absolute (unix:///path)")
	}
	return path, nil
}

// buildSnapshot indexes containers by id and pods by UID. The kubelet's
// labels name a container; sandbox metadata fills what labels lack (for
// containers not made by the kubelet).
func buildSnapshot(sandboxes []*runtimeapi.PodSandbox, containers []*runtimeapi.Container) *snapshot {
	byID := make(map[string]*runtimeapi.PodSandbox, len(sandboxes))
	pods := make(map[string]PodInfo, len(sandboxes))
	chosen := make(map[string]*runtimeapi.PodSandbox, len(sandboxes))
	for _, sb := range sandboxes {
		byID[sb.GetId()] = sb
		p := podInfo(sb)
		if p.PodUID == "" {
			continue
		}
		// A restarted pod lists its old sandboxes too: prefer the ready, then the newest.
		if prev, ok := chosen[p.PodUID]; ok && !newer(sb, prev) {
			continue
		}
		chosen[p.PodUID] = sb
		pods[p.PodUID] = p
	}
	infos := make(map[string]Info, len(containers))
	for _, ctr := range containers {
		labels := ctr.GetLabels()
		sb := podInfo(byID[ctr.GetPodSandboxId()])
		infos[ctr.GetId()] = Info{
			PodName:       first(labels[labelPodName], sb.PodName),
			Namespace:     first(labels[labelPodNamespace], sb.Namespace),
			PodUID:        first(labels[labelPodUID], sb.PodUID),
			ContainerName: first(ctr.GetMetadata().GetName(), labels[labelContainerName]),
			Image:         first(ctr.GetImage().GetUserSpecifiedImage(), ctr.GetImage().GetImage(), ctr.GetImageRef()),
			Policy:        podpolicy.Parse(byID[ctr.GetPodSandboxId()].GetAnnotations(), ctr.GetAnnotations()),
		}
	}
	return &snapshot{containers: infos, pods: pods}
}

func podInfo(sb *runtimeapi.PodSandbox) PodInfo {
	md, labels := sb.GetMetadata(), sb.GetLabels()
	return PodInfo{
		PodName:   first(md.GetName(), labels[labelPodName]),
		Namespace: first(md.GetNamespace(), labels[labelPodNamespace]),
		PodUID:    first(md.GetUid(), labels[labelPodUID]),
	}
}

func newer(a, b *runtimeapi.PodSandbox) bool {
	aReady := a.GetState() == runtimeapi.PodSandboxState_SANDBOX_READY
	bReady := b.GetState() == runtimeapi.PodSandboxState_SANDBOX_READY
	if aReady != bReady {
		return aReady
	}
	return a.GetCreatedAt() > b.GetCreatedAt()
}

func first(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
