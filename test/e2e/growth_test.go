package e2e

import (
	"math"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/pprof/profile"

	"github.com/leakwatch/leakwatch/test/cgtest"
)

// pprofTopOutput is what the real `go tool pprof -top` prints for one
// sample type of a profile (a file or a URL), in bytes.
func pprofTopOutput(t *testing.T, source, sampleIndex string) string {
	t.Helper()
	cmd := exec.Command("go", "tool", "pprof", "-top", "-sample_index="+sampleIndex, "-unit=bytes", source)
	cmd.Env = append(os.Environ(), "PPROF_TMPDIR="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go tool pprof -top %s: %v\n%s", source, err, out)
	}
	return string(out)
}

// pprofNegatives runs the real `go tool pprof -top` for one sample type and
// returns the lines that show a negative figure (an entry's flat or cum,
// or the "accounting for" total).
func pprofNegatives(t *testing.T, file, sampleIndex string) (negative []string, out string) {
	t.Helper()
	out = pprofTopOutput(t, file, sampleIndex)
	entries := false
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "accounting for -") {
			negative = append(negative, l)
		}
		if strings.Contains(l, "flat%") {
			entries = true
			continue
		}
		if f := strings.Fields(l); entries && len(f) >= 6 && (strings.HasPrefix(f[0], "-") || strings.HasPrefix(f[3], "-")) {
			negative = append(negative, l)
		}
	}
	return negative, out
}

// decode reads a downloaded profile and sums each sample type by the
// innermost function, failing the test on any negative sample value.
func decode(t *testing.T, file string) (*profile.Profile, map[string]map[string]int64) {
	t.Helper()
	p := readProfile(t, file)
	sums := make(map[string]map[string]int64)
	for _, st := range p.SampleType {
		sums[st.Type] = make(map[string]int64)
	}
	for _, s := range p.Sample {
		fn := "?"
		if len(s.Location) > 0 && len(s.Location[0].Line) > 0 {
			fn = s.Location[0].Line[0].Function.Name
		}
		for i, v := range s.Value {
			if v < 0 {
				t.Errorf("decoded sample %s = %d at %s (labels %v): negative", p.SampleType[i].Type, v, fn, s.Label)
			}
			sums[p.SampleType[i].Type][fn] += v
		}
	}
	return p, sums
}

// waitInuseGone waits until the container's current inuse profile holds
// nothing of fn (nothing at all when fn is ""): the agent has collected
// since the memory went.
func (a *agent) waitInuseGone(t *testing.T, id, fn string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		p, sums := decode(t, a.download(t, id, "type=inuse"))
		if (fn == "" && len(p.Sample) == 0) || (fn != "" && sums["inuse_space"][fn] == 0) {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("%q still in the inuse profile of %s after 30s", fn, id)
}

// A Go program leaks 64 MiB and is ended by its pid. Its container's growth
// profiles must show no negative allocation (the issue saw "-500.71MB
// main.leakHere"): over 60 s, which holds the leak and the exit, the leak is
// growth until the exit; over a window that holds the exit but not the leak,
// there is nothing, neither growth nor a release. A C program that unmaps
// what it leaked while alive shows that as released_space.
func TestGrowthProfileHasNoNegativeAllocations(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Fatalf("go not on PATH: the test reads profiles with the real go tool pprof")
	}
	memwork, gowork := cgtest.Workloads(t)
	a := startAgent(t, "--interval", "1s")
	const quiet = 10 * time.Second // between the leak and the exit (or free)

	// windowSince is a whole-second window that reaches back to just
	// before t, and well after the leak that ended quiet before t.
	windowSince := func(t0 time.Time) string {
		return strconv.Itoa(int(math.Ceil(time.Since(t0).Seconds())) + 2)
	}

	t.Run("exit", func(t *testing.T) {
		g := cgtest.New(t, 512*mib)
		p := g.Start(t, gowork)
		id := a.waitTracked(t, g.Rel)
		for range 64 {
			p.Do(t, "leak 1024")
		}
		time.Sleep(quiet)
		killed := time.Now()
		p.Kill()
		a.waitInuseGone(t, id, "")

		// The window that holds only the exit first, while it still
		// reaches back to it.
		for _, q := range []string{"seconds=" + windowSince(killed), "seconds=60"} {
			file := a.download(t, id, "type=inuse&"+q)
			for _, idx := range []string{"inuse_space", "inuse_objects"} {
				if neg, out := pprofNegatives(t, file, idx); len(neg) > 0 {
					t.Errorf("?%s, go tool pprof -top -sample_index=%s shows negative figures:\n%s\n\n%s", q, idx, strings.Join(neg, "\n"), out)
				}
			}
			_, sums := decode(t, file)
			grown, released := sums["inuse_space"]["main.retainBytes"], sums["released_space"]["main.retainBytes"]
			t.Logf("?%s: main.retainBytes grew %.1f MiB, released %.1f MiB", q, float64(grown)/mib, float64(released)/mib)
			if released > 8*mib {
				t.Errorf("?%s: the exit shows as %.1f MiB released by main.retainBytes", q, float64(released)/mib)
			}
			if q == "seconds=60" {
				if fn, flat, out := pprofTop(t, file, "inuse_space"); fn != "main.retainBytes" || flat < 0.8*64*mib || flat > 1.5*64*mib {
					t.Errorf("?seconds=60 top %q with %.1f MiB, want main.retainBytes with 64 MiB (0.8..1.5x), its growth until the exit:\n%s", fn, flat/mib, out)
				}
			} else if grown != 0 {
				t.Errorf("?%s (after the leak): main.retainBytes grew %.1f MiB, want 0", q, float64(grown)/mib)
			}
		}
	})

	t.Run("free", func(t *testing.T) {
		g := cgtest.New(t, 256*mib)
		p := g.Start(t, memwork)
		id := a.waitTracked(t, g.Rel)
		p.Do(t, "leak 1024 32")
		time.Sleep(quiet)
		freed := time.Now()
		p.Do(t, "free")
		a.waitInuseGone(t, id, "leak_step")

		q := "seconds=" + windowSince(freed)
		file := a.download(t, id, "type=inuse&"+q)
		for _, idx := range []string{"inuse_space", "inuse_objects"} {
			if neg, out := pprofNegatives(t, file, idx); len(neg) > 0 {
				t.Errorf("?%s, go tool pprof -top -sample_index=%s shows negative figures:\n%s\n\n%s", q, idx, strings.Join(neg, "\n"), out)
			}
		}
		_, sums := decode(t, file)
		t.Logf("?%s: leak_step grew %.1f MiB, released %.1f MiB", q, float64(sums["inuse_space"]["leak_step"])/mib, float64(sums["released_space"]["leak_step"])/mib)
		if r := sums["released_space"]["leak_step"]; r != 32*mib {
			t.Errorf("?%s: leak_step released %.1f MiB, want the 32 MiB that free unmapped (sums %v)", q, float64(r)/mib, sums["released_space"])
		}
		if fn, flat, out := pprofTop(t, file, "released_space"); fn != "leak_step" {
			t.Errorf("go tool pprof -top -sample_index=released_space: top %q (%.1f MiB), want leak_step:\n%s", fn, flat/mib, out)
		}
		p.Kill()
	})
}
