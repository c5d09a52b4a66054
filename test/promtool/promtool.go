// Package promtool runs Prometheus' own checker, `promtool check metrics`,
// on an exposition for the tests: the real tool, never a stand-in.
package promtool

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// CheckMetrics fails t if promtool finds problems in text, or if it says
// anything at all (its lint warnings) when strict. Without promtool in
// PATH the test is skipped, or fails when LEAKWATCH_REQUIRE_PRIVILEGED=1
// (CI, where hack/install-deps.sh installs it).
func CheckMetrics(t testing.TB, text []byte, strict bool) {
	t.Helper()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		msg := "promtool not found in PATH (install Debian's prometheus package, see hack/install-deps.sh)"
		if os.Getenv("LEAKWATCH_REQUIRE_PRIVILEGED") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(text)
	out, err := cmd.CombinedOutput()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			t.Fatalf("promtool check metrics found problems:\n%.2000s\nexposition (%d bytes):\n%.4000s", out, len(text), text)
		}
		t.Fatalf("running promtool: %v\n%s", err, out)
	}
	if s := strings.TrimSpace(string(out)); strict && s != "" {
		t.Errorf("promtool check metrics said:\n%s", s)
	}
}
