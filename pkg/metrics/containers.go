package metrics

import (
	"cmp"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/leakwatch/leakwatch/pkg/view"
)

// containerFamily is one family of per-container series. The one table of
// them (containerFamilies) serves both ways of exporting them: as
// prometheus.Metrics to a registry (Collect) and as text (Exposition).
type containerFamily struct {
	name, help string
	counter    bool
	// typed: one series per memoryTypes, with a type label, from
	// memoryValues; else one series of value.
	typed bool
	// ofGone: exported for a gone container too (only the OOM kill
	// counter: the kill that emptied the cgroup is the one the OOM alert
	// must see rise).
	ofGone bool
	// value is the series' value, and false when it has none (absent).
	value func(ct *view.Container) (float64, bool)
	desc  *prometheus.Desc
}

func (f *containerFamily) typeName() string {
	if f.counter {
		return "counter"
	}
	return "gauge"
}

// containerFamilies returns the per-container families, sorted by name as
// a registry gathers them.
func containerFamilies() []*containerFamily {
	always := func(v func(ct *view.Container) float64) func(*view.Container) (float64, bool) {
		return func(ct *view.Container) (float64, bool) { return v(ct), true }
	}
	fams := []*containerFamily{
		{name: "memory_bytes", typed: true,
			help: "Memory of the container's memory cgroup at the last collection, by type. " +
				"leak_signal is anonymous and shared memory plus unreclaimable kernel memory, the figure the leak detector watches."},
		{name: "memory_limit_bytes",
			help: "Effective memory limit of the container's cgroup, the lowest of its own and its ancestors'. " +
				"Absent when the cgroup has no limit.",
			value: func(ct *view.Container) (float64, bool) { return float64(ct.Memory.Limit), ct.Memory.Limit > 0 }},
		{name: "memory_growth_bytes_per_second",
			help:  "Growth of the container's leak signal estimated by the leak detector.",
			value: always(func(ct *view.Container) float64 { return ct.Verdict.GrowthBytesPerSecond })},
		{name: "leak_confidence",
			help: "Confidence of the leak detector, between 0 and 1, that the container leaks memory. " +
				"It is at least " + leakingConfidence + " exactly while leakwatch_container_leaking is 1: it holds the confidence " +
				"of the evidence that turned the verdict on, and falls towards " + leakingConfidence + " only while no evidence of growth remains.",
			value: always(func(ct *view.Container) float64 { return ct.Verdict.Confidence })},
		{name: "leaking",
			help: "Whether the leak detector judges that the container leaks memory (1) or not (0). " +
				"It turns on when growth is confirmed and off only after a quiet period without growth; " +
				"leakwatch_container_leak_confidence is at least " + leakingConfidence + " exactly while it is 1.",
			value: always(func(ct *view.Container) float64 { return boolValue(ct.Verdict.Leaking) })},
		{name: "time_to_limit_seconds",
			help: "Projected time until the container reaches its memory limit at the current growth. " +
				"Absent when unknown.",
			value: func(ct *view.Container) (float64, bool) {
				return ct.Verdict.TimeToLimit.Seconds(), ct.Verdict.TimeToLimit >= 0
			}},
		{name: "oom_kills_total", counter: true, ofGone: true,
			help:  "Processes of the container killed by the out-of-memory killer since the agent started.",
			value: always(func(ct *view.Container) float64 { return float64(ct.OOMKills) })},
		{name: "mapped_bytes",
			help:  "Private anonymous memory committed by the container's processes (mappings, brk heap, reservations made accessible by mprotect) that the tracer sees outstanding, touched or not.",
			value: always(func(ct *view.Container) float64 { return float64(ct.MappedBytes) })},
		{name: "page_faults_total", counter: true,
			help:  "Page faults of the container's cgroup, as the kernel counts them.",
			value: always(func(ct *view.Container) float64 { return float64(ct.Memory.PageFaults) })},
		{name: "faulted_bytes_total", counter: true,
			help:  "Anonymous memory faulted in by the container's processes since the tracer started, estimated from samples.",
			value: always(func(ct *view.Container) float64 { return float64(ct.FaultedBytes) })},
	}
	for _, f := range fams {
		f.name = prometheus.BuildFQName(namespace, "container", f.name)
		labels := slices.Clone(containerLabels)
		if f.typed {
			labels = append(labels, typeLabel)
		}
		f.desc = prometheus.NewDesc(f.name, f.help, labels, nil)
	}
	slices.SortFunc(fams, func(a, b *containerFamily) int { return strings.Compare(a.name, b.name) })
	return fams
}

// exported reports whether f has series for ct.
func (f *containerFamily) exported(ct *view.Container) bool { return !ct.Gone || f.ofGone }

// collectContainer sends ct's series of every family.
func (c *collector) collectContainer(ch chan<- prometheus.Metric, ct *view.Container, pairs *containerPairs) {
	for _, f := range c.families {
		if !f.exported(ct) {
			continue
		}
		if f.typed {
			for i, v := range memoryValues(&ct.Memory) {
				ch <- &containerMetric{desc: f.desc, labels: pairs.typed[i], gauge: !f.counter, value: float64(v)}
			}
			continue
		}
		if v, ok := f.value(ct); ok {
			ch <- &containerMetric{desc: f.desc, labels: pairs.common, gauge: !f.counter, value: v}
		}
	}
}

// encodedFamily is another collector's family, already in text.
type encodedFamily struct {
	name string
	text []byte
}

// appendContainers appends snap's container families to b in the text
// exposition format, with others (sorted by name) each in its place: byte
// for byte what a registry gathering collectContainer's metrics with the
// others' and expfmt encoding them would write (families by name, series
// by label values), without building a protobuf message per series (at
// 2,000 containers those were about 12 MB of garbage a page). b grows
// once, to exactly the page's size.
func (c *collector) appendContainers(b []byte, snap *view.Snapshot, others []encodedFamily) []byte {
	var order []int
	var all []*containerPairs
	if snap != nil {
		all = c.pairsFor(snap.Containers, shadowedSeries(snap.Containers))
		for i, p := range all {
			if p != nil {
				order = append(order, i)
			}
		}
		slices.SortFunc(order, func(i, j int) int { return comparePairs(all[i].common, all[j].common) })
	}
	// Sized exactly first: growing it by append would allocate about
	// four times its size (large slices grow by a quarter), and capacity
	// left over would be memory cleared for nothing.
	size := 0
	for _, o := range others {
		size += len(o.text)
	}
	var scratch []byte
	c.eachSeries(snap, all, order, nil, func(f *containerFamily, first bool, labels string, v float64) {
		if first {
			size += len(appendHeader(scratch[:0], f))
		}
		scratch = appendSample(scratch[:0], f.name, labels, v)
		size += len(scratch)
	})
	b = slices.Grow(b, size)
	// Writes the others that sort before name ("": all that are left).
	next := func(name string) {
		for len(others) > 0 && (name == "" || others[0].name < name) {
			b = append(b, others[0].text...)
			others = others[1:]
		}
	}
	c.eachSeries(snap, all, order, func(f *containerFamily) { next(f.name) }, func(f *containerFamily, first bool, labels string, v float64) {
		if first {
			b = appendHeader(b, f)
		}
		b = appendSample(b, f.name, labels, v)
	})
	next("")
	return b
}

// eachSeries calls series for every series of the containers in order,
// family by family (first: the family's first series), and family (if not
// nil) before each family.
func (c *collector) eachSeries(snap *view.Snapshot, all []*containerPairs, order []int, family func(*containerFamily),
	series func(f *containerFamily, first bool, labels string, v float64)) {
	for _, f := range c.families {
		if family != nil {
			family(f)
		}
		first := true
		for _, i := range order {
			ct := &snap.Containers[i]
			if !f.exported(ct) {
				continue
			}
			if f.typed {
				vals := memoryValues(&ct.Memory)
				for _, t := range typeOrder {
					series(f, first, all[i].typedText[t], float64(vals[t]))
					first = false
				}
				continue
			}
			if v, ok := f.value(ct); ok {
				series(f, first, all[i].text, v)
				first = false
			}
		}
	}
}

// typeOrder is memoryTypes' indexes in the order of their values, the
// order a registry sorts one container's series of memory_bytes in.
var typeOrder = func() []int {
	o := make([]int, len(memoryTypes))
	for i := range o {
		o[i] = i
	}
	slices.SortFunc(o, func(a, b int) int { return strings.Compare(memoryTypes[a], memoryTypes[b]) })
	return o
}()

// comparePairs orders two series' label pairs (sorted by name, the same
// names) by their values, as a registry sorts a family's series.
func comparePairs(a, b []*dto.LabelPair) int {
	for k := range a {
		if c := strings.Compare(a[k].GetValue(), b[k].GetValue()); c != 0 {
			return c
		}
	}
	return cmp.Compare(len(a), len(b))
}

// appendHeader writes f's HELP and TYPE lines, before its first series (a
// family without series is left out, as a registry leaves it out).
func appendHeader(b []byte, f *containerFamily) []byte {
	b = append(b, "# HELP "...)
	b = append(b, f.name...)
	b = append(b, ' ')
	b = appendEscaped(b, f.help, false)
	b = append(b, "\n# TYPE "...)
	b = append(b, f.name...)
	b = append(b, ' ')
	b = append(b, f.typeName()...)
	return append(b, '\n')
}

func appendSample(b []byte, name, labels string, v float64) []byte {
	b = append(b, name...)
	b = append(b, labels...)
	b = append(b, ' ')
	b = appendFloat(b, v)
	return append(b, '\n')
}

// labelsText is pairs written as the text format writes them:
// {name="value",...}, the values escaped.
func labelsText(pairs []*dto.LabelPair) string {
	var b []byte
	for i, p := range pairs {
		sep := byte(',')
		if i == 0 {
			sep = '{'
		}
		b = append(b, sep)
		b = append(b, p.GetName()...)
		b = append(b, `="`...)
		b = appendEscaped(b, p.GetValue(), true)
		b = append(b, '"')
	}
	return string(append(b, '}'))
}

// appendEscaped escapes as the text format does: backslash and newline,
// and double quotes in label values.
func appendEscaped(b []byte, s string, quotes bool) []byte {
	for i := range len(s) {
		switch ch := s[i]; {
		case ch == '\\':
			b = append(b, `\\`...)
		case ch == '\n':
			b = append(b, `\n`...)
		case ch == '"' && quotes:
			b = append(b, `\"`...)
		default:
			b = append(b, ch)
		}
	}
	return b
}

// appendFloat writes v as the text format does.
func appendFloat(b []byte, v float64) []byte {
	switch {
	case v == 1:
		return append(b, '1')
	case v == 0:
		return append(b, '0')
	case v == -1:
		return append(b, "-1"...)
	case math.IsNaN(v):
		return append(b, "NaN"...)
	case math.IsInf(v, +1):
		return append(b, "+Inf"...)
	case math.IsInf(v, -1):
		return append(b, "-Inf"...)
	}
	return strconv.AppendFloat(b, v, 'g', -1, 64)
}
