package e2e

import (
	"net/http"
	"syscall"
	"testing"
	"time"
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

// SIGHUP (which operators send to reload exporters) ended the agent at
// once, exit 129, with no final save. Now each one is a logged reload, the
// agent keeps serving, and a later SIGTERM still saves the state.
func TestSIGHUPReloadsWithoutStopping(t *testing.T) {
	a := startAgent(t, "--state-dir", t.TempDir(), "--interval", "1s")
	for i := range 3 {
		if err := a.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for a.CountLogged(`msg=reloading signal=hangup`) < i+1 {
			if time.Now().After(deadline) {
				t.Fatalf("SIGHUP %d: no reload in the log within 10s", i+1)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	resp, err := http.Get(a.url + "/readyz")
	if err != nil {
		t.Fatalf("agent gone after SIGHUP: %v", err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/readyz after SIGHUP: %d", resp.StatusCode)
	}
	a.Terminate() // fails the test unless the exit code is 0
	if !a.Logged(`msg="state saved before stopping"`) {
		t.Error("no final save after SIGHUP and SIGTERM")
	}
}
