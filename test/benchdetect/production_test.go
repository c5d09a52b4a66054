package main

import (
	"bytes"
	"math"
	"strings"
	"testing"

	"github.com/leakwatch/leakwatch/test/corpus/corpusgen"
)

func res(leak bool, start, maxDetect, first float64) prodResult {
	l := corpusgen.ProdLabel{Label: corpusgen.Label{Leak: leak, LeakStart: start, MaxDetect: maxDetect}}
	return prodResult{label: l, first: []float64{first}}
}

// A verdict before a leak's start is a false alarm, not a detection; a
// leak found after its target counts for recall but not in target.
func TestFiguresScoreByLabel(t *testing.T) {
	nan := math.NaN()
	all := []prodResult{
		res(false, 0, 0, nan),      // healthy, quiet
		res(false, 0, 0, 100),      // healthy, flagged
		res(true, 1000, 300, 1200), // found in 200 s
		res(true, 1000, 300, 1600), // found late, in 600 s
		res(true, 1000, 300, 900),  // flagged before the start
		res(true, 1000, 300, nan),  // missed
	}
	fs := figures(all, 0, func(prodResult) bool { return true })
	if fs.fp != 2 || fs.negatives != 2 || fs.positives != 4 || fs.inTarget != 1 {
		t.Errorf("fp %d negatives %d positives %d in target %d; want 2, 2, 4, 1", fs.fp, fs.negatives, fs.positives, fs.inTarget)
	}
	if fs.precision != 0.5 || fs.recall != 0.5 {
		t.Errorf("precision %v recall %v; want 0.5, 0.5", fs.precision, fs.recall)
	}
	if fs.median != 600 || fs.p90 != 600 {
		t.Errorf("median %v p90 %v; want 600, 600 (upper median, nearest rank)", fs.median, fs.p90)
	}
}

// The production report names every family and prints one PASS/MISS line
// per target of issue 13.
func TestProductionReport(t *testing.T) {
	var out bytes.Buffer
	runProduction(&out, 1, 1, false)
	report := out.String()
	for _, s := range corpusgen.Production(1) {
		if !strings.Contains(report, "\n"+s.Family+" ") {
			t.Errorf("family %s missing from the report", s.Family)
		}
	}
	lines := 0
	for _, l := range strings.Split(report, "\n") {
		if strings.HasPrefix(l, "PASS  ") || strings.HasPrefix(l, "MISS  ") {
			lines++
		}
	}
	if lines != 6 {
		t.Errorf("%d PASS/MISS lines, want 6 (precision, recall, fast, slow, daily leaks, healthy daily):\n%s", lines, report)
	}
}
