package e2e

import (
	"testing"
)

// SIGTERM (how Kubernetes and systemd stop the agent) is logged with its
// reason, and so is the last save of the state a restart will find.
func TestStopOnSIGTERMIsLogged(t *testing.T) {
	a := startAgent(t, "--state-dir", t.TempDir(), "--interval", "1s")
	a.Terminate()
	for _, want := range []string{
		`msg=stopping reason="terminated signal received"`,
		`msg="state saved before stopping"`,
		`msg=stopped`,
	} {
		if !a.Logged(want) {
			t.Errorf("the agent's log after SIGTERM has no line with %s", want)
		}
	}
}
