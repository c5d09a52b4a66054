package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/leakwatch/leakwatch/test/agenttest"
	"github.com/leakwatch/leakwatch/test/cgtest"
)

// stoppableAgent is a `leakwatch run` that a test can stop and start again.
// seriesTimes returns the times of a container's series from the API.
func (a *agent) seriesTimes(t *testing.T, id string) []time.Time {
	t.Helper()
	resp, err := http.Get(a.url + "/api/v1/containers/" + id)
	if err != nil {
		t.Fatalf("GET container %s: %v", id, err)
	}
	defer resp.Body.Close()
	var detail struct {
		Series []struct {
			T time.Time `json:"t"`
		} `json:"series"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&detail); err != nil {
		t.Fatalf("decoding container %s: %v", id, err)
	}
	out := make([]time.Time, len(detail.Series))
	for i, p := range detail.Series {
		out[i] = p.T
	}
	return out
}

// A leak being flagged is still flagged right after the agent restarts with
// the same --state-dir (no new warm-up), with the series from before the
// restart; a store overwritten with garbage is set aside for a clean start.
func TestRestartKeepsDetectionState(t *testing.T) {
	cgtest.RequirePrivileged(t)
	memwork, _ := cgtest.Workloads(t)
	bin := agenttest.Build(t)
	stateDir := t.TempDir()
	flags := []string{"--state-dir", stateDir, "--interval", "1s", "--detect-warm-up", "15s", "--detect-window", "5s", "--detect-persistence", "20s"}
	a := wrap(agenttest.Launch(t, bin, flags...))

	leakCG := cgtest.New(t, 1024*mib)
	leaker := leakCG.Start(t, memwork)
	// 4 MiB/s, bounded to 700 MiB by the loop and 1 GiB by the cgroup.
	stopLeak := leaker.Repeat(t, "leak 1024 1", 250*time.Millisecond, 700)
	defer stopLeak()

	start := time.Now()
	var id string
	for id == "" {
		if time.Since(start) > 90*time.Second {
			t.Fatal("leak not flagged within 90s before the restart")
		}
		if c, ok := a.containers(t)[leakCG.Rel]; ok && c.Leaking {
			id = c.ID
			t.Logf("leak flagged after %v", time.Since(start).Round(time.Second))
		}
		time.Sleep(time.Second)
	}
	before := a.seriesTimes(t, id)

	a.Stop()
	if _, err := os.Stat(filepath.Join(stateDir, "leakwatch.db")); err != nil {
		t.Fatalf("no state store after a clean stop: %v", err)
	}
	restart := time.Now()
	a = wrap(agenttest.Launch(t, bin, flags...))
	if !a.Logged("state restored") {
		t.Error("restart does not log the restored state")
	}
	// Warm-up alone would keep it quiet 15s after the restart; allow 3
	// collections, then it must stay flagged.
	time.Sleep(3 * time.Second)
	for time.Since(restart) < 10*time.Second {
		c, ok := a.containers(t)[leakCG.Rel]
		if !ok || !c.Leaking || c.ID != id {
			t.Fatalf("%v after the restart: container %+v (found %v), want id %s still flagged leaking",
				time.Since(restart).Round(100*time.Millisecond), c, ok, id)
		}
		time.Sleep(500 * time.Millisecond)
	}
	after := a.seriesTimes(t, id)
	var old, fresh int
	for _, ts := range after {
		if ts.Before(restart) {
			old++
		} else {
			fresh++
		}
	}
	if old < len(before)/2 || fresh < 3 || !after[0].Equal(before[0]) {
		t.Errorf("series after the restart: %d points from before it (had %d, first %v now %v), %d after; want the old ones kept and new ones added",
			old, len(before), before[0], after[0], fresh)
	}

	a.Stop()
	stopLeak()
	db := filepath.Join(stateDir, "leakwatch.db")
	if err := os.WriteFile(db, []byte(strings.Repeat("garbage!", 4096)), 0o600); err != nil {
		t.Fatal(err)
	}
	a = wrap(agenttest.Launch(t, bin, flags...))
	if aside, _ := filepath.Glob(db + ".corrupt-*"); len(aside) != 1 {
		t.Errorf("files set aside after a corrupt store: %v, want one", aside)
	}
	if !a.Logged("moved aside") {
		t.Error("no log line says the corrupt store was moved aside")
	}
	if c, ok := a.containers(t)[leakCG.Rel]; ok && c.Leaking {
		t.Errorf("fresh start still flags the leak from the discarded store: %+v", c)
	}
}
