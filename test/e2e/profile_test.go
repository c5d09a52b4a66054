package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/pprof/profile"

	"github.com/leakwatch/leakwatch/test/cgtest"
)

// pprofTop runs the real `go tool pprof -top` on a profile (a file or a
// URL) and returns the first entry's function and flat bytes.
func pprofTop(t *testing.T, source, sampleIndex string) (string, float64, string) {
	t.Helper()
	out := pprofTopOutput(t, source, sampleIndex)
	// After the header line "flat  flat%   sum%  cum  cum%", entries are
	// "<flat>B <pct>% <pct>% <cum>B <pct>% <function>".
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		if !strings.Contains(l, "flat%") || i+1 >= len(lines) {
			continue
		}
		f := strings.Fields(lines[i+1])
		if len(f) < 6 {
			break
		}
		flat, err := strconv.ParseFloat(strings.TrimSuffix(f[0], "B"), 64)
		if err != nil {
			t.Fatalf("pprof flat %q: %v\n%s", f[0], err, out)
		}
		return strings.Join(f[5:], " "), flat, out
	}
	t.Fatalf("no entries in pprof output:\n%s", out)
	return "", 0, ""
}

// download fetches a profile over HTTP into a file, as a user would.
func (a *agent) download(t *testing.T, id, query string) string {
	t.Helper()
	resp, err := http.Get(a.url + "/api/v1/containers/" + id + "/profile?" + query)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("profile of %s?%s: %s %s", id, query, resp.Status, body)
	}
	if cd := resp.Header.Get("Content-Disposition"); !strings.Contains(cd, id) {
		t.Errorf("Content-Disposition %q does not name the container", cd)
	}
	file := filepath.Join(t.TempDir(), "profile.pb.gz")
	if err := os.WriteFile(file, body, 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

// waitTracked returns the API id of the container of a cgroup.
func (a *agent) waitTracked(t *testing.T, cgroup string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if c, ok := a.containers(t)[cgroup]; ok {
			return c.ID
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("cgroup %s not tracked within 30s", cgroup)
	return ""
}

// Each workload leaks 64 MiB in 1 MiB steps in a named function after some
// start-up allocation; the profiles must put that function on top, with
// about the bytes leaked. Tolerances: inuse from mappings is exact for C
// (±1 MiB); the Go heap maps memory in chunks as it grows, so 0.8..1.5x;
// faults are sampled every 512 KiB, so ±20%.
func TestProfilesPutTheLeakingFunctionOnTop(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Fatalf("go not on PATH: the test reads profiles with the real go tool pprof")
	}
	memwork, gowork := cgtest.Workloads(t)
	a := startAgent(t, "--interval", "1s")

	for _, w := range []struct {
		name, bin, startup, leak, function string
		inuseLo, inuseHi                   float64
	}{
		{"c", memwork, "map 8192", "leak 1024 1", "leak_step", 63, 65},
		{"go", gowork, "leak 8192", "leak 1024", "main.retainBytes", 0.8 * 64, 1.5 * 64},
	} {
		t.Run(w.name, func(t *testing.T) {
			g := cgtest.New(t, 512*mib)
			p := g.Start(t, w.bin)
			p.Do(t, w.startup) // allocated at start: in inuse, not in the growth window
			id := a.waitTracked(t, g.Rel)
			time.Sleep(3 * time.Second) // let the start-up fall out of a short window
			leakStart := time.Now()
			for range 64 {
				p.Do(t, w.leak)
				time.Sleep(50 * time.Millisecond)
			}
			time.Sleep(2500 * time.Millisecond) // two collections
			// The window covers the leak however long a busy host made it
			// take, and one second more, but not the start-up 3 s before:
			// taken anew for each download, as each ends when it is asked.
			window := func() string { return fmt.Sprintf("seconds=%d", int(time.Since(leakStart).Seconds())+2) }

			growth := a.download(t, id, "type=inuse&"+window())
			fn, flat, out := pprofTop(t, growth, "inuse_space")
			t.Logf("growth (inuse):\n%s", out)
			if fn != w.function {
				t.Errorf("growth profile top is %q, want %s", fn, w.function)
			}
			if mb := flat / mib; mb < w.inuseLo || mb > w.inuseHi {
				t.Errorf("growth profile: %s holds %.1f MiB, want %.0f..%.0f", fn, mb, w.inuseLo, w.inuseHi)
			}

			inuse := a.download(t, id, "type=inuse")
			if fn, _, out := pprofTop(t, inuse, "inuse_space"); fn != w.function {
				t.Errorf("inuse profile top is %q, want %s:\n%s", fn, w.function, out)
			}

			faultsWindow := window()
			faults := a.download(t, id, "type=faults&"+faultsWindow)
			fn, flat, out = pprofTop(t, faults, "faulted_space")
			t.Logf("faults (%s):\n%s", faultsWindow, out)
			if fn != w.function {
				t.Errorf("faults profile top is %q, want %s", fn, w.function)
			}
			if mb := flat / mib; mb < 0.8*64 || mb > 1.2*64 {
				t.Errorf("faults profile: %s faulted %.1f MiB, want 64 ±20%%", fn, mb)
			}
		})
	}

	// go tool pprof straight on the URL, as the README says.
	g := cgtest.New(t, 256*mib)
	p := g.Start(t, memwork)
	id := a.waitTracked(t, g.Rel)
	p.Do(t, "leak 1024 16")
	a.pollProfile(t, id, "type=inuse", func(prof *profile.Profile) bool {
		return byFunction(t, prof, "inuse_space")["leak_step"] > 0
	})
	url := fmt.Sprintf("%s/api/v1/containers/%s/profile", a.url, id)
	if fn, _, out := pprofTop(t, url, "inuse_space"); fn != "leak_step" {
		t.Errorf("go tool pprof %s: top %q, want leak_step:\n%s", url, fn, out)
	}
}

// An OOM kill is recorded with the limit that fired, the stacks that grew
// before it, and a retained profile that pprof reads.
func TestOOMKillRecord(t *testing.T) {
	memwork, _ := cgtest.Workloads(t)
	a := startAgent(t, "--interval", "1s")
	g := cgtest.New(t, 64*mib)
	p := g.Start(t, memwork)
	p.Do(t, "nop")
	p.Send(t, "oom")
	p.Wait(t, 60*time.Second)

	type kill struct {
		Seq        uint64   `json:"seq"`
		Cgroup     string   `json:"cgroup"`
		PID        int      `json:"pid"`
		Trigger    string   `json:"trigger"`
		TopStacks  []string `json:"top_stacks"`
		ProfileURL string   `json:"profile_url"`
	}
	var got *kill
	deadline := time.Now().Add(20 * time.Second)
	for got == nil && time.Now().Before(deadline) {
		resp, err := http.Get(a.url + "/api/v1/oomkills")
		if err != nil {
			t.Fatal(err)
		}
		var kills []kill
		err = json.NewDecoder(resp.Body).Decode(&kills)
		_ = resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range kills {
			if k.PID == p.PID {
				got = &k
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got == nil {
		t.Fatalf("OOM kill of pid %d not listed in /api/v1/oomkills within 20s", p.PID)
	}
	t.Logf("OOM record: %+v", *got)
	if got.Cgroup != g.Rel || got.Trigger != "container" {
		t.Errorf("kill in %q triggered by %q; want %s and container", got.Cgroup, got.Trigger, g.Rel)
	}
	if len(got.TopStacks) == 0 || !strings.Contains(got.TopStacks[0], "oom_forever") {
		t.Errorf("top stacks %q: want the growth through oom_forever first", got.TopStacks)
	}
	if got.ProfileURL == "" {
		t.Fatal("no retained profile")
	}
	if fn, _, out := pprofTop(t, a.url+got.ProfileURL, "inuse_space"); fn != "map_anon" {
		t.Errorf("retained profile top %q, want map_anon (called by oom_forever):\n%s", fn, out)
	}
}
