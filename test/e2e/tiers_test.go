package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/leakwatch/leakwatch/pkg/server"
	"github.com/leakwatch/leakwatch/pkg/tiering"
	"github.com/leakwatch/leakwatch/test/cgtest"
)

// mappingHooks are the syscalls: tracepoints of the full tier.
var mappingHooks = []string{
	"sys_enter_mmap", "sys_exit_mmap", "sys_enter_munmap", "sys_enter_mremap", "sys_exit_mremap",
	"sys_enter_brk", "sys_exit_brk", "sys_enter_mprotect", "sys_exit_mprotect",
}

// attachedHooks lists the tracepoints with a BPF program attached through
// the agent's descriptors, as bpftool reads them from the kernel.
func (a *agent) attachedHooks(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("bpftool", "--json", "perf", "show").Output()
	if err != nil {
		t.Fatalf("bpftool perf show: %v", err)
	}
	var links []struct {
		PID   int    `json:"pid"`
		Tp    string `json:"tracepoint"`
		Raw   string `json:"raw_tracepoint"`
		Event string `json:"event"`
	}
	if err := json.Unmarshal(out, &links); err != nil {
		t.Fatalf("bpftool perf show: %v in %s", err, out)
	}
	var hooks []string
	for _, l := range links {
		if l.PID == a.cmd.Process.Pid && l.Tp != "" {
			hooks = append(hooks, l.Tp)
		}
	}
	slices.Sort(hooks)
	return hooks
}

// tracing reads the tier policy's state from /readyz.
func (a *agent) tracing(t *testing.T) tiering.State {
	t.Helper()
	var r struct {
		Tracing *tiering.State `json:"tracing"`
	}
	a.getJSON(t, "/readyz", &r)
	if r.Tracing == nil {
		t.Fatal("/readyz has no tracing state")
	}
	return *r.Tracing
}

// waitMetric waits up to 5 s (a /metrics page is shared for up to 2 s) for
// the series of name with label to read want.
func (a *agent) waitMetric(t *testing.T, name, label string, want float64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		v := a.metricSum(t, name, label)
		if v == want {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%s{%s} = %v, want %v", name, label, v, want)
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// checkHooks fails unless the mapping hooks are all attached (full) or none
// is, and the process hooks are.
func (a *agent) checkHooks(t *testing.T, full bool, when string) {
	t.Helper()
	hooks := a.attachedHooks(t)
	for _, h := range []string{"sched_process_exec", "sched_process_exit"} {
		if !slices.Contains(hooks, h) {
			t.Errorf("%s: %s not attached (attached: %v)", when, h, hooks)
		}
	}
	for _, h := range mappingHooks {
		if slices.Contains(hooks, h) != full {
			t.Errorf("%s: %s attached=%v, want %v (attached: %v)", when, h, !full, full, hooks)
		}
	}
}

// The faults and full modes attach what they say and never change; the
// faults mode refuses an inuse profile rather than serve an empty one.
func TestFixedTracingModesAttachWhatTheySay(t *testing.T) {
	memwork, _ := cgtest.Workloads(t)
	g := cgtest.New(t, 256*mib)
	p := g.Start(t, memwork)
	for _, mode := range []string{"faults", "full"} {
		a := startAgent(t, "--interval", "1s", "--tracing="+mode)
		id := a.waitTracked(t, g.Rel)
		full := mode == "full"
		a.checkHooks(t, full, "--tracing="+mode)
		resp, err := http.Get(a.url + "/api/v1/containers/" + id + "/profile?type=inuse")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case full && resp.StatusCode != http.StatusOK:
			t.Errorf("--tracing=full: inuse profile %s %s", resp.Status, body)
		case !full && (resp.StatusCode != http.StatusConflict || !strings.Contains(string(body), "type=faults")):
			t.Errorf("--tracing=faults: inuse profile %s %s, want 409 saying type=faults works", resp.Status, body)
		}
		p.Do(t, "leak 1024 4")
		a.waitCollections(t, 2)
		a.checkHooks(t, full, "--tracing="+mode+", after a request and mappings")
		if st := a.tracing(t); string(st.Tier) != mode || st.Escalations[tiering.ReasonInuseRequest]+st.Escalations[tiering.ReasonLeaking] != 0 {
			t.Errorf("--tracing=%s: state %+v", mode, st)
		}
		a.Stop()
	}
}

// In the auto mode the agent attaches no syscalls: tracepoint until an inuse
// profile is asked for; the profile then covers what was mapped since, and
// says so (comment, header, /readyz); after the hold the hooks go again and
// the mappings known are dropped.
func TestAutoTracingEscalatesOnAnInuseRequest(t *testing.T) {
	memwork, _ := cgtest.Workloads(t)
	g := cgtest.New(t, 256*mib)
	p := g.Start(t, memwork)
	p.Do(t, "leak 1024 8") // before the escalation: not in the inuse view
	hold := 6 * time.Second
	a := startAgent(t, "--interval", "1s", "--tracing=auto", "--tracing-hold="+hold.String(), "--mmap-sample-bytes=0")
	id := a.waitTracked(t, g.Rel)
	a.checkHooks(t, false, "auto, before any reason")
	if st := a.tracing(t); st.Mode != tiering.ModeAuto || st.Tier != tiering.TierFaults || !st.InuseSince.IsZero() {
		t.Fatalf("auto at start: %+v", st)
	}

	asked := time.Now()
	resp, err := http.Get(a.url + "/api/v1/containers/" + id + "/profile?type=inuse")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	since, err := time.Parse(time.RFC3339, resp.Header.Get(server.InuseSinceHeader))
	if resp.StatusCode != http.StatusOK || err != nil || since.Before(asked.Add(-time.Second).Truncate(time.Second)) {
		t.Fatalf("first inuse request: %s, %s %q (%v)", resp.Status, server.InuseSinceHeader, resp.Header.Get(server.InuseSinceHeader), err)
	}
	a.checkHooks(t, true, "auto, after an inuse request")
	st := a.tracing(t)
	if st.Tier != tiering.TierFull || st.Reason != tiering.ReasonInuseRequest || st.Escalations[tiering.ReasonInuseRequest] != 1 || st.InuseSince.Before(asked.Add(-time.Second)) {
		t.Fatalf("after an inuse request: %+v", st)
	}
	if !a.Logged("tracing escalated") {
		t.Error("the escalation was not logged")
	}

	p.Do(t, "leak 1024 16") // after: in the inuse view
	// The profile store takes what the tracer holds at each collection.
	var held int64
	for _, s := range a.waitStacks(t, id, "type=inuse", "inuse_space", 16*mib, func(stackSample) bool { return true }) {
		held += s.value
	}
	file := a.download(t, id, "type=inuse")
	if held < 16*mib || held >= 24*mib {
		t.Errorf("inuse after the escalation holds %.1f MiB; want the 16 MiB mapped since (and not the 8 before)", float64(held)/mib)
	}
	comments := strings.Join(readProfile(t, file).Comments, "\n")
	if !strings.Contains(comments, "covers mappings made since "+st.InuseSince.UTC().Format(time.RFC3339)) {
		t.Errorf("the profile does not state its coverage:\n%s", comments)
	}

	// The second request extended the hold; with no reason after it, the
	// agent goes back within the hold and a collection or two.
	deadline := time.Now().Add(hold + 15*time.Second)
	for a.tracing(t).Tier != tiering.TierFaults {
		if time.Now().After(deadline) {
			t.Fatalf("still in the full tier %v after the last request (hold %v): %+v", time.Since(asked).Round(time.Second), hold, a.tracing(t))
		}
		time.Sleep(250 * time.Millisecond)
	}
	a.checkHooks(t, false, "auto, after the hold")
	if !a.Logged("tracing back to the faults tier") {
		t.Error("the return to the faults tier was not logged")
	}
	a.waitMetric(t, "leakwatch_tracing_tier", `tier="faults"`, 1)
}

// A leak verdict escalates within a collection of it, and the hold keeps
// the full tier while the container stays leaking.
func TestAutoTracingEscalatesOnALeakVerdict(t *testing.T) {
	memwork, _ := cgtest.Workloads(t)
	a := startAgent(t, "--interval", "1s", "--detect-warm-up", "15s", "--detect-window", "5s", "--detect-persistence", "20s", "--tracing=auto", "--tracing-hold=5s")
	g := cgtest.New(t, 1024*mib)
	leaker := g.Start(t, memwork)
	stop := leaker.Repeat(t, "leak 1024 1", 250*time.Millisecond, 700)
	defer stop()
	a.checkHooks(t, false, "auto, before the verdict")
	start := time.Now()
	var c apiContainer
	for {
		if time.Since(start) > 120*time.Second {
			t.Fatal("leak not flagged within 120s")
		}
		if c = a.containers(t)[g.Rel]; c.Leaking {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	a.waitCollections(t, 1)
	st := a.tracing(t)
	if st.Tier != tiering.TierFull || st.Reason != tiering.ReasonLeaking || st.Escalations[tiering.ReasonLeaking] != 1 {
		t.Fatalf("a collection after the verdict: %+v", st)
	}
	a.checkHooks(t, true, "auto, leaking")
	a.waitMetric(t, "leakwatch_tracing_escalations_total", `reason="leaking"`, 1)
	// Leaking longer than the hold: still full.
	time.Sleep(7 * time.Second)
	if c := a.containers(t)[g.Rel]; c.Leaking {
		if st := a.tracing(t); st.Tier != tiering.TierFull || st.Escalations[tiering.ReasonLeaking] != 1 {
			t.Errorf("still leaking past the hold, but %+v", st)
		}
	}
}
