// Command benchdetect replays the labelled corpus through leakwatch's
// detector and two baselines, prints a side-by-side table, and exits 1 when
// leakwatch misses its targets: no false positive on a non-leak series
// (turning leaking once counts), recall of at least 95%, a 1 MiB/s leak
// detected within 3 minutes of its start and a 12 KiB/s one within 4 hours.
//
//	go run ./test/benchdetect [-corpus test/corpus] [-v] [-real test/corpus/real]
//	go run ./test/benchdetect -seeds 32 [-first-seed 1] [-v]
//
// With -seeds N it generates the corpus in memory for seeds 1..N (or from
// -first-seed on) instead
// (package corpusgen, the committed corpus's generator), prints totals over
// all of them and exits 1 unless leakwatch has no false positive, a recall
// of at least 95%, 95% of its 1 MiB/s leaks found within 3 minutes and all
// within 3m30s, and all 12 KiB/s leaks within 4 hours. -v then lists the
// series where leakwatch misses, or comes close to missing, its targets.
//
// With -real DIR it then replays the traces recorded from real runtimes in
// DIR (test/corpus/real: see its README) the same way, one line per trace,
// and exits 1 as well when leakwatch misses the same targets there. A
// target about a leak rate (1 MiB/s, 12 KiB/s) holds only where the corpus
// has series of that rate.
//
// With -production and -seeds N it generates the production family
// (corpusgen.Production: long and load-driven GC cycles, daily cycles, heap
// expansion, high-water marks, queues, caches, leak shapes) for seeds
// -first-seed.. in memory on all cores instead, prints precision, recall,
// false alarms and detection delays (median, p90) per shape family and
// overall for every method, then one PASS/MISS line per target of issue 13;
// then replays -corpus (the old corpus; -corpus "" to skip) and -real as
// above. It exits 1 when any target is missed. `make bench-detect` runs it
// on 100 seeds (1000..1099) the detector was not tuned on (it is tuned on
// 1..20). To look at one seed's series, write them with
// `go run ./test/corpus/gen -production -seed N -out DIR`.
//
// The baselines are what alerting rules commonly do, each with the usual
// `for: 5m` pending period so that one noisy evaluation does not fire:
//   - predict_linear: least squares over the last hour, projected 4 hours
//     ahead, fires when the projection exceeds the limit;
//   - growth_pct: least squares over the last hour (once an hour of data
//     exists), fires when it grows more than 10% of the window mean per hour.
package main

import (
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/leakwatch/leakwatch/pkg/detect"
	"github.com/leakwatch/leakwatch/test/corpus/corpusgen"
)

type label struct {
	seed      uint64 // multi-seed mode only
	file      string
	leak      bool
	leakStart float64
	rate      float64
	maxDetect float64
}

// method turns a series into the time of its first positive verdict
// (seconds since the first point), or NaN if it never fires.
type method struct {
	name  string
	first func(s []detect.Sample) float64
}

func main() {
	dir := flag.String("corpus", "test/corpus", "corpus directory (with labels.csv)")
	verbose := flag.Bool("v", false, "print one line per series (with -seeds: one per leakwatch miss)")
	seeds := flag.Int("seeds", 0, "generate the corpus in memory for N seeds and report totals over them, instead of replaying -corpus")
	firstSeed := flag.Uint64("first-seed", 1, "with -seeds: the first seed")
	production := flag.Bool("production", false, "with -seeds: generate the production family, then replay -corpus (if set) and -real")
	real := flag.String("real", "", "then replay the traces recorded from real runtimes in these directories (comma-separated, each with labels.csv), one line per trace")
	flag.Parse()
	var ok bool
	var err error
	switch {
	case *production && *seeds > 0:
		ok = runProduction(os.Stdout, *firstSeed, *seeds, *verbose)
		if *dir != "" {
			fmt.Printf("\nold corpus (%s):\n", *dir)
			var oldOK bool
			oldOK, err = run(os.Stdout, *dir, false)
			ok = ok && oldOK
		}
	case *seeds > 0:
		ok = runSeeds(os.Stdout, *firstSeed, *seeds, *verbose)
	default:
		ok, err = run(os.Stdout, *dir, *verbose)
	}
	for _, d := range strings.Split(*real, ",") {
		if err != nil || d == "" {
			break
		}
		fmt.Printf("\nreal traces (%s):\n", d)
		var realOK bool
		realOK, err = run(os.Stdout, d, true)
		ok = ok && realOK
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchdetect:", err)
		os.Exit(2)
	}
	if !ok {
		os.Exit(1)
	}
}

var methods = []method{
	{"leakwatch", func(s []detect.Sample) float64 { return leakwatch(s, detect.DefaultConfig().Persistence) }},
	{"leakwatch_p0", func(s []detect.Sample) float64 { return leakwatch(s, 0) }},
	{"predict_linear", func(s []detect.Sample) float64 { return baseline(s, predictLinear) }},
	{"growth_pct", func(s []detect.Sample) float64 { return baseline(s, growthPct) }},
}

func run(w io.Writer, dir string, verbose bool) (bool, error) {
	labels, err := readLabels(filepath.Join(dir, "labels.csv"))
	if err != nil {
		return false, err
	}
	// first[m][i]: first positive verdict of method m on series i.
	first := make([][]float64, len(methods))
	for _, l := range labels {
		series, err := detect.ReadCSVFile(filepath.Join(dir, l.file))
		if err != nil {
			return false, fmt.Errorf("%s: %w", l.file, err)
		}
		for m := range methods {
			first[m] = append(first[m], methods[m].first(series))
		}
	}
	if verbose {
		fmt.Fprintf(w, "%-28s %-5s %10s", "series", "leak", "target")
		for _, m := range methods {
			fmt.Fprintf(w, " %15s", m.name)
		}
		fmt.Fprintln(w)
		for i, l := range labels {
			fmt.Fprintf(w, "%-28s %-5t %10s", strings.TrimSuffix(l.file, ".csv"), l.leak, dur(l.maxDetect, l.leak))
			for m := range methods {
				fmt.Fprintf(w, " %15s", outcome(l, first[m][i]))
			}
			fmt.Fprintln(w)
		}
		fmt.Fprintln(w)
	}

	fmt.Fprintf(w, "%-15s %9s %7s %8s %11s %13s %13s\n", "detector", "precision", "recall", "FP/neg", "median det", "1MiB/s det", "12KiB/s det")
	allOK := true
	for m, meth := range methods {
		st := score(labels, first[m])
		fmt.Fprintf(w, "%-15s %9.2f %7.2f %8s %11s %13s %13s\n", meth.name, st.precision, st.recall,
			fmt.Sprintf("%d/%d", st.fp, st.negatives), dur(st.median, true), worstOf(st.worst1MiB, st.n1MiB), worstOf(st.worst12KiB, st.n12KiB))
		if m == 0 {
			var miss []string
			if st.fp > 0 {
				miss = append(miss, fmt.Sprintf("%d false positives", st.fp))
			}
			if st.recall < 0.95 {
				miss = append(miss, fmt.Sprintf("recall %.2f < 0.95", st.recall))
			}
			if st.n1MiB > 0 && !(st.worst1MiB <= 180) {
				miss = append(miss, "1 MiB/s leak not detected within 3m")
			}
			if st.n12KiB > 0 && !(st.worst12KiB <= 4*3600) {
				miss = append(miss, "12 KiB/s leak not detected within 4h")
			}
			if len(miss) > 0 {
				allOK = false
				fmt.Fprintf(w, "\nleakwatch misses its targets: %s\n", strings.Join(miss, "; "))
			}
		}
	}
	fmt.Fprintln(w, "\ndetection times are worst cases over the 1 MiB/s and 12 KiB/s series, from the leak start; - = missed")
	return allOK, nil
}

type stats struct {
	precision, recall             float64
	fp, negatives                 int
	median, worst1MiB, worst12KiB float64
	// For the multi-seed table.
	n1MiB, within3m1MiB, n12KiB int
	p951MiB, p9512KiB           float64
}

// score counts a leak series as found when the first positive verdict comes
// after the leak started; a positive verdict before it is a false positive,
// as is any on a non-leak series.
func score(labels []label, first []float64) stats {
	var st stats
	var tp, positives int
	var times, t1MiB, t12KiB []float64
	for i, l := range labels {
		f := first[i]
		if !l.leak {
			st.negatives++
			if !math.IsNaN(f) {
				st.fp++
			}
			continue
		}
		positives++
		det := math.NaN()
		switch {
		case math.IsNaN(f):
		case f < l.leakStart:
			st.fp++
		default:
			tp++
			det = f - l.leakStart
			times = append(times, det)
		}
		// NaN (missed) poisons the worst case, which is what we want.
		switch l.rate {
		case 1 << 20:
			st.worst1MiB = worst(st.worst1MiB, det)
			t1MiB = append(t1MiB, det)
			st.n1MiB++
			if det <= 180 {
				st.within3m1MiB++
			}
		case 12 << 10:
			st.worst12KiB = worst(st.worst12KiB, det)
			t12KiB = append(t12KiB, det)
			st.n12KiB++
		}
	}
	if tp+st.fp > 0 {
		st.precision = float64(tp) / float64(tp+st.fp)
	}
	if positives > 0 {
		st.recall = float64(tp) / float64(positives)
	}
	st.p951MiB, st.p9512KiB = p95(t1MiB), p95(t12KiB)
	st.median = math.NaN()
	if len(times) > 0 {
		slices.Sort(times)
		st.median = times[len(times)/2]
		if len(times)%2 == 0 {
			st.median = (times[len(times)/2-1] + times[len(times)/2]) / 2
		}
	}
	return st
}

// worstOf prints a worst detection time over n series, n/a when there are none.
func worstOf(secs float64, n int) string {
	if n == 0 {
		return "n/a"
	}
	return dur(secs, true)
}

func worst(a, b float64) float64 {
	if math.IsNaN(a) || math.IsNaN(b) {
		return math.NaN()
	}
	return max(a, b)
}

func outcome(l label, f float64) string {
	switch {
	case math.IsNaN(f) && l.leak:
		return "missed"
	case math.IsNaN(f):
		return "ok"
	case !l.leak || f < l.leakStart:
		return "FP@" + dur(f, true)
	}
	return dur(f-l.leakStart, true)
}

func dur(secs float64, known bool) string {
	if !known || math.IsNaN(secs) {
		return "-"
	}
	return time.Duration(secs * float64(time.Second)).Round(time.Second).String()
}

// leakwatch replays s through the detector with the default settings and
// the given Config.Persistence.
func leakwatch(s []detect.Sample, persistence time.Duration) float64 {
	cfg := detect.DefaultConfig()
	cfg.Persistence = persistence
	d, err := detect.New(cfg)
	if err != nil {
		panic(err)
	}
	t0 := s[0].T
	for _, p := range s {
		v := d.Observe(detect.Point{T: time.Unix(0, 0).Add(time.Duration((p.T - t0) * float64(time.Second))), Bytes: p.Bytes, Limit: p.Limit})
		if v.Leaking {
			return p.T - t0
		}
	}
	return math.NaN()
}

const (
	window  = 3600.0 // seconds of least squares
	pending = 300.0  // `for: 5m`
)

// fit is a least-squares line over a window of points.
type fit struct {
	n, slope, intercept, meanY, span float64
}

// baseline slides a 1 h least-squares window and fires once rule has held
// for the pending period.
func baseline(s []detect.Sample, rule func(f fit, now, limit float64) bool) float64 {
	t0 := s[0].T
	var sx, sy, sxx, sxy float64
	lo := 0
	since := math.NaN()
	for i, p := range s {
		x := p.T - t0
		sx, sy, sxx, sxy = sx+x, sy+p.Bytes, sxx+x*x, sxy+x*p.Bytes
		for s[lo].T-t0 <= x-window {
			ox := s[lo].T - t0
			sx, sy, sxx, sxy = sx-ox, sy-s[lo].Bytes, sxx-ox*ox, sxy-ox*s[lo].Bytes
			lo++
		}
		n := float64(i - lo + 1)
		den := n*sxx - sx*sx
		if n < 2 || den <= 0 {
			continue
		}
		slope := (n*sxy - sx*sy) / den
		f := fit{n: n, slope: slope, intercept: (sy - slope*sx) / n, meanY: sy / n, span: x - (s[lo].T - t0)}
		if !rule(f, x, p.Limit) {
			since = math.NaN()
			continue
		}
		if math.IsNaN(since) {
			since = x
		}
		if x-since >= pending {
			return x
		}
	}
	return math.NaN()
}

// predictLinear: predict_linear(bytes[1h], 4*3600) > limit.
func predictLinear(f fit, now, limit float64) bool {
	return limit > 0 && f.intercept+f.slope*(now+4*3600) > limit
}

// growthPct: the hourly growth of the fit exceeds 10% of the mean, once
// the window holds (nearly) an hour.
func growthPct(f fit, _, _ float64) bool {
	return f.span >= window-60 && f.meanY > 0 && f.slope*3600/f.meanY > 0.10
}

// readLabels reads the manifest written by test/corpus/gen.
func readLabels(path string) ([]label, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	var out []label
	for i, line := range lines[1:] {
		f := strings.Split(line, ",")
		if len(f) != 5 {
			return nil, fmt.Errorf("%s: line %d: want 5 fields, got %d", path, i+2, len(f))
		}
		l := label{file: f[0], leak: f[1] == "true"}
		for j, dst := range []*float64{&l.leakStart, &l.rate, &l.maxDetect} {
			if *dst, err = strconv.ParseFloat(f[2+j], 64); err != nil {
				return nil, fmt.Errorf("%s: line %d: %w", path, i+2, err)
			}
		}
		out = append(out, l)
	}
	return out, nil
}

// runSeeds replays the corpus generated for seeds from..from+n-1 through
// every method and prints totals over all the series.
func runSeeds(w io.Writer, from uint64, n int, verbose bool) bool {
	var labels []label
	first := make([][]float64, len(methods))
	for seed := from; seed < from+uint64(n); seed++ {
		for _, gs := range corpusgen.Generate(seed) {
			labels = append(labels, label{seed: seed, file: gs.File, leak: gs.Leak, leakStart: gs.LeakStart, rate: gs.Rate, maxDetect: gs.MaxDetect})
			series := make([]detect.Sample, len(gs.Points))
			for i, p := range gs.Points {
				series[i] = detect.Sample{T: p.T, Bytes: p.Bytes, Limit: p.Limit, Line: i + 2}
			}
			for m := range methods {
				first[m] = append(first[m], methods[m].first(series))
			}
		}
	}
	if verbose {
		// leakwatch's misses, and its 1 MiB/s detections slower than 2m50s.
		for i, l := range labels {
			f := first[0][i]
			late := l.leak && !math.IsNaN(f) && f >= l.leakStart && (f-l.leakStart > l.maxDetect || (l.rate == 1<<20 && f-l.leakStart > 170))
			if late || (!l.leak && !math.IsNaN(f)) || (l.leak && (math.IsNaN(f) || f < l.leakStart)) {
				fmt.Fprintf(w, "seed %-3d %-28s target %-8s leakwatch %s\n", l.seed, strings.TrimSuffix(l.file, ".csv"), dur(l.maxDetect, l.leak), outcome(l, f))
			}
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "seeds %d..%d: %d series\n", from, from+uint64(n)-1, len(labels))
	fmt.Fprintf(w, "%-15s %9s %7s %9s %10s %9s %9s %11s %11s\n", "detector", "precision", "recall", "FP/neg", "1MiB/s≤3m", "1MiB p95", "1MiB max", "12KiB p95", "12KiB max")
	allOK := true
	for m, meth := range methods {
		st := score(labels, first[m])
		fmt.Fprintf(w, "%-15s %9.2f %7.3f %9s %10s %9s %9s %11s %11s\n", meth.name, st.precision, st.recall,
			fmt.Sprintf("%d/%d", st.fp, st.negatives), fmt.Sprintf("%d/%d", st.within3m1MiB, st.n1MiB),
			dur(st.p951MiB, true), dur(st.worst1MiB, true), dur(st.p9512KiB, true), dur(st.worst12KiB, true))
		if m != 0 {
			continue
		}
		var miss []string
		if st.fp > 0 {
			miss = append(miss, fmt.Sprintf("%d false positives", st.fp))
		}
		if st.recall < 0.95 {
			miss = append(miss, fmt.Sprintf("recall %.3f < 0.95", st.recall))
		}
		if float64(st.within3m1MiB) < 0.95*float64(st.n1MiB) {
			miss = append(miss, "fewer than 95% of 1 MiB/s leaks detected within 3m")
		}
		if !(st.worst1MiB <= 210) {
			miss = append(miss, "a 1 MiB/s leak not detected within 3m30s")
		}
		if !(st.worst12KiB <= 4*3600) {
			miss = append(miss, "a 12 KiB/s leak not detected within 4h")
		}
		if len(miss) > 0 {
			allOK = false
			fmt.Fprintf(w, "\nleakwatch misses its targets: %s\n\n", strings.Join(miss, "; "))
		}
	}
	fmt.Fprintln(w, "\ndetection times are from the leak start, over all seeds (p95: nearest rank); - = some missed")
	return allOK
}

// p95 is the nearest-rank 95th percentile of ts; NaN if any is NaN (missed).
func p95(ts []float64) float64 {
	if len(ts) == 0 {
		return math.NaN()
	}
	s := slices.Clone(ts)
	for _, v := range s {
		if math.IsNaN(v) {
			return math.NaN()
		}
	}
	slices.Sort(s)
	return s[int(math.Ceil(0.95*float64(len(s))))-1]
}
