package agent

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/leakwatch/leakwatch/pkg/state"
	"github.com/leakwatch/leakwatch/pkg/view"
)

// leakUntilFlagged grows the anonymous memory of the fixture cgroups at
// rels by 1 MiB/s, one collection every interval from *now, until the
// detector flags every one of them (bounded: the fast tier needs minutes).
func leakUntilFlagged(t *testing.T, a *Agent, dir string, now *time.Time, rels ...string) int {
	t.Helper()
	return leakUntil(t, a, dir, now, rels, rels...)
}

// leakUntil grows the fixture cgroups at grow by 1 MiB/s until the ones at
// flag are all flagged: within 500 collections, which the persistence test
// (two of its spans of growth) needs at the default 10 s interval. It
// returns the collections that took.
func leakUntil(t *testing.T, a *Agent, dir string, now *time.Time, flag []string, grow ...string) int {
	t.Helper()
	rels := flag
	anon := regexp.MustCompile(`(?m)^anon \d+$`)
	const most = 500
	for i := range most {
		for _, rel := range grow {
			stat := filepath.Join(dir, rel, "memory.stat")
			b, err := os.ReadFile(stat)
			if err != nil {
				t.Fatal(err)
			}
			b = anon.ReplaceAll(b, fmt.Appendf(nil, "anon %d", (64<<20)+uint64(i)*uint64(a.cfg.Interval.Seconds())<<20))
			if err := os.WriteFile(stat, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		a.collect(*now)
		*now = now.Add(a.cfg.Interval)
		flagged := 0
		for _, rel := range rels {
			if c := find(a, rel); c != nil && c.Verdict.Leaking {
				flagged++
			}
		}
		if flagged == len(rels) {
			return i + 1
		}
	}
	t.Fatalf("fixture leak of 1 MiB/s not flagged in %d collections", most)
	return most
}

// fixtureContainers returns the paths of the two containers of the v2
// fixture tree.
func fixtureContainers(t *testing.T, a *Agent) (string, string) {
	t.Helper()
	var out []string
	for _, c := range a.Snapshot().Containers {
		if c.Kind == "container" {
			out = append(out, c.Cgroup)
		}
	}
	if len(out) < 2 {
		t.Fatalf("fixture has %d containers, want 2", len(out))
	}
	return out[0], out[1]
}

// wantGone checks that a container is reported gone, at the given time,
// with no verdict of its own left and the one it went with kept apart.
func wantGone(t *testing.T, a *Agent, cgroup string, lastSeen, goneAt time.Time) {
	t.Helper()
	c := find(a, cgroup)
	switch {
	case c == nil:
		t.Fatalf("%s: not in the view, want retained as gone", cgroup)
	case !c.Gone:
		t.Errorf("%s: not gone", cgroup)
	case c.Verdict.Leaking || c.Verdict.Confidence != 0 || c.Verdict.GrowthBytesPerSecond != 0 ||
		c.Verdict.TimeToLimit >= 0 || !c.Verdict.LeakingSince.IsZero():
		t.Errorf("%s: gone, but its verdict is still %+v", cgroup, c.Verdict)
	case !c.WasLeaking:
		t.Errorf("%s: the leak it went with is not kept (was_leaking false)", cgroup)
	case !c.LastSeen.Equal(lastSeen) || !c.GoneAt.Equal(goneAt):
		t.Errorf("%s: last seen %v, gone at %v; want %v and %v", cgroup, c.LastSeen, c.GoneAt, lastSeen, goneAt)
	}
}

// A leaking container whose cgroup goes is reported gone on the next
// collection: its verdict ends there (it would otherwise stay "leaking",
// with a growth and a time to limit, for the whole retention). Across a
// restart with the state directory, neither a container gone before the
// restart nor one gone while the agent was down comes back live or
// leaking, and their retention still runs from when they went.
func TestGoneContainerIsJudgedNoMoreAcrossRestarts(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Retention = 30 * time.Minute
	cfg.StateDir = t.TempDir()
	a, dir := fixtureAgent(t, cfg)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a.collect(now)
	early, late := fixtureContainers(t, a)
	leakUntilFlagged(t, a, dir, &now, early, late)

	// early goes while the agent runs.
	if err := os.RemoveAll(filepath.Join(dir, early)); err != nil {
		t.Fatal(err)
	}
	earlySeen := now.Add(-cfg.Interval)
	goneAt := now
	a.collect(now)
	wantGone(t, a, early, earlySeen, goneAt)
	if c := find(a, late); c == nil || c.Gone || !c.Verdict.Leaking {
		t.Fatalf("%s, still there and leaking: %+v", late, c)
	}
	now = now.Add(cfg.Interval)
	a.collect(now) // gone stays gone, with the same times
	wantGone(t, a, early, earlySeen, goneAt)
	lateSeen := now
	if err := a.save(); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}

	// late goes while no agent runs.
	if err := os.RemoveAll(filepath.Join(dir, late)); err != nil {
		t.Fatal(err)
	}
	b := reopen(t, cfg, dir)
	now = now.Add(10 * time.Minute)
	b.collect(now)
	wantGone(t, b, early, earlySeen, goneAt)
	wantGone(t, b, late, lateSeen, lateSeen)
	for _, c := range b.Snapshot().Containers {
		if c.Verdict.Leaking {
			t.Errorf("%s leaking right after the restart: %+v", c.Cgroup, c)
		}
	}
	// Retention runs from when each went, not from the restart.
	b.collect(goneAt.Add(cfg.Retention))
	if c := find(b, early); c != nil {
		t.Errorf("%s outlived its retention across the restart", early)
	}
	if c := find(b, late); c == nil {
		t.Errorf("%s forgotten before its retention ended", late)
	}
}

// A store written by a build that kept a gone container's verdict (and had
// no GoneAt) comes back with the verdict ended and gone since it was last
// seen.
func TestRestoreEndsTheVerdictOfAGoneRecord(t *testing.T) {
	dir := t.TempDir()
	st, err := state.Open(state.Config{Dir: dir}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	seen := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	old := view.Container{
		ID: "77", MemcgID: 77, Cgroup: "/gone", Kind: "cgroup", LastSeen: seen, Gone: true,
		Verdict: view.Verdict{Leaking: true, GrowthBytesPerSecond: 1 << 20, Confidence: 0.9, TimeToLimit: time.Minute, LeakingSince: seen.Add(-time.Hour)},
	}
	if err := st.Save(state.Snapshot{Saved: seen, Containers: []state.Container{{View: old}}}); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.StateDir = dir
	a, _ := fixtureAgent(t, cfg)
	defer func() { _ = a.Close() }()
	a.collect(seen.Add(time.Minute))
	wantGone(t, a, "/gone", seen, seen)
}

// A cgroup tracked for its processes goes when they all exit; if processes
// come back to it, it is a new container: judged afresh, not with the
// verdict or series of the ones that left.
func TestGoneCgroupWithNewProcessesStartsAfresh(t *testing.T) {
	cfg := DefaultConfig()
	a, dir := fixtureAgent(t, cfg)
	svc := filepath.Join(dir, "system.slice", "nginx.service")
	plain := filepath.Join(dir, "plain")
	if err := os.CopyFS(plain, os.DirFS(svc)); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(plain, "payload")); err != nil {
		t.Fatal(err)
	}
	procs := filepath.Join(plain, "cgroup.procs")
	if err := os.WriteFile(procs, []byte("4242\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	leakUntilFlagged(t, a, dir, &now, "/plain")

	if err := os.WriteFile(procs, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	a.collect(now)
	wantGone(t, a, "/plain", now.Add(-cfg.Interval), now)

	if err := os.WriteFile(procs, []byte("4343\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	now = now.Add(cfg.Interval)
	a.collect(now)
	c := find(a, "/plain")
	if c == nil || c.Gone || c.Verdict.Leaking || !c.Verdict.WarmingUp || c.WasLeaking || !c.FirstSeen.Equal(now) {
		t.Fatalf("cgroup with new processes: %+v; want live, warming up, first seen %v", c, now)
	}
	if pts, _ := a.Series(c.ID); len(pts) != 1 {
		t.Errorf("series of the new container has %d points, want 1", len(pts))
	}
}

// A container whose statistics cannot be read is not gone: its cgroup is
// there, and calling it gone would end its series and resolve its alerts.
func TestFailedReadIsNotGone(t *testing.T) {
	a, dir := fixtureAgent(t, DefaultConfig())
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a.collect(now)
	ct, _ := fixtureContainers(t, a)
	// A file that does not parse: the read fails, the cgroup is there.
	if err := os.WriteFile(filepath.Join(dir, ct, "memory.current"), []byte("garbage\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a.collect(now.Add(10 * time.Second))
	if c := find(a, ct); c == nil || c.Gone {
		t.Errorf("container whose memory.stat cannot be read: %+v, want kept live", c)
	}
	if n := a.Snapshot().Agent.Errors[errMemoryRead]; n != 1 {
		t.Errorf("%d memory read errors counted, want 1", n)
	}
}
