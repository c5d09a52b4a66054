package tracer_test

import (
	"testing"

	"github.com/leakwatch/leakwatch/test/cgtest"
)

// A memory cgroup made and removed while the tracer runs, with no scan of
// the hierarchy in between (a container killed at start-up), is still
// named by its id, as the hierarchy names it.
func TestRemovedCgroupIsNamed(t *testing.T) {
	tr := startTracer(t, nil)
	g := cgtest.New(t, 64*mib)
	id, rel := g.ID, g.Rel
	g.Remove(t)
	path, ok := tr.CgroupPath(id)
	if !ok || path != rel {
		t.Fatalf("CgroupPath(%d) = %q, %v; want %q, true", id, path, ok, rel)
	}
	if path, ok := tr.CgroupPath(1 << 62); ok {
		t.Errorf("CgroupPath of an id never made = %q, true", path)
	}
}
