package e2e

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/pprof/profile"

	"github.com/leakwatch/leakwatch/test/cgtest"
)

// A VM's heap, as a JVM makes it: 512 MiB reserved PROT_NONE, 256 MiB of it
// committed by mprotect in 1 MiB slices, 64 MiB touched. The inuse view
// counts what is committed (inuse_space: 256 MiB, from commit_slices) and
// what is resident (inuse_resident_space: the 64 MiB touched, within 10%);
// made PROT_NONE again, the reservation leaves both.
func TestInuseCommittedAndResident(t *testing.T) {
	memwork, _ := cgtest.Workloads(t)
	a := startAgent(t, "--interval", "1s")
	g := cgtest.New(t, 1<<30)
	p := g.Start(t, memwork)
	id := a.waitTracked(t, g.Rel)
	addr := strings.TrimPrefix(p.Do(t, "reserve 524288 262144 65536"), "ok ")
	time.Sleep(2500 * time.Millisecond) // two collections

	prof := readProfile(t, a.download(t, id, "type=inuse"))
	inuse, resident := byFunction(t, prof, "inuse_space"), byFunction(t, prof, "inuse_resident_space")
	t.Logf("commit_slices: %.1f MiB committed, %.1f MiB resident", float64(inuse["commit_slices"])/mib, float64(resident["commit_slices"])/mib)
	if got := inuse["commit_slices"]; got != 256*mib {
		t.Errorf("inuse_space of commit_slices: %.1f MiB, want the 256 MiB committed", float64(got)/mib)
	}
	if got := float64(resident["commit_slices"]) / mib; got < 0.9*64 || got > 1.1*64 {
		t.Errorf("inuse_resident_space of commit_slices: %.1f MiB, want the 64 MiB touched ±10%%", got)
	}
	for _, c := range prof.Comments {
		t.Logf("comment: %s", c)
	}

	p.Do(t, "decommit "+addr+" 524288")
	time.Sleep(2500 * time.Millisecond)
	prof = readProfile(t, a.download(t, id, "type=inuse"))
	if got := byFunction(t, prof, "inuse_space")["commit_slices"]; got != 0 {
		t.Errorf("after mprotect(PROT_NONE): commit_slices still holds %.1f MiB", float64(got)/mib)
	}
}

// glibc gives each thread an arena of its own, reserved PROT_NONE in 64 MiB
// heaps and grown by mprotect. Four threads leak 48 MiB each in 4,000-byte
// mallocs: the inuse view must hold at least 90% of the cgroup's anonymous
// growth, and so must its resident view. Every mapping is tracked exactly
// here: arenas grow by mprotects of ~132 KiB, which the default sampling
// by size estimates with a spread of ~7% over this run (one CI run saw
// -12.6%); what is tested is that arena growth is seen at all.
func TestInuseHoldsThreadArenas(t *testing.T) {
	memwork, _ := cgtest.Workloads(t)
	a := startAgent(t, "--interval", "1s", "--mmap-sample-bytes", "0")
	g := cgtest.New(t, 512*mib)
	p := g.Start(t, memwork)
	id := a.waitTracked(t, g.Rel)
	p.Do(t, "nop")
	time.Sleep(2500 * time.Millisecond)
	before := readProfile(t, a.download(t, id, "type=inuse"))
	anon0 := g.Anon(t)

	p.Do(t, "arenas 4 49152")
	grew := g.Anon(t) - anon0
	time.Sleep(2500 * time.Millisecond)
	after := readProfile(t, a.download(t, id, "type=inuse"))
	for _, st := range []string{"inuse_space", "inuse_resident_space"} {
		held := total(t, after, st) - total(t, before, st)
		t.Logf("%s grew %.1f MiB; the cgroup's anon %.1f MiB", st, float64(held)/mib, float64(grew)/mib)
		if float64(held) < 0.9*float64(grew) {
			t.Errorf("%s grew %.1f MiB of %.1f MiB anonymous growth, want at least 90%%", st, float64(held)/mib, float64(grew)/mib)
		}
	}
	for fn, b := range byFunction(t, after, "inuse_space") {
		t.Logf("inuse_space %8.1f MiB %s", float64(b)/mib, fn)
	}
}

func readProfile(t *testing.T, file string) *profile.Profile {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p, err := profile.Parse(f)
	if err != nil {
		t.Fatalf("parsing %s: %v", file, err)
	}
	return p
}

func sampleIndex(t *testing.T, p *profile.Profile, typ string) int {
	t.Helper()
	var have []string
	for i, st := range p.SampleType {
		if st.Type == typ {
			return i
		}
		have = append(have, st.Type)
	}
	t.Fatalf("profile has no %s sample type, only %v", typ, have)
	return -1
}

// byFunction sums one sample type by each sample's innermost function, as
// pprof's flat column does.
func byFunction(t *testing.T, p *profile.Profile, typ string) map[string]int64 {
	t.Helper()
	i := sampleIndex(t, p, typ)
	out := make(map[string]int64)
	for _, s := range p.Sample {
		name := "?"
		if len(s.Location) > 0 && len(s.Location[0].Line) > 0 {
			name = s.Location[0].Line[0].Function.Name
		}
		out[name] += s.Value[i]
	}
	return out
}

func total(t *testing.T, p *profile.Profile, typ string) (n int64) {
	for _, v := range byFunction(t, p, typ) {
		n += v
	}
	return n
}
