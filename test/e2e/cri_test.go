package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"sigs.k8s.io/yaml"

	"github.com/leakwatch/leakwatch/test/agenttest"
	"github.com/leakwatch/leakwatch/test/cgtest"
)

// The real runtime: containerd (Debian's, CRI plugin built in) started on a
// private root, state and socket by hack/containerd-private.sh, with images
// this test builds as OCI layouts and imports, and pods driven through the
// CRI API as kubelet drives them. The leaking binaries exist only inside
// their images (the host copies are deleted before the pods start).

// ociImage writes an OCI image layout of one layer holding files (path in
// the image -> file on the host) as a tar, named name, and returns the tar.
func ociImage(t *testing.T, name string, files map[string]string, entrypoint []string) string {
	t.Helper()
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	for _, p := range paths {
		b, err := os.ReadFile(files[p])
		if err != nil {
			t.Fatal(err)
		}
		if err := tw.WriteHeader(&tar.Header{Name: strings.TrimPrefix(p, "/"), Mode: 0o755, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	blob := func(b []byte) (string, int) {
		sum := sha256.Sum256(b)
		d := hex.EncodeToString(sum[:])
		if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "blobs", "sha256", d), b, 0o644); err != nil {
			t.Fatal(err)
		}
		return "sha256:" + d, len(b)
	}
	mustJSON := func(v any) []byte {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	layerDigest, layerSize := blob(layer.Bytes())
	configDigest, configSize := blob(mustJSON(map[string]any{
		"architecture": "amd64", "os": "linux",
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{layerDigest}},
		"config": map[string]any{"Entrypoint": entrypoint},
	}))
	manifestDigest, manifestSize := blob(mustJSON(map[string]any{
		"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": configDigest, "size": configSize},
		"layers": []map[string]any{{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layerDigest, "size": layerSize}},
	}))
	if err := os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "index.json"), mustJSON(map[string]any{
		"schemaVersion": 2,
		"manifests": []map[string]any{{
			"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifestDigest, "size": manifestSize,
			"annotations": map[string]string{"io.containerd.image.name": name},
		}},
	}), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "image.tar")
	if b, err := exec.Command("tar", "-C", dir, "-cf", out, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, b)
	}
	return out
}

// privateContainerd starts containerd on its own paths and returns its
// socket; it is stopped, and its directory removed, when the test ends.
func privateContainerd(t *testing.T, dir string) string {
	t.Helper()
	script := filepath.Join(moduleDir(t), "hack", "containerd-private.sh")
	out, err := exec.Command(script, "start", dir).Output()
	if err != nil {
		var stderr []byte
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
			stderr = ee.Stderr
		}
		t.Fatalf("starting containerd: %v\n%s", err, stderr)
	}
	return strings.TrimSpace(string(out))
}

func stopContainerd(t *testing.T, dir string) {
	t.Helper()
	script := filepath.Join(moduleDir(t), "hack", "containerd-private.sh")
	if b, err := exec.Command(script, "stop", dir).CombinedOutput(); err != nil {
		t.Errorf("stopping containerd: %v\n%s", err, b)
	}
}

func moduleDir(t *testing.T) string {
	t.Helper()
	d, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func criClient(t *testing.T, sock string) runtimeapi.RuntimeServiceClient {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///localhost",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return runtimeapi.NewRuntimeServiceClient(conn)
}

// removeRuncCgroups removes what runc made below rel in every cgroup v1
// controller (it makes the pod's parents everywhere and leaves them), deepest
// first; the memory controller's rel itself is cgtest's to remove.
func removeRuncCgroups(t *testing.T, rel string) {
	t.Helper()
	ctrls, _ := filepath.Glob("/sys/fs/cgroup/*")
	for _, c := range ctrls {
		base := filepath.Join(c, rel)
		var dirs []string
		_ = filepath.WalkDir(base, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		slices.Reverse(dirs)
		for _, d := range dirs {
			if d == base && strings.HasSuffix(c, "/memory") {
				continue
			}
			_ = os.Remove(d)
		}
	}
}

type criPod struct {
	id, uid, name, namespace string
	logs                     string                       // the pod's log directory
	cfg                      *runtimeapi.PodSandboxConfig // CreateContainer takes it again
}

func runPod(t *testing.T, rt runtimeapi.RuntimeServiceClient, parent, name, namespace string, annotations map[string]string, more ...func(*runtimeapi.PodSandboxConfig)) criPod {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	uid := fmt.Sprintf("0e6c1e9a-%04x-4d2e-9c41-%012x", len(name), time.Now().UnixNano()&0xffffffffffff)
	logs := t.TempDir()
	cfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: namespace, Uid: uid},
		LogDirectory: logs,
		Labels:       map[string]string{"app": name},
		Annotations:  annotations,
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			// As kubelet's cgroupfs driver names a burstable pod's cgroup.
			CgroupParent: filepath.Join(parent, "kubepods", "burstable", "pod"+uid),
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE},
			},
		},
	}
	for _, f := range more {
		f(cfg)
	}
	resp, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		t.Fatalf("RunPodSandbox %s: %v", name, err)
	}
	pod := criPod{id: resp.PodSandboxId, uid: uid, name: name, namespace: namespace, logs: logs, cfg: cfg}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, _ = rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod.id})
		_, _ = rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod.id})
	})
	return pod
}

func runContainer(t *testing.T, rt runtimeapi.RuntimeServiceClient, pod criPod, name, image string, args []string, limit int64, more ...func(*runtimeapi.ContainerConfig)) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: image},
		Args:     args,
		Labels:   map[string]string{"io.kubernetes.container.name": name},
		LogPath:  name + ".log",
		Linux: &runtimeapi.LinuxContainerConfig{
			Resources: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: limit},
		},
	}
	for _, f := range more {
		f(cfg)
	}
	resp, err := rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
		PodSandboxId: pod.id, Config: cfg, SandboxConfig: pod.cfg,
	})
	if err != nil {
		t.Fatalf("CreateContainer %s: %v", name, err)
	}
	if _, err := rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: resp.ContainerId}); err != nil {
		t.Fatalf("StartContainer %s: %v", name, err)
	}
	return resp.ContainerId
}

type criAPIContainer struct {
	ID          string `json:"id"`
	Cgroup      string `json:"cgroup"`
	ContainerID string `json:"container_id"`
	Namespace   string `json:"namespace"`
	Pod         string `json:"pod"`
	Container   string `json:"container"`
	Status      string `json:"status"`
	Leaking     bool   `json:"leaking"`
	OOMKills    uint64 `json:"oom_kills"`
}

func (a *agent) criContainers(t *testing.T) []criAPIContainer {
	t.Helper()
	var list []criAPIContainer
	a.getJSON(t, "/api/v1/containers", &list)
	return list
}

// waitContainer polls the API until a container with the runtime's id
// matches ok, for at most d.
func (a *agent) waitContainer(t *testing.T, cid string, d time.Duration, what string, ok func(criAPIContainer) bool) criAPIContainer {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		var last criAPIContainer
		for _, c := range a.criContainers(t) {
			if c.ContainerID == cid {
				last = c
				if ok(c) {
					return c
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %.12s: not %s within %v (last seen %+v)", cid, what, d, last)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// startCRI builds the test images (a pause image; cleak, the -O2 C leaker;
// goleak, a Go one; agent, leakwatch itself), starts a private containerd
// with them imported, and returns its socket, directory and CRI client, and
// the cgroup pods are to run below.
func startCRI(t *testing.T) (sock, dir string, rt runtimeapi.RuntimeServiceClient, g *cgtest.Group) {
	t.Helper()
	for _, tool := range []string{"containerd", "runc", "ctr"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s: %v (hack/install-deps.sh installs it)", tool, err)
		}
	}
	// Static binaries, then images of them; the host copies go.
	bins := t.TempDir()
	build := func(out string, cmd ...string) string {
		p := filepath.Join(bins, out)
		args := slices.Clone(cmd[1:])
		if cmd[0] == "go" {
			args = slices.Insert(args, 1, "-o", p) // after "build"
		} else {
			args = append(args, "-o", p)
		}
		c := exec.Command(cmd[0], args...)
		c.Dir = moduleDir(t)
		c.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := c.CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", cmd, err, b)
		}
		return p
	}
	pauseBin := build("pause", "gcc", "-O2", "-static", "test/workloads/pause.c")
	cBin := build("deepleak", "gcc", "-O2", "-static", "-pthread", "test/workloads/deepleak.c")
	goBin := build("goauto", "go", "build", "./test/workloads/goauto")
	agentBin := build("leakwatch", "go", "build", "-trimpath", "./cmd/leakwatch")
	images := map[string]string{
		"leakwatch.test/pause:1":  ociImage(t, "leakwatch.test/pause:1", map[string]string{"/pause": pauseBin}, []string{"/pause"}),
		"leakwatch.test/cleak:1":  ociImage(t, "leakwatch.test/cleak:1", map[string]string{"/deepleak": cBin}, []string{"/deepleak"}),
		"leakwatch.test/goleak:1": ociImage(t, "leakwatch.test/goleak:1", map[string]string{"/goauto": goBin}, []string{"/goauto"}),
		"leakwatch.test/agent:1":  ociImage(t, "leakwatch.test/agent:1", map[string]string{"/leakwatch": agentBin}, []string{"/leakwatch"}),
	}
	if err := os.RemoveAll(bins); err != nil {
		t.Fatal(err)
	}

	// containerd's directory: short, for the socket path's 108 bytes.
	dir, err := os.MkdirTemp("", "lw-ctrd-")
	if err != nil {
		t.Fatal(err)
	}
	sock = privateContainerd(t, dir)
	t.Cleanup(func() { stopContainerd(t, dir) })
	for name, tarball := range images {
		if b, err := exec.Command("ctr", "--address", sock, "-n", "k8s.io", "images", "import", tarball).CombinedOutput(); err != nil {
			t.Fatalf("importing %s: %v\n%s", name, err, b)
		}
	}
	rt = criClient(t, sock)

	g = cgtest.New(t, 2<<30)
	t.Cleanup(func() { removeRuncCgroups(t, g.Rel) })
	return sock, dir, rt, g
}

// Pods run by containerd through CRI: the agent names their containers
// from CRI (pod, namespace, container; /metrics labels as cAdvisor's), takes
// their profiles from binaries found only inside the containers, records
// an OOM kill against the container it happened in, reports a removed
// container gone at once, and keeps the names across a restart of
// containerd and of itself.
func TestContainerdPodsThroughCRI(t *testing.T) {
	cgtest.RequirePrivileged(t)
	sock, dir, rt, g := startCRI(t)
	a := startAgent(t, "--interval", "1s", "--cri-endpoint", "unix://"+sock)

	shop := runPod(t, rt, g.Rel, "shop-7d9f", "prod", nil)
	cLeak := runContainer(t, rt, shop, "cart", "leakwatch.test/cleak:1", []string{"auto", "2048"}, 512*mib)
	goLeak := runContainer(t, rt, shop, "pricing", "leakwatch.test/goleak:1", nil, 512*mib)
	batch := runPod(t, rt, g.Rel, "batch-x2", "jobs", map[string]string{"leakwatch.io/ignore": "true"})
	oom := runContainer(t, rt, batch, "cruncher", "leakwatch.test/cleak:1", []string{"oom"}, 64*mib)

	// Names from CRI, for each container of both pods.
	for cid, want := range map[string][3]string{
		cLeak: {"prod", "shop-7d9f", "cart"}, goLeak: {"prod", "shop-7d9f", "pricing"},
	} {
		c := a.waitContainer(t, cid, 30*time.Second, "named from CRI", func(c criAPIContainer) bool {
			return c.Namespace == want[0] && c.Pod == want[1] && c.Container == want[2]
		})
		if !strings.Contains(c.Cgroup, "pod"+shop.uid) {
			t.Errorf("%s: cgroup %s is not below its pod's", want[2], c.Cgroup)
		}
		t.Logf("%s/%s/%s: cgroup %s", c.Namespace, c.Pod, c.Container, c.Cgroup)
	}

	// /metrics labels, as cAdvisor prints them for the same container.
	cart := a.waitContainer(t, cLeak, 10*time.Second, "listed", func(criAPIContainer) bool { return true })
	fams := a.scrape(t, cart.Cgroup)
	mem := fams["leakwatch_container_memory_bytes"]
	if len(mem) == 0 {
		t.Fatal("no leakwatch_container_memory_bytes for the cart container")
	}
	labels := map[string]string{}
	for _, l := range mem[0].GetLabel() {
		labels[l.GetName()] = l.GetValue()
	}
	for k, v := range map[string]string{"namespace": "prod", "pod": "shop-7d9f", "container": "cart"} {
		if labels[k] != v {
			t.Errorf("/metrics label %s=%q, want %q (labels %v)", k, labels[k], v, labels)
		}
	}

	// Profiles symbolized from the binaries inside the containers.
	for cid, fn := range map[string]string{cLeak: "grow", goLeak: "main.leakMore"} {
		c := a.waitContainer(t, cid, 30*time.Second, "listed", func(criAPIContainer) bool { return true })
		samples := a.waitStacks(t, c.ID, "type=faults", "faulted_space", 8*mib, func(s stackSample) bool {
			return len(s.names) > 0 && s.names[0] == fn
		})
		var top stackSample
		for _, s := range samples {
			if s.value > top.value {
				top = s
			}
		}
		t.Logf("%s: top of faults %s (%s)", c.Container, strings.Join(top.names[:min(6, len(top.names))], " ← "), top.files[0])
		if len(top.names) == 0 || top.names[0] != fn {
			t.Errorf("%s: top of the faults profile %v, want %s", c.Container, top.names, fn)
		}
	}

	// The OOM kill, against the container it happened in; the pod asked
	// to be ignored, so it is never leaking.
	k := a.waitContainer(t, oom, 60*time.Second, "OOM-killed and named", func(c criAPIContainer) bool { return c.OOMKills > 0 && c.Pod != "" })
	if k.Namespace != "jobs" || k.Pod != "batch-x2" || k.Container != "cruncher" {
		t.Errorf("OOM kill recorded against %s/%s/%s, want jobs/batch-x2/cruncher", k.Namespace, k.Pod, k.Container)
	}
	if k.Leaking || (k.Status != "ignored" && k.Status != "gone") {
		t.Errorf("ignored container: status %q, leaking %v", k.Status, k.Leaking)
	}

	// A restart of containerd, then of the agent: names stay.
	stopCtrd := exec.Command("sh", "-c", `kill "$(cat "$1"/containerd.pid)"`, "sh", dir)
	if b, err := stopCtrd.CombinedOutput(); err != nil {
		t.Fatalf("stopping containerd: %v\n%s", err, b)
	}
	time.Sleep(time.Second)
	sock = privateContainerd(t, dir)
	rt = criClient(t, sock)
	a.waitCollections(t, 3)
	a.waitContainer(t, goLeak, 30*time.Second, "named after containerd restarted", func(c criAPIContainer) bool {
		return c.Pod == "shop-7d9f" && c.Container == "pricing"
	})
	a.Stop()
	a = startAgent(t, "--interval", "1s", "--cri-endpoint", "unix://"+sock)
	a.waitContainer(t, goLeak, 30*time.Second, "named after the agent restarted", func(c criAPIContainer) bool {
		return c.Pod == "shop-7d9f" && c.Container == "pricing"
	})

	// A removed container is gone at the next collection.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: cLeak, Timeout: 5}); err != nil {
		t.Fatalf("StopContainer: %v", err)
	}
	if _, err := rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: cLeak}); err != nil {
		t.Fatalf("RemoveContainer: %v", err)
	}
	removed := time.Now()
	a.waitContainer(t, cLeak, 10*time.Second, "gone", func(c criAPIContainer) bool { return c.Status == "gone" })
	t.Logf("removed container reported gone after %v", time.Since(removed).Round(100*time.Millisecond))
}

// daemonSet is the part of deploy/kubernetes/03-daemonset.yaml that says
// how the agent's container runs.
type daemonSet struct {
	Spec struct {
		Template struct {
			Spec struct {
				HostPID    bool `json:"hostPID"`
				Containers []struct {
					Name string   `json:"name"`
					Args []string `json:"args"`
					Env  []struct {
						Name  string `json:"name"`
						Value string `json:"value"`
					} `json:"env"`
					Resources struct {
						Limits map[string]string `json:"limits"`
					} `json:"resources"`
					SecurityContext struct {
						Privileged               bool   `json:"privileged"`
						AllowPrivilegeEscalation bool   `json:"allowPrivilegeEscalation"`
						ReadOnlyRootFilesystem   bool   `json:"readOnlyRootFilesystem"`
						RunAsUser                *int64 `json:"runAsUser"`
						Capabilities             struct {
							Drop []string `json:"drop"`
							Add  []string `json:"add"`
						} `json:"capabilities"`
						SeccompProfile struct {
							Type string `json:"type"`
						} `json:"seccompProfile"`
					} `json:"securityContext"`
					VolumeMounts []struct {
						Name      string `json:"name"`
						MountPath string `json:"mountPath"`
						ReadOnly  bool   `json:"readOnly"`
					} `json:"volumeMounts"`
				} `json:"containers"`
				Volumes []struct {
					Name     string `json:"name"`
					HostPath *struct {
						Path string `json:"path"`
					} `json:"hostPath"`
					EmptyDir *struct{} `json:"emptyDir"`
				} `json:"volumes"`
			} `json:"spec"`
		} `json:"template"`
	} `json:"spec"`
}

// agentContainer turns the manifest's agent container into a CRI config,
// as kubelet would, with what differs here only: the runtime socket is the
// private containerd's, --listen is loopback:port (host network; POD_IP has
// no pod network to name), the web config Secret is not mounted (the test
// scrapes without auth: --web.config.file is left out), host paths of
// another runtime that do not exist here are left out, the state directory
// and the emptyDir are the test's, and collections are every second.
// without names a capability to leave out of the manifest's list.
func agentContainer(t *testing.T, ctrdDir, port, without string) (cfg func(*runtimeapi.ContainerConfig), args []string, limit int64, hostPID bool) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(moduleDir(t), "deploy", "kubernetes", "03-daemonset.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var ds daemonSet
	if err := yaml.Unmarshal(b, &ds); err != nil {
		t.Fatalf("parsing the DaemonSet: %v", err)
	}
	pod := ds.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("the DaemonSet has %d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	for _, a := range c.Args {
		switch {
		case strings.HasPrefix(a, "--listen="):
			a = "--listen=127.0.0.1:" + port
		case strings.HasPrefix(a, "--cri-endpoint="):
			a = "--cri-endpoint=unix:///host/run/containerd/containerd.sock"
		case strings.HasPrefix(a, "--web.config.file="):
			continue
		}
		args = append(args, a)
	}
	args = append(args, "--interval=1s")
	limit = parseQuantity(t, c.Resources.Limits["memory"])
	hostPaths := map[string]string{}
	for _, v := range pod.Volumes {
		switch {
		case v.HostPath != nil:
			hostPaths[v.Name] = v.HostPath.Path
		case v.EmptyDir != nil:
			hostPaths[v.Name] = t.TempDir()
		}
	}
	var mounts []*runtimeapi.Mount
	for _, m := range c.VolumeMounts {
		host, ok := hostPaths[m.Name]
		switch {
		case !ok:
			continue // the web config Secret
		case host == "/run/containerd":
			host = ctrdDir
		case host == "/var/lib/leakwatch":
			host = t.TempDir()
		}
		if _, err := os.Stat(host); err != nil {
			continue // another runtime's socket directory
		}
		mounts = append(mounts, &runtimeapi.Mount{HostPath: host, ContainerPath: m.MountPath, Readonly: m.ReadOnly})
	}
	var envs []*runtimeapi.KeyValue
	for _, e := range c.Env {
		if e.Value != "" {
			envs = append(envs, &runtimeapi.KeyValue{Key: e.Name, Value: []byte(e.Value)})
		}
	}
	sc := c.SecurityContext
	if sc.Privileged || sc.AllowPrivilegeEscalation {
		t.Fatalf("the manifest's agent container is privileged or may escalate: %+v", sc)
	}
	adds := slices.DeleteFunc(slices.Clone(sc.Capabilities.Add), func(c string) bool { return c == without })
	var seccomp *runtimeapi.SecurityProfile
	if sc.SeccompProfile.Type == "RuntimeDefault" {
		seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}
	}
	pidMode := runtimeapi.NamespaceMode_CONTAINER
	if pod.HostPID {
		pidMode = runtimeapi.NamespaceMode_NODE
	}
	cfg = func(cc *runtimeapi.ContainerConfig) {
		cc.Envs, cc.Mounts = envs, mounts
		cc.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{
			Capabilities:     &runtimeapi.Capability{DropCapabilities: sc.Capabilities.Drop, AddCapabilities: adds},
			ReadonlyRootfs:   sc.ReadOnlyRootFilesystem,
			NoNewPrivs:       !sc.AllowPrivilegeEscalation,
			Seccomp:          seccomp,
			NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE, Pid: pidMode},
		}
		if sc.RunAsUser != nil {
			cc.Linux.SecurityContext.RunAsUser = &runtimeapi.Int64Value{Value: *sc.RunAsUser}
		}
	}
	return cfg, args, limit, pod.HostPID
}

// parseQuantity reads a Kubernetes memory quantity of the forms the
// manifest uses ("256Mi", "1Gi").
func parseQuantity(t *testing.T, q string) int64 {
	t.Helper()
	for suffix, mult := range map[string]int64{"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30} {
		if n, ok := strings.CutSuffix(q, suffix); ok {
			var v int64
			if _, err := fmt.Sscan(n, &v); err == nil {
				return v * mult
			}
		}
	}
	t.Fatalf("memory limit %q: not a quantity this test reads", q)
	return 0
}

// leakwatch itself as the DaemonSet runs it, with the settings read from
// deploy/kubernetes/03-daemonset.yaml (see agentContainer): a container of
// the node's PID namespace, root but unprivileged, every capability dropped
// but BPF, PERFMON and SYS_PTRACE, the runtime's default seccomp profile, a
// read-only root filesystem, the host paths mounted as the manifest mounts
// them, its binary only in its image, under the manifest's memory limit. It
// must pass preflight, attach with nothing degraded, and name and profile a
// leaking container of another pod, run as a user of its own. Then each
// capability is shown to be needed: without BPF or PERFMON the agent exits
// 3 with the README's words; without SYS_PTRACE it runs, but cannot read
// the maps of another user's process, so that container's profile has no
// function names.
func TestAgentRunsAsTheDaemonSetContainer(t *testing.T) {
	cgtest.RequirePrivileged(t)
	_, dir, rt, g := startCRI(t)
	shop := runPod(t, rt, g.Rel, "shop-5c4d", "prod", nil)
	cart := runContainer(t, rt, shop, "cart", "leakwatch.test/cleak:1", []string{"auto", "2048"}, 512*mib, func(c *runtimeapi.ContainerConfig) {
		c.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{RunAsUser: &runtimeapi.Int64Value{Value: 1000}}
	})

	// runAgent starts the agent pod without one capability ("" for none)
	// and returns the pod, its container id and its URL.
	runAgent := func(without string) (criPod, string, *agent) {
		port := agenttest.FreePort(t)
		port = port[strings.LastIndexByte(port, ':')+1:]
		cfg, args, limit, hostPID := agentContainer(t, dir, port, without)
		name := "leakwatch-x7k2p"
		if without != "" {
			name = "leakwatch-no-" + strings.ToLower(without)
		}
		node := runPod(t, rt, g.Rel, name, "leakwatch", nil, func(c *runtimeapi.PodSandboxConfig) {
			if hostPID {
				c.Linux.SecurityContext.NamespaceOptions.Pid = runtimeapi.NamespaceMode_NODE
			}
		})
		cid := runContainer(t, rt, node, "leakwatch", "leakwatch.test/agent:1", args, limit, cfg)
		return node, cid, &agent{url: "http://127.0.0.1:" + port}
	}

	node, _, a := runAgent("")
	deadline := time.Now().Add(60 * time.Second)
	for !a.ready(t) {
		if time.Now().After(deadline) {
			t.Fatalf("the agent container is not ready within 60s; its log:\n%s", containerLog(node, "leakwatch"))
		}
		time.Sleep(500 * time.Millisecond)
	}
	var rd struct {
		Degraded map[string]string `json:"degraded"`
	}
	a.getJSON(t, "/readyz", &rd)
	if len(rd.Degraded) > 0 {
		t.Errorf("the agent container runs degraded: %v", rd.Degraded)
	}
	c := a.waitContainer(t, cart, 60*time.Second, "named from CRI by the agent container", func(c criAPIContainer) bool {
		return c.Namespace == "prod" && c.Pod == "shop-5c4d" && c.Container == "cart"
	})
	var entry map[string]any
	a.getJSON(t, "/api/v1/containers/"+c.ID, &entry)
	t.Logf("the agent container's entry for the leaking pod: namespace %v, pod %v, container %v, image %v, status %v",
		entry["namespace"], entry["pod"], entry["container"], entry["image"], entry["status"])
	samples := a.waitStacks(t, c.ID, "type=faults", "faulted_space", 8*mib, func(s stackSample) bool {
		return len(s.names) > 0 && s.names[0] == "grow"
	})
	var grown int64
	for _, s := range samples {
		if isSubsequence([]string{"grow", "level6", "level1", "main"}, s.names) {
			grown += s.value
			t.Logf("top of its profile, read from inside the image (%s): %s", s.files[0], strings.Join(s.names[:min(8, len(s.names))], " ← "))
		}
	}
	t.Logf("cart, profiled by the agent container: %.1f MiB faulted under grow ← … ← main", float64(grown)/mib)
	// The agent sees itself: its own container, named from CRI.
	self := false
	for _, c := range a.criContainers(t) {
		self = self || (c.Namespace == "leakwatch" && c.Pod == "leakwatch-x7k2p" && c.Container == "leakwatch")
	}
	if !self {
		t.Error("the agent container is not in its own list: is it the one answering?")
	}
	if copies := a.metricSum(t, "leakwatch_stack_copies_total", `result="unwound"`); copies == 0 {
		t.Error("no stack unwound by the agent container")
	}
	if held := a.metricSum(t, "leakwatch_unwind_table_bytes", ""); held == 0 {
		t.Error("leakwatch_unwind_table_bytes is 0 after stacks were unwound")
	}

	for _, capName := range []string{"BPF", "PERFMON"} {
		node, cid, _ := runAgent(capName)
		code, msg := waitExit(t, rt, cid, node)
		t.Logf("without CAP_%s: exit %d: %s", capName, code, firstLine(msg, "CAP_BPF"))
		if code != 3 || !strings.Contains(msg, "CAP_BPF and CAP_PERFMON") {
			t.Errorf("without CAP_%s: exit %d, want 3 with the README's message; log:\n%s", capName, code, msg)
		}
	}
	node, _, a = runAgent("SYS_PTRACE")
	deadline = time.Now().Add(60 * time.Second)
	for !a.ready(t) {
		if time.Now().After(deadline) {
			t.Fatalf("the agent container without CAP_SYS_PTRACE is not ready within 60s; its log:\n%s", containerLog(node, "leakwatch"))
		}
		time.Sleep(500 * time.Millisecond)
	}
	c = a.waitContainer(t, cart, 60*time.Second, "listed without CAP_SYS_PTRACE", func(c criAPIContainer) bool { return c.Pod == "shop-5c4d" })
	time.Sleep(5 * time.Second) // a few seconds of faults
	named, stacks, faulted := 0, 0, int64(0)
	for _, s := range readStacks(t, a.download(t, c.ID, "type=faults"), "faulted_space") {
		stacks++
		faulted += s.value
		if slices.Contains(s.names, "grow") {
			named++
		}
	}
	t.Logf("without CAP_SYS_PTRACE: %d of %d stacks (%.1f MiB faulted) of the uid-1000 container name grow", named, stacks, float64(faulted)/mib)
	if faulted == 0 {
		t.Error("without CAP_SYS_PTRACE: no faults profiled at all, so nothing shows what the capability adds")
	}
	if named > 0 {
		t.Error("without CAP_SYS_PTRACE the agent still named another user's functions: the capability is not shown to be needed")
	}
}

// waitExit waits for a container to exit and returns its exit code and log.
func waitExit(t *testing.T, rt runtimeapi.RuntimeServiceClient, cid string, pod criPod) (int32, string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		st, err := rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: cid})
		cancel()
		if err != nil {
			t.Fatalf("ContainerStatus: %v", err)
		}
		if st.GetStatus().GetState() == runtimeapi.ContainerState_CONTAINER_EXITED {
			return st.GetStatus().GetExitCode(), containerLog(pod, "leakwatch")
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %.12s still running after 30s; its log:\n%s", cid, containerLog(pod, "leakwatch"))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func firstLine(s, with string) string {
	for l := range strings.SplitSeq(s, "\n") {
		if strings.Contains(l, with) {
			return l
		}
	}
	return ""
}

// containerLog returns what a container wrote, for a failure message.
func containerLog(pod criPod, name string) string {
	b, err := os.ReadFile(filepath.Join(pod.logs, name+".log"))
	if err != nil {
		return err.Error()
	}
	return string(b)
}
