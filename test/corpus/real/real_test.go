// Package real holds memory traces recorded from real runtimes (see
// README.md); its test checks that each trace is what its label says.
package real

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/leakwatch/leakwatch/pkg/detect"
)

const (
	interval   = 10.0 // seconds between points, as recorded
	minSpan    = 40 * 60
	floorWidth = 300.0 // seconds: the floor is the minimum of each 5-minute window
	mib        = 1 << 20
)

type label struct {
	file      string
	leak      bool
	leakStart float64
	rate      float64 // bytes a second kept by construction
}

func readLabels(t *testing.T, dir string) []label {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "labels.csv"))
	if err != nil {
		t.Fatal(err)
	}
	var out []label
	for i, line := range strings.Split(strings.TrimSpace(string(b)), "\n")[1:] {
		f := strings.Split(line, ",")
		if len(f) != 5 {
			t.Fatalf("labels.csv line %d: %d fields", i+2, len(f))
		}
		l := label{file: f[0], leak: f[1] == "true"}
		var err1, err2 error
		l.leakStart, err1 = strconv.ParseFloat(f[2], 64)
		l.rate, err2 = strconv.ParseFloat(f[3], 64)
		if err := errors.Join(err1, err2); err != nil {
			t.Fatalf("labels.csv line %d: %v", i+2, err)
		}
		out = append(out, l)
	}
	return out
}

// floor is the minimum of each whole floorWidth window from t0 on, at the
// window's middle: the memory a leak holds shows in it, garbage between
// collections does not.
func floor(s []detect.Sample, t0 float64) (ts, bs []float64) {
	for lo := t0; ; lo += floorWidth {
		m := math.Inf(1)
		for _, p := range s {
			if p.T >= lo && p.T < lo+floorWidth {
				m = min(m, p.Bytes)
			}
		}
		if lo+floorWidth > s[len(s)-1].T+interval/2 || math.IsInf(m, 1) {
			return ts, bs
		}
		ts, bs = append(ts, lo+floorWidth/2), append(bs, m)
	}
}

// theilSen is the median of the pairwise slopes.
func theilSen(ts, bs []float64) float64 {
	var slopes []float64
	for i := range ts {
		for j := i + 1; j < len(ts); j++ {
			slopes = append(slopes, (bs[j]-bs[i])/(ts[j]-ts[i]))
		}
	}
	if len(slopes) == 0 {
		return math.NaN()
	}
	slices.Sort(slopes)
	return slopes[len(slopes)/2]
}

// TestTracesMatchLabels checks every labelled trace: recorded every 10 s
// for at least 40 minutes under a memory limit it stayed below, a leaking
// one's floor rising over the leak at no less than half the rate kept by
// construction (runtimes add overhead; none frees what is kept), a healthy
// one's floor over its last 30 minutes rising at less than twice the
// slowest leak's rate. With -v it prints the figures the README quotes.
// The second set (second/, recorded with SET=second) is checked against its
// own slowest leak.
func TestTracesMatchLabels(t *testing.T) {
	for _, dir := range []string{".", "second"} {
		t.Run(dir, func(t *testing.T) { checkDir(t, dir) })
	}
}

func checkDir(t *testing.T, dir string) {
	labels := readLabels(t, dir)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	slowest := math.Inf(1)
	for _, l := range labels {
		if l.leak {
			slowest = min(slowest, l.rate)
		}
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".csv") && e.Name() != "labels.csv" &&
			!slices.ContainsFunc(labels, func(l label) bool { return l.file == e.Name() }) {
			t.Errorf("%s has no row in labels.csv", e.Name())
		}
	}
	for _, l := range labels {
		t.Run(strings.TrimSuffix(l.file, ".csv"), func(t *testing.T) {
			s, err := detect.ReadCSVFile(filepath.Join(dir, l.file))
			if err != nil {
				t.Fatal(err)
			}
			span := s[len(s)-1].T - s[0].T
			var peak float64
			for i, p := range s {
				peak = max(peak, p.Bytes)
				if i > 0 && p.T-s[i-1].T > 1.5*interval {
					t.Errorf("gap of %.1fs before t=%.1f", p.T-s[i-1].T, p.T)
				}
				if p.Limit == 0 || p.Bytes >= p.Limit {
					t.Errorf("t=%.1f: %0.f bytes, limit %.0f", p.T, p.Bytes, p.Limit)
				}
			}
			if span < minSpan {
				t.Errorf("%.0f s recorded, want at least %d", span, minSpan)
			}
			// From the leak's start (600 s on every trace, healthy or not),
			// and over the last 30 minutes.
			warm := l.leakStart
			if !l.leak {
				warm = 600
			}
			slope := theilSen(floor(s, warm))
			last := theilSen(floor(s, s[len(s)-1].T-1800))
			t.Logf("%.1f min, %d points, %.0f MiB at 60 s, %.0f MiB at 600 s, %.0f MiB at the end, peak %.0f MiB; floor slope %.1f KiB/s from 600 s, %.1f KiB/s over the last 30 min (kept: %.0f KiB/s)",
				span/60, len(s), at(s, 60)/mib, at(s, 600)/mib, s[len(s)-1].Bytes/mib, peak/mib, slope/1024, last/1024, l.rate/1024)
			switch {
			case l.leak && !(slope >= 0.5*l.rate):
				t.Errorf("leaking trace: floor rises at %.1f KiB/s, want at least half of %.0f KiB/s", slope/1024, l.rate/1024)
			case !l.leak && !(last < slowest*2):
				// Not tighter: jvm-healthy's G1 still commits regions at
				// ~50 KiB/s an hour in (healthy by construction, see README).
				t.Errorf("healthy trace: floor rises at %.1f KiB/s over the last 30 min, want under %.1f KiB/s", last/1024, 2*slowest/1024)
			}
		})
	}
}

// at is the first value at or after t seconds.
func at(s []detect.Sample, t float64) float64 {
	for _, p := range s {
		if p.T >= t {
			return p.Bytes
		}
	}
	panic(fmt.Sprintf("no point at %.0f s", t))
}
