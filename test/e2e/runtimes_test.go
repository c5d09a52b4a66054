package e2e

import (
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/leakwatch/leakwatch/test/agenttest"
	"github.com/leakwatch/leakwatch/test/cgtest"
)

// Real runtimes that reserve and then commit: Node (V8 reserves its heap
// PROT_NONE and commits by mprotect) and a JVM (its heap reserved, committed
// as it grows). Each retains 256 MiB: the inuse view's growth, committed
// and resident, must hold at least 90% of the cgroup's anonymous growth,
// and the resident view no more than it.
func TestInuseOfRuntimes(t *testing.T) {
	root := agenttest.ModuleRoot()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node not installed: %v", err)
	}
	java, err := exec.LookPath("java")
	if err != nil {
		t.Fatalf("java not installed: %v", err)
	}
	a := startAgent(t, "--interval", "1s")
	for _, rt := range []struct {
		name string
		bin  string
		args []string
	}{
		{"node", node, []string{filepath.Join(root, "test/workloads/leak.js")}},
		{"jvm", java, []string{"-Xmx768m", "-XX:+UseSerialGC", filepath.Join(root, "test/workloads/Leak.java")}},
	} {
		t.Run(rt.name, func(t *testing.T) {
			g := cgtest.New(t, 1<<30)
			p := g.Start(t, rt.bin, rt.args...)
			id := a.waitTracked(t, g.Rel)
			p.Do(t, "nop")
			time.Sleep(2500 * time.Millisecond)
			before := readProfile(t, a.download(t, id, "type=inuse"))
			anon0 := g.Anon(t)
			p.Do(t, "leak 256")
			time.Sleep(3 * time.Second)
			grew := g.Anon(t) - anon0
			after := readProfile(t, a.download(t, id, "type=inuse"))
			committed := total(t, after, "inuse_space") - total(t, before, "inuse_space")
			resident := total(t, after, "inuse_resident_space") - total(t, before, "inuse_resident_space")
			t.Logf("%s: cgroup anon grew %.1f MiB; inuse_space %.1f MiB, inuse_resident_space %.1f MiB",
				rt.name, float64(grew)/mib, float64(committed)/mib, float64(resident)/mib)
			for _, v := range []struct {
				name  string
				bytes int64
			}{{"inuse_space", committed}, {"inuse_resident_space", resident}} {
				if float64(v.bytes) < 0.9*float64(grew) {
					t.Errorf("%s grew %.1f MiB of %.1f MiB anonymous growth, want at least 90%%", v.name, float64(v.bytes)/mib, float64(grew)/mib)
				}
			}
			// Resident memory is anonymous memory the cgroup is charged
			// for: more than its growth (beyond the runtime's own
			// allocations between the reads) means it was counted twice.
			if float64(resident) > 1.1*float64(grew) {
				t.Errorf("inuse_resident_space grew %.1f MiB, more than the cgroup's %.1f MiB anonymous growth", float64(resident)/mib, float64(grew)/mib)
			}
		})
	}
}
