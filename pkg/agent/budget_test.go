package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// addService adds a systemd service cgroup to the fixture tree, a copy of
// the fixture's nginx.service without its child, and returns its path.
func addService(t *testing.T, dir, name string) string {
	t.Helper()
	rel := "/system.slice/" + name + ".service"
	d := filepath.Join(dir, rel)
	if err := os.CopyFS(d, os.DirFS(filepath.Join(dir, "system.slice", "nginx.service"))); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(d, "payload")); err != nil {
		t.Fatal(err)
	}
	return rel
}

// removeCgroup takes a cgroup out of the fixture tree. It is moved aside
// rather than deleted: the fixture's cgroup ids are directory inodes, and
// a freed one given to the next cgroup made would pass for the same id
// (the kernel never reuses a cgroup id).
func removeCgroup(t *testing.T, dir, rel string) {
	t.Helper()
	if err := os.Rename(filepath.Join(dir, rel), filepath.Join(filepath.Dir(dir), filepath.Base(dir)+"-"+filepath.Base(rel))); err != nil {
		t.Fatal(err)
	}
}

// Short-lived cgroups that fill every live slot and then go must not keep
// a new container out: gone ones have a budget of their own, the longest
// gone leave it first, and the newcomer is judged as on an empty node.
func TestGoneContainersNeverTakeALiveSlot(t *testing.T) {
	const churn = 3
	probe, _ := fixtureAgent(t, DefaultConfig())
	probe.collect(time.Now())
	base := len(probe.Snapshot().Containers)

	cfg := DefaultConfig()
	cfg.MaxContainers = base + churn
	cfg.MaxGoneContainers = churn
	a, dir := fixtureAgent(t, cfg)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	step := func() {
		t.Helper()
		a.collect(now)
		now = now.Add(cfg.Interval)
	}

	var jobs []string
	for i := range churn {
		jobs = append(jobs, addService(t, dir, "job-"+string(rune('a'+i))))
	}
	step()
	if snap := a.Snapshot(); len(snap.Containers) != cfg.MaxContainers || snap.Agent.OverLimit != 0 {
		t.Fatalf("%d tracked, %d over the limit; want every live slot taken and none over", len(snap.Containers), snap.Agent.OverLimit)
	}
	// The jobs end one after another: the first is the longest gone.
	for _, j := range jobs {
		removeCgroup(t, dir, j)
		step()
	}
	for _, j := range jobs {
		if c := find(a, j); c == nil || !c.Gone {
			t.Fatalf("%s: %+v, want retained as gone", j, c)
		}
	}

	leaky := addService(t, dir, "leaky")
	step()
	if find(a, leaky) == nil {
		t.Fatalf("new container not tracked while %d gone ones are retained (%d over the limit)",
			churn, a.Snapshot().Agent.OverLimit)
	}
	if n := a.Snapshot().Agent.OverLimit; n != 0 {
		t.Errorf("%d containers over the limit, want 0: only live ones take slots", n)
	}
	leakUntilFlagged(t, a, dir, &now, leaky)

	// One more gone than the budget holds: the longest gone is forgotten
	// before its retention ends, the others stay.
	removeCgroup(t, dir, leaky)
	step()
	if c := find(a, jobs[0]); c != nil {
		t.Errorf("longest gone %s still retained beyond the gone budget of %d", jobs[0], churn)
	}
	for _, rel := range append(jobs[1:], leaky) {
		if c := find(a, rel); c == nil || !c.Gone {
			t.Errorf("%s: %+v, want retained as gone", rel, c)
		}
	}
}

// At the scale: 2,000 containers that filled their live slots and
// went, all retained, and then one new container leaking 1 MiB/s. It is
// tracked at once and flagged after as many collections as on a node with
// nothing gone.
func TestTwoThousandGoneDoNotDelayANewLeak(t *testing.T) {
	if testing.Short() {
		t.Skip("2,000 fixture cgroups")
	}
	const churn = 2000
	empty, emptyDir := fixtureAgent(t, DefaultConfig())
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	empty.collect(now)
	base := len(empty.Snapshot().Containers)
	want := leakUntilFlagged(t, empty, emptyDir, &now, addService(t, emptyDir, "leaky"))

	cfg := DefaultConfig()
	cfg.MaxContainers = base + churn
	cfg.MaxGoneContainers = churn
	a, dir := fixtureAgent(t, cfg)
	now = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	jobs := make([]string, churn)
	for i := range jobs {
		jobs[i] = addService(t, dir, fmt.Sprintf("job-%04d", i))
	}
	a.collect(now)
	now = now.Add(cfg.Interval)
	for _, j := range jobs {
		removeCgroup(t, dir, j)
	}
	a.collect(now)
	now = now.Add(cfg.Interval)
	snap := a.Snapshot()
	gone := 0
	for _, c := range snap.Containers {
		if c.Gone {
			gone++
		}
	}
	if gone != churn {
		t.Fatalf("%d gone containers retained, want %d", gone, churn)
	}
	got := leakUntilFlagged(t, a, dir, &now, addService(t, dir, "leaky"))
	t.Logf("new leak flagged after %d collections beside %d gone containers; %d on an empty node", got, gone, want)
	if got != want {
		t.Errorf("new leak flagged after %d collections beside %d gone containers, %d on an empty node", got, gone, want)
	}
	if n := a.Snapshot().Agent.OverLimit; n != 0 {
		t.Errorf("%d containers over the limit, want 0", n)
	}
}
