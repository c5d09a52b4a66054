// Package metrics exports the node's view as Prometheus metrics. The collector
// holds no state of its own: every scrape reads the current view.Snapshot and
// emits constant metrics, so a container that goes stops being exported on
// the next scrape (all but its OOM kill counter, which stays until the agent
// forgets it), with no registry bookkeeping to go stale.
package metrics

import (
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/leakwatch/leakwatch/pkg/buildinfo"
	"github.com/leakwatch/leakwatch/pkg/detect"
	"github.com/leakwatch/leakwatch/pkg/tiering"
	"github.com/leakwatch/leakwatch/pkg/view"
)

const namespace = "leakwatch"

// containerLabels name a container the way cAdvisor does, plus the two
// identities that stay meaningful off Kubernetes. The order is the order of
// the values containerLabelValues returns.
// leakingConfidence is the detector's contract between the two verdict
// gauges, stated in their help text.
var leakingConfidence = strconv.FormatFloat(detect.LeakingConfidence, 'g', -1, 64)

var containerLabels = []string{"namespace", "pod", "container", "container_id", "cgroup"}

// Values of the type label of leakwatch_container_memory_bytes, in the order
// memoryValues returns them.
var memoryTypes = [...]string{"usage", "anon", "file", "kernel", "shmem", "working_set", "leak_signal"}

type collector struct {
	src  view.Source
	info buildinfo.Info

	// labels holds each exported container's label pairs from one
	// collection to the next: a container's labels change rarely, and
	// building them for every series of every scrape was most of what a
	// scrape allocated (2,000 containers: 21 MB of label pairs a scrape).
	// Each collection keeps only the containers it exported, so the cache
	// is bounded by the view.
	labelsMu sync.Mutex
	labels   map[labelValues]*containerPairs

	memory       *prometheus.Desc
	limit        *prometheus.Desc
	growth       *prometheus.Desc
	confidence   *prometheus.Desc
	leaking      *prometheus.Desc
	timeToLimit  *prometheus.Desc
	oomKills     *prometheus.Desc
	mapped       *prometheus.Desc
	pageFaults   *prometheus.Desc
	faultedBytes *prometheus.Desc

	buildInfo          *prometheus.Desc
	mapEntries         *prometheus.Desc
	mapCapacity        *prometheus.Desc
	mapMemory          *prometheus.Desc
	drops              *prometheus.Desc
	stackCopies        *prometheus.Desc
	unwindTableBytes   *prometheus.Desc
	unwindRefused      *prometheus.Desc
	errors             *prometheus.Desc
	collectDuration    *prometheus.Desc
	collections        *prometheus.Desc
	tracked            *prometheus.Desc
	overLimit          *prometheus.Desc
	ready              *prometheus.Desc
	degraded           *prometheus.Desc
	tracingTier        *prometheus.Desc
	tracingEscalations *prometheus.Desc
	scrapeDuration     *prometheus.Desc
	stateLastSave      *prometheus.Desc
}

// NewCollector returns a collector that exports src's current snapshot on
// every scrape. It keeps no reference to any snapshot between scrapes.
func NewCollector(src view.Source, info buildinfo.Info) prometheus.Collector {
	containerDesc := func(name, help string, extra ...string) *prometheus.Desc {
		labels := append(append([]string(nil), containerLabels...), extra...)
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "container", name), help, labels, nil)
	}
	agentDesc := func(subsystem, name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, subsystem, name), help, labels, nil)
	}
	return &collector{
		src:  src,
		info: info,

		memory: containerDesc("memory_bytes",
			"Memory of the container's memory cgroup at the last collection, by type. "+
				"leak_signal is anonymous and shared memory plus unreclaimable kernel memory, the figure the leak detector watches.",
			"type"),
		limit: containerDesc("memory_limit_bytes",
			"Effective memory limit of the container's cgroup, the lowest of its own and its ancestors'. "+
				"Absent when the cgroup has no limit."),
		growth: containerDesc("memory_growth_bytes_per_second",
			"Growth of the container's leak signal estimated by the leak detector."),
		confidence: containerDesc("leak_confidence",
			"Confidence of the leak detector, between 0 and 1, that the container leaks memory. "+
				"It is at least "+leakingConfidence+" exactly while leakwatch_container_leaking is 1: it holds the confidence "+
				"of the evidence that turned the verdict on, and falls towards "+leakingConfidence+" only while no evidence of growth remains."),
		leaking: containerDesc("leaking",
			"Whether the leak detector judges that the container leaks memory (1) or not (0). "+
				"It turns on when growth is confirmed and off only after a quiet period without growth; "+
				"leakwatch_container_leak_confidence is at least "+leakingConfidence+" exactly while it is 1."),
		timeToLimit: containerDesc("time_to_limit_seconds",
			"Projected time until the container reaches its memory limit at the current growth. "+
				"Absent when unknown."),
		oomKills: containerDesc("oom_kills_total",
			"Processes of the container killed by the out-of-memory killer since the agent started."),
		mapped: containerDesc("mapped_bytes",
			"Private anonymous memory committed by the container's processes (mappings, brk heap, reservations made accessible by mprotect) that the tracer sees outstanding, touched or not."),
		pageFaults: containerDesc("page_faults_total",
			"Page faults of the container's cgroup, as the kernel counts them."),
		faultedBytes: containerDesc("faulted_bytes_total",
			"Anonymous memory faulted in by the container's processes since the tracer started, estimated from samples."),

		buildInfo: agentDesc("", "build_info",
			"A metric with a constant value of 1, labelled with the version, revision and Go version of the agent.",
			"version", "revision", "goversion"),
		mapEntries: agentDesc("bpf", "map_entries",
			"Entries in a BPF map of the tracer at the last collection.", "map"),
		mapCapacity: agentDesc("bpf", "map_capacity",
			"Maximum entries of a BPF map of the tracer.", "map"),
		mapMemory: agentDesc("bpf", "map_memory_bytes",
			"Kernel memory used by the BPF maps of the tracer, read at most once a minute."),
		drops: agentDesc("", "drops_total",
			"Events the kernel side had to drop, by reason.", "reason"),
		stackCopies: agentDesc("", "stack_copies_total",
			"User stacks copied for unwinding in user space, and copies not made, by result: copied, over_budget, ring_full, unreadable (not made: frame pointers only); of the copied: unwound (and of those, truncated), go (Go code: frame pointers by design), fell_back, over_limits.", "result"),
		unwindTableBytes: agentDesc("unwind", "table_bytes",
			"Memory held by the unwinding tables built from binaries' call-frame information (--unwind-table-bytes bounds it)."),
		unwindRefused: agentDesc("unwind", "tables_refused_total",
			"Binaries whose unwinding table was larger than half of --unwind-table-bytes: their frames are walked by frame pointer."),
		errors: agentDesc("", "errors_total",
			"Failures of the agent, by kind.", "kind"),
		collectDuration: agentDesc("", "collect_duration_seconds",
			"Duration of the agent's last collection."),
		collections: agentDesc("", "collections_total",
			"Collections the agent has completed."),
		tracked: agentDesc("", "containers_tracked",
			"Containers the agent tracks, including those gone but still retained."),
		overLimit: agentDesc("", "containers_over_limit_total",
			"Containers the agent did not track because it already tracked as many as it may."),
		ready: agentDesc("", "ready",
			"Whether the agent is ready (1) or not (0)."),
		degraded: agentDesc("", "degraded",
			"A metric with a constant value of 1 for each part of the agent that does not run on this host.", "part"),
		tracingTier: agentDesc("", "tracing_tier",
			"Whether the tracer traces (1) or not (0) in each tier: faults (page-fault samples, OOM kills, execs, exits) or full (also the mapping system calls: the inuse view). With --tracing=auto it moves to full while a container is leaking or an inuse profile was asked for, and back after the hold.", "tier"),
		tracingEscalations: agentDesc("tracing", "escalations_total",
			"Escalations of the tracer to its full tier (--tracing=auto), by reason: leaking (a container judged leaking) or inuse_request (an inuse profile asked for).", "reason"),
		stateLastSave: agentDesc("state", "last_save_timestamp_seconds",
			"Time the last successful save of the state store began, in seconds since the epoch; 0 before the first. Failed saves count in leakwatch_errors_total{kind=\"state_save\"}."),
		scrapeDuration: agentDesc("", "scrape_duration_seconds",
			"Time the last scrape of the agent's metrics took to produce them."),
	}
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.memory, c.limit, c.growth, c.confidence, c.leaking, c.timeToLimit,
		c.oomKills, c.mapped, c.pageFaults, c.faultedBytes,
		c.buildInfo, c.mapEntries, c.mapCapacity, c.mapMemory, c.drops, c.stackCopies, c.unwindTableBytes, c.unwindRefused, c.errors,
		c.collectDuration, c.collections, c.tracked, c.overLimit, c.ready, c.degraded,
		c.scrapeDuration, c.stateLastSave, c.tracingTier, c.tracingEscalations,
	} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	start := time.Now()
	ch <- prometheus.MustNewConstMetric(c.buildInfo, prometheus.GaugeValue, 1,
		c.info.Version, c.info.Revision, c.info.GoVersion)

	snap := c.src.Snapshot()
	if snap == nil {
		ch <- prometheus.MustNewConstMetric(c.ready, prometheus.GaugeValue, 0)
		return
	}

	ag := snap.Agent
	ag.Tracing = view.CurrentTracing(c.src, snap)
	c.collectAgent(ch, &ag)
	shadowed := shadowedSeries(snap.Containers)
	for i, pairs := range c.pairsFor(snap.Containers, shadowed) {
		if pairs != nil {
			c.collectContainer(ch, &snap.Containers[i], pairs)
		}
	}
	ch <- prometheus.MustNewConstMetric(c.scrapeDuration, prometheus.GaugeValue, time.Since(start).Seconds())
}

func (c *collector) collectAgent(ch chan<- prometheus.Metric, a *view.Agent) {
	ch <- prometheus.MustNewConstMetric(c.ready, prometheus.GaugeValue, boolValue(a.Ready))
	for part := range a.Degraded {
		ch <- prometheus.MustNewConstMetric(c.degraded, prometheus.GaugeValue, 1, part)
	}
	if t := a.Tracing; t != nil {
		for _, tier := range []tiering.Tier{tiering.TierFaults, tiering.TierFull} {
			ch <- prometheus.MustNewConstMetric(c.tracingTier, prometheus.GaugeValue, boolValue(t.Tier == tier), string(tier))
		}
		for _, r := range tiering.Reasons {
			ch <- prometheus.MustNewConstMetric(c.tracingEscalations, prometheus.CounterValue, float64(t.Escalations[r]), string(r))
		}
	}
	for _, m := range a.Maps {
		ch <- prometheus.MustNewConstMetric(c.mapEntries, prometheus.GaugeValue, float64(m.Entries), m.Name)
		ch <- prometheus.MustNewConstMetric(c.mapCapacity, prometheus.GaugeValue, float64(m.Capacity), m.Name)
	}
	ch <- prometheus.MustNewConstMetric(c.mapMemory, prometheus.GaugeValue, float64(a.MapMemoryBytes))
	for reason, n := range a.Drops {
		ch <- prometheus.MustNewConstMetric(c.drops, prometheus.CounterValue, float64(n), reason)
	}
	for result, n := range a.StackCopies {
		ch <- prometheus.MustNewConstMetric(c.stackCopies, prometheus.CounterValue, float64(n), result)
	}
	ch <- prometheus.MustNewConstMetric(c.unwindTableBytes, prometheus.GaugeValue, float64(a.UnwindTableBytes))
	ch <- prometheus.MustNewConstMetric(c.unwindRefused, prometheus.CounterValue, float64(a.UnwindTablesRefused))
	for kind, n := range a.Errors {
		ch <- prometheus.MustNewConstMetric(c.errors, prometheus.CounterValue, float64(n), kind)
	}
	ch <- prometheus.MustNewConstMetric(c.collectDuration, prometheus.GaugeValue, a.CollectDuration.Seconds())
	ch <- prometheus.MustNewConstMetric(c.collections, prometheus.CounterValue, float64(a.Collections))
	ch <- prometheus.MustNewConstMetric(c.tracked, prometheus.GaugeValue, float64(a.Tracked))
	ch <- prometheus.MustNewConstMetric(c.overLimit, prometheus.CounterValue, float64(a.OverLimit))
	if a.State != nil {
		var last float64
		if a.State.LastSuccess != nil {
			last = float64(a.State.LastSuccess.UnixNano()) / 1e9
		}
		ch <- prometheus.MustNewConstMetric(c.stateLastSave, prometheus.GaugeValue, last)
	}
}

func (c *collector) collectContainer(ch chan<- prometheus.Metric, ct *view.Container, pairs *containerPairs) {
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- &containerMetric{desc: d, labels: pairs.common, gauge: true, value: v}
	}
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- &containerMetric{desc: d, labels: pairs.common, value: float64(v)}
	}
	if ct.Gone {
		// A gone container has no memory, growth or verdict to report:
		// its series end, so every alert on them resolves. Only the OOM
		// kill counter stays for the retention, since the kill that
		// emptied the cgroup is the one the OOM alert must see rise.
		counter(c.oomKills, ct.OOMKills)
		return
	}
	for i, v := range memoryValues(&ct.Memory) {
		ch <- &containerMetric{desc: c.memory, labels: pairs.typed[i], gauge: true, value: float64(v)}
	}
	if ct.Memory.Limit > 0 {
		gauge(c.limit, float64(ct.Memory.Limit))
	}
	gauge(c.growth, ct.Verdict.GrowthBytesPerSecond)
	gauge(c.confidence, ct.Verdict.Confidence)
	gauge(c.leaking, boolValue(ct.Verdict.Leaking))
	if ct.Verdict.TimeToLimit >= 0 {
		gauge(c.timeToLimit, ct.Verdict.TimeToLimit.Seconds())
	}
	counter(c.oomKills, ct.OOMKills)
	gauge(c.mapped, float64(ct.MappedBytes))
	counter(c.pageFaults, ct.Memory.PageFaults)
	counter(c.faultedBytes, ct.FaultedBytes)
}

// labelValues are a container's values of containerLabels, in order.
type labelValues [5]string

func containerLabelValues(ct *view.Container) labelValues {
	return labelValues{ct.Namespace, ct.Pod, ct.Container, ct.ContainerID, ct.Cgroup}
}

// containerPairs are one container's label pairs, sorted by name as the
// exposition wants them: common for its series but one, typed[i] for
// leakwatch_container_memory_bytes of memoryTypes[i]. Shared by every
// series and scrape that exports them, and never changed once made.
type containerPairs struct {
	common []*dto.LabelPair
	typed  [len(memoryTypes)][]*dto.LabelPair
}

func newContainerPairs(v labelValues) *containerPairs {
	common := make([]*dto.LabelPair, len(containerLabels))
	for i := range containerLabels {
		common[i] = &dto.LabelPair{Name: &containerLabels[i], Value: &v[i]}
	}
	byName := func(a, b *dto.LabelPair) int { return strings.Compare(a.GetName(), b.GetName()) }
	slices.SortFunc(common, byName)
	p := &containerPairs{common: common}
	for i := range memoryTypes {
		typed := append(slices.Clone(common), &dto.LabelPair{Name: &typeLabel, Value: &memoryTypes[i]})
		slices.SortFunc(typed, byName)
		p.typed[i] = typed
	}
	return p
}

var typeLabel = "type"

// pairsFor returns the label pairs of each container exported this
// collection (nil for a shadowed one), reusing those of the collection
// before and forgetting the containers it no longer exports.
func (c *collector) pairsFor(containers []view.Container, shadowed map[int]bool) []*containerPairs {
	c.labelsMu.Lock()
	defer c.labelsMu.Unlock()
	out := make([]*containerPairs, len(containers))
	next := make(map[labelValues]*containerPairs, len(containers))
	for i := range containers {
		if shadowed[i] {
			continue
		}
		v := containerLabelValues(&containers[i])
		p := c.labels[v]
		if p == nil {
			p = newContainerPairs(v)
		}
		next[v], out[i] = p, p
	}
	c.labels = next
	return out
}

// containerMetric is one container series: a prometheus.Metric with
// shared, prebuilt label pairs, where prometheus.MustNewConstMetric would
// check and build them again for every series of every scrape.
type containerMetric struct {
	desc   *prometheus.Desc
	labels []*dto.LabelPair
	gauge  bool // else a counter
	value  float64
}

func (m *containerMetric) Desc() *prometheus.Desc { return m.desc }

func (m *containerMetric) Write(out *dto.Metric) error {
	out.Label = m.labels
	v := m.value
	if m.gauge {
		out.Gauge = &dto.Gauge{Value: &v}
	} else {
		out.Counter = &dto.Counter{Value: &v}
	}
	return nil
}

// shadowedSeries returns the indexes of containers that must not be
// exported because another container has the same labels and wins, or nil.
// A systemd service that restarts gets a new cgroup (a new ID) at the same
// path while the old one is still retained as Gone; exporting both would
// fail the scrape on duplicate series. Only a gone container can collide, so
// snapshots without one cost nothing. The live one wins; between two of the
// same liveness the one seen last, then the later in the slice.
func shadowedSeries(containers []view.Container) map[int]bool {
	anyGone := false
	for i := range containers {
		if containers[i].Gone {
			anyGone = true
			break
		}
	}
	if !anyGone {
		return nil
	}
	type key struct{ namespace, pod, container, containerID, cgroup string }
	winner := make(map[key]int, len(containers))
	var shadowed map[int]bool
	for i := range containers {
		ct := &containers[i]
		k := key{ct.Namespace, ct.Pod, ct.Container, ct.ContainerID, ct.Cgroup}
		j, seen := winner[k]
		if !seen {
			winner[k] = i
			continue
		}
		if shadowed == nil {
			shadowed = make(map[int]bool)
		}
		if o := &containers[j]; o.Gone != ct.Gone && ct.Gone ||
			o.Gone == ct.Gone && o.LastSeen.After(ct.LastSeen) {
			shadowed[i] = true
			continue
		}
		shadowed[j] = true
		winner[k] = i
	}
	return shadowed
}

func memoryValues(m *view.Memory) [len(memoryTypes)]uint64 {
	return [...]uint64{m.Usage, m.Anon, m.File, m.Kernel, m.Shmem, m.WorkingSet, m.LeakSignal}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
