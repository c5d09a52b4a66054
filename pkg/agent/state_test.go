package agent

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/leakwatch/leakwatch/pkg/cgroups"
)

// TestStateSurvivesRestart: a second agent on the same state directory has
// every container's detector state and series as the first left them; a
// container whose cgroup went while no agent ran is restored as gone since
// it was last seen and expires by the retention.
func TestStateSurvivesRestart(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Retention = time.Minute
	cfg.StateDir = t.TempDir()
	a, dir := fixtureAgent(t, cfg)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 5 {
		a.collect(t0.Add(time.Duration(i) * 10 * time.Second))
	}
	if err := a.save(); err != nil {
		t.Fatal(err)
	}
	dets := map[uint64][]byte{}
	var container string
	for id, e := range a.entries {
		dets[id], _ = e.det.MarshalBinary()
		if e.c.Kind == "container" && container == "" {
			container = e.c.Cgroup
		}
	}
	points := map[uint64]int{}
	for id, e := range a.entries {
		points[id] = len(e.history.Points())
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := os.RemoveAll(filepath.Join(dir, container)); err != nil {
		t.Fatal(err)
	}

	b := reopen(t, cfg, dir)
	if len(b.entries) != len(dets) {
		t.Fatalf("restored %d containers, saved %d", len(b.entries), len(dets))
	}
	for id, e := range b.entries {
		if got, _ := e.det.MarshalBinary(); !bytes.Equal(got, dets[id]) {
			t.Errorf("container %d: detector state differs after the restart", id)
		}
		if n := len(e.history.Points()); n != points[id] {
			t.Errorf("container %d: %d points after the restart, %d before", id, n, points[id])
		}
	}
	b.collect(t0.Add(60 * time.Second))
	for _, c := range b.Snapshot().Containers {
		pts, _ := b.Series(c.ID)
		switch {
		case c.Cgroup == container:
			if !c.Gone || !c.LastSeen.Equal(t0.Add(40*time.Second)) {
				t.Errorf("container gone during the restart: gone %v, last seen %v; want gone since %v", c.Gone, c.LastSeen, t0.Add(40*time.Second))
			}
		case c.Gone:
			t.Errorf("%s marked gone", c.Cgroup)
		case len(pts) != 6 || !pts[0].T.Equal(t0):
			t.Errorf("%s: %d points from %v, want 6 from %v", c.Cgroup, len(pts), pts[0].T, t0)
		}
	}
	b.collect(t0.Add(110 * time.Second))
	if c := find(b, container); c != nil {
		t.Errorf("container gone during the restart outlived its retention: %+v", c)
	}
	if n := b.Snapshot().Agent.Errors[errStateSave]; n != 0 {
		t.Errorf("%d state save errors", n)
	}
}

// reopen starts another agent over the fixture tree dir, as a restart does,
// and closes it when the test ends.
func reopen(t *testing.T, cfg Config, dir string) *Agent {
	t.Helper()
	h, err := cgroups.Open(dir, cgroups.V2)
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(cfg, h, Parts{}, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	return a
}
