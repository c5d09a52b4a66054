package cgroups

import (
	"testing"

	"github.com/leakwatch/leakwatch/test/cgtest"
)

// TestMain fails the run when a test left a cgroup behind.
func TestMain(m *testing.M) { cgtest.Main(m) }
