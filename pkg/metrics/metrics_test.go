package metrics

import (
	"bytes"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/leakwatch/leakwatch/pkg/buildinfo"
	"github.com/leakwatch/leakwatch/pkg/tiering"
	"github.com/leakwatch/leakwatch/pkg/view"
	"github.com/leakwatch/leakwatch/test/promtool"
)

// fakeSource is a view.Source over plain data set by the test: no agent, no
// kernel, no privileges.
type fakeSource struct {
	mu   sync.Mutex
	snap *view.Snapshot
}

func (f *fakeSource) Snapshot() *view.Snapshot {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.snap
}

func (f *fakeSource) Series(string) ([]view.Point, bool) { return nil, false }

func (f *fakeSource) set(s *view.Snapshot) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.snap = s
}

var testInfo = buildinfo.Info{Version: "v0.1.0", Revision: "abc123", GoVersion: "go1.26.0"}

var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// podContainer is a leaking Kubernetes container with a limit.
func podContainer() view.Container {
	return view.Container{
		ID: "4242", MemcgID: 4242,
		Cgroup:      "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podp1.slice/cri-containerd-c1.scope",
		Kind:        "container",
		Runtime:     "containerd",
		ContainerID: "c1",
		PodUID:      "p1",
		Namespace:   "shop",
		Pod:         "cart-0",
		Container:   "cart",
		Memory: view.Memory{
			Usage: 1000, Anon: 600, File: 300, Kernel: 50, Shmem: 10, WorkingSet: 900,
			LeakSignal: 650, Limit: 4000, PageFaults: 77, MajorFaults: 1,
		},
		MappedBytes:  512,
		FaultedBytes: 2048,
		OOMKills:     2,
		Verdict: view.Verdict{
			Leaking: true, GrowthBytesPerSecond: 12.5, Confidence: 0.95,
			TimeToLimit: 270 * time.Second, LeakingSince: t0.Add(-time.Hour),
		},
		FirstSeen: t0.Add(-2 * time.Hour),
		LastSeen:  t0,
	}
}

// serviceContainer is a gone systemd service: its last figures and the
// verdict it had when it went are still in the view, as the agent keeps them.
func serviceContainer() view.Container {
	return view.Container{
		ID: "77", MemcgID: 77,
		Cgroup:     "/system.slice/nginx.service",
		Kind:       "service",
		Runtime:    "systemd",
		Container:  "nginx.service",
		Memory:     view.Memory{Usage: 100, Anon: 40, WorkingSet: 90, LeakSignal: 40, Limit: 1000},
		OOMKills:   1,
		Verdict:    view.Verdict{TimeToLimit: -1},
		FirstSeen:  t0.Add(-time.Hour),
		LastSeen:   t0.Add(-time.Minute),
		Gone:       true,
		GoneAt:     t0,
		WasLeaking: true,
	}
}

func testSnapshot() *view.Snapshot {
	return &view.Snapshot{
		Taken:      t0,
		Containers: []view.Container{podContainer(), serviceContainer()},
		Agent: view.Agent{
			Ready:           true,
			Degraded:        map[string]string{"fault_sampling": "perf events unavailable"},
			Tracing:         &tiering.State{Mode: tiering.ModeAuto, Tier: tiering.TierFull, Escalations: map[tiering.Reason]uint64{tiering.ReasonLeaking: 2}},
			CollectDuration: 250 * time.Millisecond,
			Collections:     9,
			Errors:          map[string]uint64{"memory_read": 3},
			Drops:           map[string]uint64{"live_mappings_full": 5},
			Maps: []view.MapUsage{
				{Name: "live_mappings", Entries: 10, Capacity: 65536},
			},
			MapMemoryBytes: 1 << 20,
			Tracked:        2,
			OverLimit:      1,
			State:          &view.StateSaves{Path: "/var/lib/leakwatch/leakwatch.db", LastSuccess: &t0},
		},
	}
}

// allButScrapeDuration lists every family whose value is deterministic.
var allButScrapeDuration = []string{
	"leakwatch_container_memory_bytes",
	"leakwatch_container_memory_limit_bytes",
	"leakwatch_container_memory_growth_bytes_per_second",
	"leakwatch_container_leak_confidence",
	"leakwatch_container_leaking",
	"leakwatch_container_time_to_limit_seconds",
	"leakwatch_container_oom_kills_total",
	"leakwatch_container_mapped_bytes",
	"leakwatch_container_page_faults_total",
	"leakwatch_container_faulted_bytes_total",
	"leakwatch_build_info",
	"leakwatch_bpf_map_entries",
	"leakwatch_bpf_map_capacity",
	"leakwatch_bpf_map_memory_bytes",
	"leakwatch_drops_total",
	"leakwatch_errors_total",
	"leakwatch_collect_duration_seconds",
	"leakwatch_collections_total",
	"leakwatch_containers_tracked",
	"leakwatch_containers_over_limit_total",
	"leakwatch_ready",
	"leakwatch_degraded",
	"leakwatch_state_last_save_timestamp_seconds",
	"leakwatch_tracing_tier",
	"leakwatch_tracing_escalations_total",
}

const goldenText = `
# HELP leakwatch_bpf_map_capacity Maximum entries of a BPF map of the tracer.
# TYPE leakwatch_bpf_map_capacity gauge
leakwatch_bpf_map_capacity{map="live_mappings"} 65536
# HELP leakwatch_bpf_map_entries Entries in a BPF map of the tracer at the last collection.
# TYPE leakwatch_bpf_map_entries gauge
leakwatch_bpf_map_entries{map="live_mappings"} 10
# HELP leakwatch_bpf_map_memory_bytes Kernel memory used by the BPF maps of the tracer, read at most once a minute.
# TYPE leakwatch_bpf_map_memory_bytes gauge
leakwatch_bpf_map_memory_bytes 1.048576e+06
# HELP leakwatch_build_info A metric with a constant value of 1, labelled with the version, revision and Go version of the agent.
# TYPE leakwatch_build_info gauge
leakwatch_build_info{goversion="go1.26.0",revision="abc123",version="v0.1.0"} 1
# HELP leakwatch_collect_duration_seconds Duration of the agent's last collection.
# TYPE leakwatch_collect_duration_seconds gauge
leakwatch_collect_duration_seconds 0.25
# HELP leakwatch_collections_total Collections the agent has completed.
# TYPE leakwatch_collections_total counter
leakwatch_collections_total 9
# HELP leakwatch_container_faulted_bytes_total Anonymous memory faulted in by the container's processes since the tracer started, estimated from samples.
# TYPE leakwatch_container_faulted_bytes_total counter
leakwatch_container_faulted_bytes_total{cgroup="/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podp1.slice/cri-containerd-c1.scope",container="cart",container_id="c1",namespace="shop",pod="cart-0"} 2048
# HELP leakwatch_container_leak_confidence Confidence of the leak detector, between 0 and 1, that the container leaks memory. It is at least 0.8 exactly while leakwatch_container_leaking is 1: it holds the confidence of the evidence that turned the verdict on, and falls towards 0.8 only while no evidence of growth remains.
# TYPE leakwatch_container_leak_confidence gauge
leakwatch_container_leak_confidence{cgroup="/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podp1.slice/cri-containerd-c1.scope",container="cart",container_id="c1",namespace="shop",pod="cart-0"} 0.95
# HELP leakwatch_container_leaking Whether the leak detector judges that the container leaks memory (1) or not (0). It turns on when growth is confirmed and off only after a quiet period without growth; leakwatch_container_leak_confidence is at least 0.8 exactly while it is 1.
# TYPE leakwatch_container_leaking gauge
leakwatch_container_leaking{cgroup="/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podp1.slice/cri-containerd-c1.scope",container="cart",container_id="c1",namespace="shop",pod="cart-0"} 1
# HELP leakwatch_container_mapped_bytes Private anonymous memory committed by the container's processes (mappings, brk heap, reservations made accessible by mprotect) that the tracer sees outstanding, touched or not.
# TYPE leakwatch_container_mapped_bytes gauge
leakwatch_container_mapped_bytes{cgroup="/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podp1.slice/cri-containerd-c1.scope",container="cart",container_id="c1",namespace="shop",pod="cart-0"} 512
# HELP leakwatch_container_memory_bytes Memory of the container's memory cgroup at the last collection, by type. leak_signal is anonymous and shared memory plus unreclaimable kernel memory, the figure the leak detector watches.
# TYPE leakwatch_container_memory_bytes gauge
leakwatch_container_memory_bytes{cgroup="/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podp1.slice/cri-containerd-c1.scope",container="cart",container_id="c1",namespace="shop",pod="cart-0",type="anon"} 600
leakwatch_container_memory_bytes{cgroup="/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podp1.slice/cri-containerd-c1.scope",container="cart",container_id="c1",namespace="shop",pod="cart-0",type="file"} 300
leakwatch_container_memory_bytes{cgroup="/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podp1.slice/cri-containerd-c1.scope",container="cart",container_id="c1",namespace="shop",pod="cart-0",type="kernel"} 50
leakwatch_container_memory_bytes{cgroup="/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podp1.slice/cri-containerd-c1.scope",container="cart",container_id="c1",namespace="shop",pod="cart-0",type="leak_signal"} 650
leakwatch_container_memory_bytes{cgroup="/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podp1.slice/cri-containerd-c1.scope",container="cart",container_id="c1",namespace="shop",pod="cart-0",type="shmem"} 10
leakwatch_container_memory_bytes{cgroup="/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podp1.slice/cri-containerd-c1.scope",container="cart",container_id="c1",namespace="shop",pod="cart-0",type="usage"} 1000
leakwatch_container_memory_bytes{cgroup="/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podp1.slice/cri-containerd-c1.scope",container="cart",container_id="c1",namespace="shop",pod="cart-0",type="working_set"} 900
# HELP leakwatch_container_memory_growth_bytes_per_second Growth of the container's leak signal estimated by the leak detector.
# TYPE leakwatch_container_memory_growth_bytes_per_second gauge
leakwatch_container_memory_growth_bytes_per_second{cgroup="/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podp1.slice/cri-containerd-c1.scope",container="cart",container_id="c1",namespace="shop",pod="cart-0"} 12.5
# HELP leakwatch_container_memory_limit_bytes Effective memory limit of the container's cgroup, the lowest of its own and its ancestors'. Absent when the cgroup has no limit.
# TYPE leakwatch_container_memory_limit_bytes gauge
leakwatch_container_memory_limit_bytes{cgroup="/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podp1.slice/cri-containerd-c1.scope",container="cart",container_id="c1",namespace="shop",pod="cart-0"} 4000
# HELP leakwatch_container_oom_kills_total Processes of the container killed by the out-of-memory killer since the agent started.
# TYPE leakwatch_container_oom_kills_total counter
leakwatch_container_oom_kills_total{cgroup="/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podp1.slice/cri-containerd-c1.scope",container="cart",container_id="c1",namespace="shop",pod="cart-0"} 2
leakwatch_container_oom_kills_total{cgroup="/system.slice/nginx.service",container="nginx.service",container_id="",namespace="",pod=""} 1
# HELP leakwatch_container_page_faults_total Page faults of the container's cgroup, as the kernel counts them.
# TYPE leakwatch_container_page_faults_total counter
leakwatch_container_page_faults_total{cgroup="/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podp1.slice/cri-containerd-c1.scope",container="cart",container_id="c1",namespace="shop",pod="cart-0"} 77
# HELP leakwatch_container_time_to_limit_seconds Projected time until the container reaches its memory limit at the current growth. Absent when unknown.
# TYPE leakwatch_container_time_to_limit_seconds gauge
leakwatch_container_time_to_limit_seconds{cgroup="/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podp1.slice/cri-containerd-c1.scope",container="cart",container_id="c1",namespace="shop",pod="cart-0"} 270
# HELP leakwatch_containers_over_limit_total Containers the agent did not track because it already tracked as many as it may.
# TYPE leakwatch_containers_over_limit_total counter
leakwatch_containers_over_limit_total 1
# HELP leakwatch_containers_tracked Containers the agent tracks, including those gone but still retained.
# TYPE leakwatch_containers_tracked gauge
leakwatch_containers_tracked 2
# HELP leakwatch_degraded A metric with a constant value of 1 for each part of the agent that does not run on this host.
# TYPE leakwatch_degraded gauge
leakwatch_degraded{part="fault_sampling"} 1
# HELP leakwatch_drops_total Events the kernel side had to drop, by reason.
# TYPE leakwatch_drops_total counter
leakwatch_drops_total{reason="live_mappings_full"} 5
# HELP leakwatch_errors_total Failures of the agent, by kind.
# TYPE leakwatch_errors_total counter
leakwatch_errors_total{kind="memory_read"} 3
# HELP leakwatch_ready Whether the agent is ready (1) or not (0).
# TYPE leakwatch_ready gauge
leakwatch_ready 1
# HELP leakwatch_state_last_save_timestamp_seconds Time the last successful save of the state store began, in seconds since the epoch; 0 before the first. Failed saves count in leakwatch_errors_total{kind="state_save"}.
# TYPE leakwatch_state_last_save_timestamp_seconds gauge
leakwatch_state_last_save_timestamp_seconds 1795780800
# HELP leakwatch_tracing_escalations_total Escalations of the tracer to its full tier (--tracing=auto), by reason: leaking (a container judged leaking) or inuse_request (an inuse profile asked for).
# TYPE leakwatch_tracing_escalations_total counter
leakwatch_tracing_escalations_total{reason="inuse_request"} 0
leakwatch_tracing_escalations_total{reason="leaking"} 2
# HELP leakwatch_tracing_tier Whether the tracer traces (1) or not (0) in each tier: faults (page-fault samples, OOM kills, execs, exits) or full (also the mapping system calls: the inuse view). With --tracing=auto it moves to full while a container is leaking or an inuse profile was asked for, and back after the hold.
# TYPE leakwatch_tracing_tier gauge
leakwatch_tracing_tier{tier="faults"} 0
leakwatch_tracing_tier{tier="full"} 1
`

func TestCollectGolden(t *testing.T) {
	src := &fakeSource{snap: testSnapshot()}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewCollector(src, testInfo))

	if err := testutil.GatherAndCompare(reg, strings.NewReader(goldenText), allButScrapeDuration...); err != nil {
		t.Fatal(err)
	}
	// The scrape duration varies; it must be there and be sane.
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	d := family(mfs, "leakwatch_scrape_duration_seconds")
	if d == nil || len(d.Metric) != 1 {
		t.Fatalf("leakwatch_scrape_duration_seconds: got %v, want one sample", d)
	}
	if v := d.Metric[0].GetGauge().GetValue(); v < 0 || v > 10 {
		t.Errorf("leakwatch_scrape_duration_seconds = %v, want a small positive duration", v)
	}
}

func TestCollectLint(t *testing.T) {
	src := &fakeSource{snap: testSnapshot()}
	problems, err := testutil.CollectAndLint(NewCollector(src, testInfo))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

func TestCollectBeforeFirstCollection(t *testing.T) {
	src := &fakeSource{}
	const want = `
# HELP leakwatch_build_info A metric with a constant value of 1, labelled with the version, revision and Go version of the agent.
# TYPE leakwatch_build_info gauge
leakwatch_build_info{goversion="go1.26.0",revision="abc123",version="v0.1.0"} 1
# HELP leakwatch_ready Whether the agent is ready (1) or not (0).
# TYPE leakwatch_ready gauge
leakwatch_ready 0
`
	// No metric names: every family emitted must be in want.
	if err := testutil.CollectAndCompare(NewCollector(src, testInfo), strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
}

// A gone container reports nothing as current: no memory, limit, growth,
// confidence, verdict or time to limit (alerts on them would fire for a
// container that no longer exists), even with the figures and verdict it
// had when it went still in the view. Only its OOM kill counter stays, so
// that the kill that emptied it reaches the OOM alert.
func TestGoneContainerExportsOnlyItsOOMKills(t *testing.T) {
	gone := serviceContainer()
	gone.Verdict = view.Verdict{Leaking: true, GrowthBytesPerSecond: 1e6, Confidence: 0.99, TimeToLimit: time.Second}
	snap := testSnapshot()
	snap.Containers = []view.Container{podContainer(), gone}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewCollector(&fakeSource{snap: snap}, testInfo))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	var names []string
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if label(m, "cgroup") != gone.Cgroup {
				continue
			}
			names = append(names, mf.GetName())
			if mf.GetName() == "leakwatch_container_oom_kills_total" && m.GetCounter().GetValue() != 1 {
				t.Errorf("OOM kills of the gone container = %v, want 1", m.GetCounter().GetValue())
			}
		}
	}
	if !slices.Equal(names, []string{"leakwatch_container_oom_kills_total"}) {
		t.Errorf("series of the gone container: %v, want only leakwatch_container_oom_kills_total", names)
	}
	if n := seriesWithCgroup(t, reg, podContainer().Cgroup); n < 10 {
		t.Errorf("the live container exports %d series", n)
	}
}

func TestForgottenContainerSeriesDisappear(t *testing.T) {
	src := &fakeSource{snap: testSnapshot()}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewCollector(src, testInfo))

	const gone = "/system.slice/nginx.service"
	if n := seriesWithCgroup(t, reg, gone); n == 0 {
		t.Fatalf("a gone but retained container exports no series")
	}

	// The agent drops the container once its retention ends.
	next := testSnapshot()
	next.Containers = next.Containers[:1]
	src.set(next)
	if n := seriesWithCgroup(t, reg, gone); n != 0 {
		t.Errorf("%d series of the forgotten container are still exported", n)
	}
	if n := seriesWithCgroup(t, reg, podContainer().Cgroup); n == 0 {
		t.Errorf("the remaining container exports no series")
	}
}

// A restarted systemd service has a new cgroup at the same path while the old
// one is retained as gone: the scrape must not fail on duplicate series, and
// the live container must be the one exported.
func TestCollectRestartedServiceAtSamePath(t *testing.T) {
	old := serviceContainer()
	live := serviceContainer()
	live.ID, live.MemcgID, live.Gone, live.LastSeen = "78", 78, false, t0
	live.Memory.Usage = 555
	snap := testSnapshot()
	snap.Containers = []view.Container{podContainer(), live, old}

	for _, order := range [][]view.Container{
		{podContainer(), old, live},
		{podContainer(), live, old},
	} {
		snap.Containers = order
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(NewCollector(&fakeSource{snap: snap}, testInfo))
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatalf("gather: %v", err)
		}
		var usage []float64
		for _, m := range family(mfs, "leakwatch_container_memory_bytes").GetMetric() {
			if label(m, "cgroup") == old.Cgroup && label(m, "type") == "usage" {
				usage = append(usage, m.GetGauge().GetValue())
			}
		}
		if len(usage) != 1 || usage[0] != 555 {
			t.Errorf("usage series for %s = %v, want only the live one [555]", old.Cgroup, usage)
		}
	}
}

func TestCollectTimeToLimitOnlyWhenKnown(t *testing.T) {
	snap := testSnapshot()
	snap.Containers = snap.Containers[:1]
	snap.Containers[0].Verdict.TimeToLimit = -1
	snap.Containers[0].Memory.Limit = 0
	c := NewCollector(&fakeSource{snap: snap}, testInfo)
	for _, name := range []string{
		"leakwatch_container_time_to_limit_seconds",
		"leakwatch_container_memory_limit_bytes",
	} {
		if n := testutil.CollectAndCount(c, name); n != 0 {
			t.Errorf("%s: %d series, want none", name, n)
		}
	}
}

// TestPromtool runs the real promtool on the exposition text, the check the
// style guide names. Debian's prometheus package ships it (hack/install-deps.sh).
func TestPromtool(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewCollector(&fakeSource{snap: testSnapshot()}, testInfo))
	// The page the agent serves, written as text by the Exposition, with
	// label values to escape.
	page, err := exposition(t, awkwardSnapshot(3)).AppendText(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, text := range [][]byte{encode(t, reg), page} {
		// promtool passes empty input: make sure it gets every family.
		for _, name := range append(allButScrapeDuration, "leakwatch_scrape_duration_seconds") {
			if !bytes.Contains(text, []byte("\n# TYPE "+name+" ")) {
				t.Fatalf("exposition lacks %s:\n%s", name, text)
			}
		}
		promtool.CheckMetrics(t, text, true)
	}
}

func BenchmarkCollect(b *testing.B) {
	const n = 500
	snap := benchSnapshot(n)
	c := NewCollector(&fakeSource{snap: snap}, testInfo)
	ch := make(chan prometheus.Metric, 20*n)
	b.ReportAllocs()
	for b.Loop() {
		c.Collect(ch)
		for len(ch) > 0 {
			<-ch
		}
	}
}

func seriesWithCgroup(t *testing.T, g prometheus.Gatherer, cgroup string) int {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	n := 0
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if label(m, "cgroup") == cgroup {
				n++
			}
		}
	}
	return n
}

func family(mfs []*dto.MetricFamily, name string) *dto.MetricFamily {
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf
		}
	}
	return nil
}

func label(m *dto.Metric, name string) string {
	for _, lp := range m.GetLabel() {
		if lp.GetName() == name {
			return lp.GetValue()
		}
	}
	return ""
}

// Label pairs are kept from one collection to the next, but a container
// whose labels change (CRI answers after the first collection, a pod is
// renamed) is exported with its new labels only, and the cache holds only
// the containers of the last collection.
func TestLabelPairsFollowTheContainer(t *testing.T) {
	src := &fakeSource{snap: testSnapshot()}
	c := NewCollector(src, testInfo).(*collector)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	pods := func() []string {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatalf("gather: %v", err)
		}
		var out []string
		for _, m := range family(mfs, "leakwatch_container_memory_bytes").GetMetric() {
			if label(m, "cgroup") == podContainer().Cgroup && label(m, "type") == "usage" {
				out = append(out, label(m, "pod"))
			}
		}
		return out
	}
	if got := pods(); !slices.Equal(got, []string{podContainer().Pod}) {
		t.Fatalf("pod labels %v, want [%s]", got, podContainer().Pod)
	}
	first := c.labels[containerLabelValues(&src.snap.Containers[0])]
	pods()
	if again := c.labels[containerLabelValues(&src.snap.Containers[0])]; again != first || first == nil {
		t.Errorf("label pairs rebuilt for an unchanged container")
	}

	next := testSnapshot()
	next.Containers[0].Pod = "renamed"
	src.set(next)
	if got := pods(); !slices.Equal(got, []string{"renamed"}) {
		t.Errorf("pod labels after the change %v, want [renamed]", got)
	}
	if len(c.labels) != len(next.Containers) {
		t.Errorf("%d label sets cached for %d containers", len(c.labels), len(next.Containers))
	}
}
