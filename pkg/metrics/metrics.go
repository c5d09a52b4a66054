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
	"sync/atomic"
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

	// parts says what Collect emits: the agent's own figures, the
	// containers' series, or both.
	parts parts
	// lastPage is the duration of the last page an Exposition built,
	// reported as the scrape duration when the containers' series are
	// written apart from Collect.
	lastPage *atomic.Int64

	// families are the containers' series, sorted by name.
	families []*containerFamily

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
	return newCollector(src, info, agentPart|containersPart)
}

// parts are the halves of what the collector exports.
type parts uint8

const (
	agentPart parts = 1 << iota
	containersPart
)

func newCollector(src view.Source, info buildinfo.Info, p parts) *collector {
	agentDesc := func(subsystem, name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, subsystem, name), help, labels, nil)
	}
	return &collector{
		src:      src,
		info:     info,
		parts:    p,
		families: containerFamilies(),

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
			"User stacks copied for unwinding in user space, and copies not made, by result: copied, over_budget, ring_full, unreadable (not made: frame pointers only); of the copied: unwound (and of those, truncated), go (Go code: frame pointers by design), fell_back, over_limits, queue_full (the unwinder was behind: frame pointers).", "result"),
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
	if c.parts&containersPart != 0 {
		for _, f := range c.families {
			ch <- f.desc
		}
	}
	if c.parts&agentPart == 0 {
		return
	}
	for _, d := range []*prometheus.Desc{
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
	agent := c.parts&agentPart != 0
	if agent {
		ch <- prometheus.MustNewConstMetric(c.buildInfo, prometheus.GaugeValue, 1,
			c.info.Version, c.info.Revision, c.info.GoVersion)
	}
	snap := c.src.Snapshot()
	if snap == nil {
		if agent {
			ch <- prometheus.MustNewConstMetric(c.ready, prometheus.GaugeValue, 0)
		}
		return
	}
	if agent {
		ag := snap.Agent
		ag.Tracing = view.CurrentTracing(c.src, snap)
		c.collectAgent(ch, &ag)
	}
	if c.parts&containersPart != 0 {
		shadowed := shadowedSeries(snap.Containers)
		for i, pairs := range c.pairsFor(snap.Containers, shadowed) {
			if pairs != nil {
				c.collectContainer(ch, &snap.Containers[i], pairs)
			}
		}
	}
	if agent {
		took := time.Since(start)
		if c.lastPage != nil {
			// The containers are written after this: the last
			// scrape that took its whole time is the page before.
			if last := time.Duration(c.lastPage.Load()); last > 0 {
				took = last
			}
		}
		ch <- prometheus.MustNewConstMetric(c.scrapeDuration, prometheus.GaugeValue, took.Seconds())
	}
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
	// The same, as the text format writes them.
	text      string
	typedText [len(memoryTypes)]string
}

func newContainerPairs(v labelValues) *containerPairs {
	common := make([]*dto.LabelPair, len(containerLabels))
	for i := range containerLabels {
		common[i] = &dto.LabelPair{Name: &containerLabels[i], Value: &v[i]}
	}
	byName := func(a, b *dto.LabelPair) int { return strings.Compare(a.GetName(), b.GetName()) }
	slices.SortFunc(common, byName)
	p := &containerPairs{common: common, text: labelsText(common)}
	for i := range memoryTypes {
		typed := append(slices.Clone(common), &dto.LabelPair{Name: &typeLabel, Value: &memoryTypes[i]})
		slices.SortFunc(typed, byName)
		p.typed[i] = typed
		p.typedText[i] = labelsText(typed)
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
