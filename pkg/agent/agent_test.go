package agent

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/leakwatch/leakwatch/pkg/cgroups"
	"github.com/leakwatch/leakwatch/pkg/view"
)

// fixtureAgent runs an agent, without tracer or CRI, over a copy of the v2
// fixture tree of pkg/cgroups, so the test can remove cgroups from it.
func fixtureAgent(t *testing.T, cfg Config) (*Agent, string) {
	t.Helper()
	return fixtureAgentLog(t, cfg, slog.New(slog.DiscardHandler))
}

func fixtureAgentLog(t *testing.T, cfg Config, log *slog.Logger) (*Agent, string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS("../cgroups/testdata/v2")); err != nil {
		t.Fatal(err)
	}
	h, err := cgroups.Open(dir, cgroups.V2)
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(cfg, h, Parts{}, map[string]string{PartTracer: "test"}, log)
	if err != nil {
		t.Fatal(err)
	}
	return a, dir
}

func TestCollectTracksContainersAndServicesAndExpiresGoneOnes(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Retention = time.Minute
	a, dir := fixtureAgent(t, cfg)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a.collect(t0)

	snap := a.Snapshot()
	if snap == nil || !snap.Agent.Ready {
		t.Fatal("no ready snapshot after one collection")
	}
	if snap.Agent.Degraded[PartTracer] == "" {
		t.Error("running without the tracer is not reported as degraded")
	}
	var container string
	kinds := map[string]int{}
	for _, c := range snap.Containers {
		kinds[c.Kind]++
		if c.Kind == "pod" || c.Cgroup == "/" {
			t.Errorf("tracked %s %q: parents hold their children's memory", c.Kind, c.Cgroup)
		}
		if c.Kind == "container" && container == "" {
			container = c.Cgroup
			if c.ContainerID == "" || c.Memory.LeakSignal != c.Memory.Anon+c.Memory.Shmem+c.Memory.Kernel {
				t.Errorf("container %+v: want an id and leak signal = anon + shmem + kernel", c)
			}
			if pts, ok := a.Series(c.ID); !ok || len(pts) != 1 {
				t.Errorf("series of %s: %d points, %v; want 1", c.ID, len(pts), ok)
			}
		}
	}
	if kinds["container"] == 0 {
		t.Fatalf("no container found in the fixture; kinds %v", kinds)
	}

	if err := os.RemoveAll(filepath.Join(dir, container)); err != nil {
		t.Fatal(err)
	}
	a.collect(t0.Add(10 * time.Second))
	if c := find(a, container); c == nil || !c.Gone {
		t.Fatalf("removed cgroup %s: %+v, want kept and marked gone", container, c)
	}
	a.collect(t0.Add(20 * time.Second))
	if c := find(a, container); c == nil {
		t.Fatal("gone container forgotten before its retention ended")
	}
	a.collect(t0.Add(90 * time.Second))
	if c := find(a, container); c != nil {
		t.Fatalf("gone container still in the view after its retention: %+v", c)
	}
}

// A cgroup with processes and child cgroups (possible on v1) holds its
// children's memory in its statistics; only the leaf is tracked.
func TestParentWithProcessesIsNotTracked(t *testing.T) {
	a, dir := fixtureAgent(t, DefaultConfig())
	svc := filepath.Join(dir, "system.slice", "nginx.service")
	parent := filepath.Join(dir, "custom")
	child := filepath.Join(parent, "worker")
	for _, d := range []string{parent, child} {
		if err := os.CopyFS(d, os.DirFS(svc)); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte("4242\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		// The fixture service has a child of its own; these must not.
		if err := os.RemoveAll(filepath.Join(d, "payload")); err != nil {
			t.Fatal(err)
		}
	}
	// v2 hands the memory controller down only where the parent enables it.
	if err := os.WriteFile(filepath.Join(parent, "cgroup.subtree_control"), []byte("memory\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a.collect(time.Now())
	if find(a, "/custom") != nil {
		t.Error("parent with processes and a child cgroup is tracked; its memory is counted twice")
	}
	if find(a, "/custom/worker") == nil {
		t.Error("leaf cgroup with processes is not tracked")
	}
}

func TestMaxContainersBoundsTheView(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxContainers = 1
	a, _ := fixtureAgent(t, cfg)
	a.collect(time.Now())
	snap := a.Snapshot()
	if len(snap.Containers) != 1 || snap.Agent.OverLimit == 0 {
		t.Fatalf("%d containers tracked, %d over the limit; want 1 and some", len(snap.Containers), snap.Agent.OverLimit)
	}
}

func find(a *Agent, cgroup string) *view.Container {
	for _, c := range a.Snapshot().Containers {
		if c.Cgroup == cgroup {
			return &c
		}
	}
	return nil
}
