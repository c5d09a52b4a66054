package agent

import (
	"testing"
	"time"

	"github.com/leakwatch/leakwatch/pkg/podpolicy"
)

// A container whose annotations say leakwatch.io/ignore leaks at 1 MiB/s
// beside one that says nothing: the other is flagged, the ignored one never
// (its figures still go on), and its view carries the policy. The policy is
// put on the entry as enrich would from CRI (the CRI path itself is tested
// against containerd in test/e2e).
func TestIgnoredContainerIsNeverLeaking(t *testing.T) {
	a, dir := fixtureAgent(t, DefaultConfig())
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a.collect(now)
	ignored, watched := fixtureContainers(t, a)
	for _, e := range a.entries {
		if e.c.Cgroup == ignored {
			a.applyPolicy(e, podpolicy.Policy{Ignore: true, Sensitivity: podpolicy.SensitivityNormal, Invalid: `leakwatch.io/warmup="soon"`})
		}
	}
	leakUntil(t, a, dir, &now, []string{watched}, watched, ignored)
	c := find(a, ignored)
	switch {
	case c == nil:
		t.Fatal("ignored container not in the view")
	case c.Verdict.Leaking || c.Verdict.GrowthBytesPerSecond != 0:
		t.Errorf("ignored container judged: %+v", c.Verdict)
	case c.Policy == nil || !c.Policy.Ignore || c.Policy.Invalid == "":
		t.Errorf("ignored container's view policy %+v, want ignore and the invalid annotation", c.Policy)
	case c.Memory.LeakSignal == 0:
		t.Error("ignored container's figures are not collected")
	}
	// enrich finding no policy (CRI restarting) keeps the one applied.
	for _, e := range a.entries {
		if e.c.Cgroup == ignored {
			a.applyPolicy(e, podpolicy.Policy{})
			if !e.policy.Ignore {
				t.Error("a lookup without a policy dropped the applied one")
			}
		}
	}
}
