package corpusgen

import (
	"bufio"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
)

// DefaultSeed is the seed of the committed corpus.
const DefaultSeed uint64 = 0x1ea4a7c4

const (
	kib      = 1024.0
	mib      = 1024 * kib
	gib      = 1024 * mib
	interval = 10.0 // seconds
	minute   = 60.0
	hour     = 3600.0
)

// series describes one labelled series. The value at t is
// base + leak + sawtooth + shape(t) + noise, with restarts replacing the
// whole by a fresh warm-up.
type series struct {
	name      string
	duration  float64 // seconds
	base      float64
	limit     float64
	leakRate  float64 // bytes/s, 0 for none
	leakStart float64 // seconds
	sawPeriod float64 // GC cycle, 0 for none
	sawAmp    float64 // bytes collected each cycle
	noise     float64 // standard deviation of white noise
	shape     func(t float64) float64
	restart   float64 // restart period, 0 for none
}

func corpus() []series {
	var out []series
	add := func(s series) { out = append(out, s) }

	// Leaks, each after a flat period well past the container's warm-up.
	for _, v := range []struct {
		suffix     string
		saw, amp   float64
		noise      float64
		start, dur float64
	}{
		{"clean", 0, 0, 0, 30 * minute, hour},
		{"gc", minute, 128 * mib, 2 * mib, 30 * minute, hour},
		{"noise", 0, 0, 8 * mib, 30 * minute, hour},
		{"gc_noise", minute, 200 * mib, 4 * mib, 47*minute + 20, 1.5 * hour},
	} {
		add(series{name: "leak_1mib_" + v.suffix, duration: v.dur, base: 256 * mib, limit: 8 * gib,
			leakRate: mib, leakStart: v.start, sawPeriod: v.saw, sawAmp: v.amp, noise: v.noise})
	}
	add(series{name: "leak_512kib_gc", duration: 1.5 * hour, base: 300 * mib, limit: 4 * gib,
		leakRate: 512 * kib, leakStart: 40 * minute, sawPeriod: minute, sawAmp: 100 * mib, noise: 2 * mib})
	// A 45 s GC cycle sampled every 10 s aliases: the sampled troughs jitter
	// by up to a quarter of the amplitude, which costs the fast tier about one
	// more window (this series at 1 MiB/s is found in about 3m10s).
	add(series{name: "leak_512kib_gc45_noise", duration: 1.5 * hour, base: 300 * mib, limit: 4 * gib,
		leakRate: 512 * kib, leakStart: 41*minute + 30, sawPeriod: 45, sawAmp: 100 * mib, noise: 4 * mib})
	add(series{name: "leak_100kib_clean", duration: 3 * hour, base: 200 * mib, limit: 2 * gib,
		leakRate: 100 * kib, leakStart: hour})
	add(series{name: "leak_100kib_gc_noise", duration: 3 * hour, base: 200 * mib, limit: 2 * gib,
		leakRate: 100 * kib, leakStart: hour + 7*minute, sawPeriod: minute, sawAmp: 150 * mib, noise: 4 * mib})
	add(series{name: "leak_100kib_after_warmup", duration: 3 * hour, base: 20 * mib, limit: 2 * gib,
		leakRate: 100 * kib, leakStart: 40 * minute, noise: 2 * mib,
		shape: func(t float64) float64 { return 300 * mib * math.Min(t/(3*minute), 1) }})
	add(series{name: "leak_50kib_gc", duration: 4 * hour, base: 400 * mib, limit: 2 * gib,
		leakRate: 50 * kib, leakStart: hour, sawPeriod: minute, sawAmp: 200 * mib, noise: 2 * mib})
	add(series{name: "leak_25kib_noise", duration: 6 * hour, base: 300 * mib, limit: 2 * gib,
		leakRate: 25 * kib, leakStart: hour, noise: 4 * mib})
	for _, v := range []struct {
		suffix   string
		saw, amp float64
		noise    float64
		shape    func(float64) float64
	}{
		{"clean", 0, 0, 0, nil},
		{"gc", minute, 128 * mib, 0, nil},
		{"gc_noise", minute, 200 * mib, 4 * mib, nil},
		{"noise", 0, 0, 4 * mib, nil},
		{"spikes", 0, 0, 2 * mib, spikes(20*minute, 3*minute, 300*mib)},
	} {
		add(series{name: "leak_12kib_" + v.suffix, duration: 8 * hour, base: 300 * mib, limit: 1 * gib,
			leakRate: 12 * kib, leakStart: hour + 20*minute, sawPeriod: v.saw, sawAmp: v.amp, noise: v.noise, shape: v.shape})
	}

	// Patterns that are not leaks.
	flat := func(name string, s series) {
		s.name = name
		if s.duration == 0 {
			s.duration = 6 * hour
		}
		if s.limit == 0 {
			s.limit = 1 * gib
		}
		add(s)
	}
	flat("gc_sawtooth_60s", series{base: 200 * mib, sawPeriod: minute, sawAmp: 256 * mib})
	flat("gc_sawtooth_30s_noise", series{base: 200 * mib, sawPeriod: 30, sawAmp: 128 * mib, noise: 4 * mib})
	flat("gc_sawtooth_60s_large", series{base: 2 * gib, limit: 6 * gib, sawPeriod: minute, sawAmp: gib, noise: 16 * mib})
	// A cache filling at fast-tier rates with a time constant between about
	// 45 s and 3 min looks like a fast leak for the 3 minutes a fast leak
	// gets; this one fills faster, the next one slower.
	flat("cache_warmup_fast", series{base: 200 * mib, noise: 2 * mib,
		shape: saturating(30*minute, 30, 256*mib)})
	flat("cache_warmup_mid", series{base: 200 * mib, noise: 2 * mib,
		shape: saturating(40*minute, 5*minute, 64*mib)})
	flat("cache_warmup_slow_gc", series{base: 200 * mib, sawPeriod: minute, sawAmp: 100 * mib, noise: 2 * mib,
		shape: saturating(30*minute, 10*minute, 100*mib)})
	flat("step_up", series{base: 200 * mib, shape: step(2*hour, 200*mib)})
	flat("step_up_gc_noise", series{base: 200 * mib, sawPeriod: minute, sawAmp: 128 * mib, noise: 4 * mib,
		shape: step(2*hour+35, 300*mib)})
	flat("batch_spikes", series{base: 300 * mib, noise: 2 * mib, shape: spikes(20*minute, 3*minute, 300*mib)})
	flat("batch_spikes_gc_noise", series{base: 300 * mib, sawPeriod: minute, sawAmp: 100 * mib, noise: 4 * mib,
		shape: spikes(30*minute, 5*minute, 512*mib)})
	flat("restarts", series{base: 300 * mib, noise: 2 * mib, restart: 45 * minute})
	flat("restarts_gc", series{base: 300 * mib, sawPeriod: minute, sawAmp: 128 * mib, noise: 2 * mib, restart: 70 * minute})
	flat("flat_noise", series{base: 300 * mib, noise: 4 * mib})
	flat("flat_noise_large", series{base: 4 * gib, limit: 8 * gib, noise: 64 * mib})
	flat("warmup_growth_flat", series{base: 10 * mib, noise: 2 * mib,
		shape: func(t float64) float64 { return 400 * mib * math.Min(t/(4*minute), 1) }})
	flat("warmup_cache_gc", series{base: 10 * mib, sawPeriod: minute, sawAmp: 64 * mib, noise: 2 * mib,
		shape: saturating(0, 90, 500*mib)})
	return out
}

// saturating fills a cache of size amp from start with time constant tau.
func saturating(start, tau, amp float64) func(float64) float64 {
	return func(t float64) float64 {
		if t < start {
			return 0
		}
		return amp * (1 - math.Exp(-(t-start)/tau))
	}
}

func step(at, size float64) func(float64) float64 {
	return func(t float64) float64 {
		if t < at {
			return 0
		}
		return size
	}
}

// spikes adds size for length at the start of every period (a batch job).
func spikes(period, length, size float64) func(float64) float64 {
	return func(t float64) float64 {
		if t > period/2 && math.Mod(t-period/2, period) < length {
			return size
		}
		return 0
	}
}

// Label is one line of labels.csv.
type Label struct {
	File      string  // the series' file name, name.csv
	Leak      bool    // whether the series leaks
	LeakStart float64 // seconds since the first point; 0 for a non-leak
	Rate      float64 // leak rate in bytes/s; 0 for a non-leak
	MaxDetect float64 // detection-time target in seconds after LeakStart
}

// Point is one row of a series file, as the file holds it (bytes and limit
// rounded to whole bytes).
type Point struct {
	T, Bytes, Limit float64
}

// Series is one labelled series.
type Series struct {
	Label
	Points []Point
}

// Generate returns the corpus for seed, in manifest order.
func Generate(seed uint64) []Series {
	defs := corpus()
	out := make([]Series, len(defs))
	for i, s := range defs {
		out[i] = Series{Label: s.label(), Points: s.points(seed, uint64(i))}
	}
	return out
}

func (s series) label() Label {
	return Label{File: s.name + ".csv", Leak: s.leakRate > 0, LeakStart: s.leakStart, Rate: s.leakRate, MaxDetect: maxDetect(s.leakRate)}
}

// maxDetect is the detection-time target, in seconds after the leak start,
// for a leak rate: 3 minutes at 1 MiB/s, 4 hours at 12 KiB/s.
func maxDetect(rate float64) float64 {
	switch {
	case rate <= 0:
		return 0
	case rate >= mib:
		return 3 * minute
	case rate >= 256*kib:
		return 10 * minute
	case rate >= 64*kib:
		return 45 * minute
	}
	return 4 * hour
}

func (s series) points(seed, index uint64) []Point {
	rng := rand.New(rand.NewPCG(seed, index))
	phase := rng.Float64() * s.sawPeriod
	out := make([]Point, 0, int(s.duration/interval)+1)
	for t := 0.0; t <= s.duration; t += interval {
		local := t // time since the current process started
		if s.restart > 0 {
			local = math.Mod(t, s.restart)
		}
		v := s.base
		if s.restart > 0 {
			// a fresh process grows from 5% to its working set in 2 minutes
			v = s.base * (0.05 + 0.95*math.Min(local/(2*minute), 1))
		}
		if s.leakRate > 0 && t > s.leakStart {
			v += s.leakRate * (t - s.leakStart)
		}
		if s.sawPeriod > 0 {
			v += s.sawAmp * math.Mod(t+phase, s.sawPeriod) / s.sawPeriod
		}
		if s.shape != nil {
			v += s.shape(local)
		}
		v += s.noise * rng.NormFloat64()
		// Rounded as the file's %.0f rounds, so that a series read back from
		// its file equals the one generated in memory.
		out = append(out, Point{T: t, Bytes: math.RoundToEven(math.Max(v, 0)), Limit: math.RoundToEven(s.limit)})
	}
	return out
}

// Write writes the corpus for seed to dir: one CSV file per series
// (columns t, bytes, limit) and the manifest labels.csv.
func Write(dir string, seed uint64) error {
	labels, err := create(filepath.Join(dir, "labels.csv"))
	if err != nil {
		return err
	}
	fmt.Fprintln(labels.w, "file,leak,leak_start,rate,max_detect")
	for _, s := range Generate(seed) {
		if err := writeSeries(filepath.Join(dir, s.File), s.Points); err != nil {
			labels.f.Close()
			return err
		}
		fmt.Fprintf(labels.w, "%s,%t,%g,%g,%g\n", s.File, s.Leak, s.LeakStart, s.Rate, s.MaxDetect)
	}
	return labels.close()
}

func writeSeries(path string, pts []Point) error {
	f, err := create(path)
	if err != nil {
		return err
	}
	fmt.Fprintln(f.w, "t,bytes,limit")
	for _, p := range pts {
		fmt.Fprintf(f.w, "%g,%.0f,%.0f\n", p.T, p.Bytes, p.Limit)
	}
	return f.close()
}

type file struct {
	f *os.File
	w *bufio.Writer
}

func create(path string) (*file, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	return &file{f: f, w: bufio.NewWriter(f)}, nil
}

func (f *file) close() error {
	if err := f.w.Flush(); err != nil {
		f.f.Close()
		return err
	}
	return f.f.Close()
}
