package metrics

import (
	"bytes"
	"fmt"
	"math"
	"regexp"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/leakwatch/leakwatch/pkg/view"
)

// scrapeDurationLine is the one line that differs between two pages of the
// same view.
var scrapeDurationLine = regexp.MustCompile(`(?m)^leakwatch_scrape_duration_seconds .*\n`)

// exposition returns an Exposition over snap, in a registry that also holds
// families sorting before, between and after the containers'.
func exposition(t *testing.T, snap *view.Snapshot) *Exposition {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	for _, name := range []string{"aaa_first", "leakwatch_container", "leakwatch_containerz", "zzz_last"} {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: "A family of another collector."}, func() float64 { return 3 }))
	}
	e, err := NewExposition(&fakeSource{snap: snap}, testInfo, reg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// encode writes what g gathers the way promhttp serves it.
func encode(t *testing.T, g prometheus.Gatherer) []byte {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, TextFormat)
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

// awkwardSnapshot has what the text must get right: label values to
// escape, containers listed out of their sort order, a gone one (its OOM
// counter alone), a restarted service whose gone cgroup is shadowed, no
// limit, an unknown time to the limit, and values the format spells out.
func awkwardSnapshot(n int) *view.Snapshot {
	snap := testSnapshot()
	odd := podContainer()
	odd.ID, odd.MemcgID = "5", 5
	odd.Pod, odd.Container = `we"ird\pod`, "line\nbreak"
	odd.Cgroup = "/kubepods.slice/odd"
	odd.Memory.Limit = 0
	odd.Verdict.TimeToLimit = -1
	odd.Verdict.GrowthBytesPerSecond = math.Inf(1)
	odd.Verdict.Confidence = -1
	odd.MappedBytes = 1
	live := serviceContainer()
	live.ID, live.MemcgID, live.Gone, live.LastSeen = "78", 78, false, t0
	live.Verdict.GrowthBytesPerSecond = math.NaN()
	snap.Containers = append(snap.Containers, odd, live)
	for i := range n {
		ct := podContainer()
		ct.ID = fmt.Sprint(1000 + i)
		ct.ContainerID = fmt.Sprintf("%064x", n-i)
		ct.Cgroup = fmt.Sprintf("/kubepods.slice/pod%d/cri-containerd-%064x.scope", n-i, n-i)
		ct.Pod = fmt.Sprintf("cart-%d", (i*7919)%n)
		ct.Memory.Usage = uint64(i) << 20
		ct.Verdict.TimeToLimit = time.Duration(i) * time.Second / 3
		snap.Containers = append(snap.Containers, ct)
	}
	return snap
}

// The text page is, byte for byte, what encoding the gathered families
// writes: every family in name order with the other collectors' between,
// every series in label order, values and escapes as expfmt spells them.
func TestExpositionTextIsWhatGatherEncodes(t *testing.T) {
	for _, n := range []int{0, 40} {
		e := exposition(t, awkwardSnapshot(n))
		want := scrapeDurationLine.ReplaceAll(encode(t, e), nil)
		page, err := e.AppendText([]byte("prefix\n"))
		if err != nil {
			t.Fatal(err)
		}
		got, ok := bytes.CutPrefix(page, []byte("prefix\n"))
		if !ok {
			t.Fatalf("AppendText did not append: %.40q", page)
		}
		got = scrapeDurationLine.ReplaceAll(got, nil)
		if !bytes.Equal(got, want) {
			t.Errorf("%d containers: the text page differs from the encoded families\n%s", n, firstDifference(got, want))
		}
		for _, s := range []string{`pod="we\"ird\\pod"`, `container="line\nbreak"`, " +Inf\n", " NaN\n", " -1\n", "\n# TYPE zzz_last gauge\nzzz_last 3\n"} {
			if !bytes.Contains(got, []byte(s)) {
				t.Errorf("%d containers: the page lacks %q", n, s)
			}
		}
	}
}

// Without a snapshot yet, the page is the other collectors' and the agent's
// readiness, as gathering gives.
func TestExpositionBeforeFirstCollection(t *testing.T) {
	e := exposition(t, nil)
	page, err := e.AppendText(nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := encode(t, e); !bytes.Equal(page, want) {
		t.Errorf("page before the first collection differs\n%s", firstDifference(page, want))
	}
}

// firstDifference shows where two pages part.
func firstDifference(got, want []byte) string {
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	from := max(0, i-200)
	return fmt.Sprintf("at byte %d:\ngot:  %q\nwant: %q", i, got[from:min(len(got), i+200)], want[from:min(len(want), i+200)])
}
