package server

import (
	"net/http"
	"testing"

	"github.com/leakwatch/leakwatch/pkg/view"
)

// TestReadyzShowsFailingSaves: an agent whose state saves fail stays ready
// (it still detects), and /readyz says how the saves go.
func TestReadyzShowsFailingSaves(t *testing.T) {
	src := &fakeSource{}
	h := newTestServer(t, src).Handler()
	snap := readySnapshot()
	snap.Agent.State = &view.StateSaves{Path: "/state/leakwatch.db", LastSuccess: &t0, Failures: 2, LastFailure: &t0, LastError: "saving state: no space left on device"}
	src.set(snap)
	r := decode[readiness](t, do(t, h, http.MethodGet, "/readyz"), http.StatusOK)
	if r.State == nil || r.State.Failures != 2 || r.State.LastError != snap.Agent.State.LastError || !r.State.LastSuccess.Equal(t0) {
		t.Errorf("readyz state detail: %+v", r.State)
	}
}
