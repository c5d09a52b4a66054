package corpusgen

import (
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
)

// Target classes of a production label.
const (
	TargetNone  = ""      // no leak
	TargetFast  = "fast"  // 1 MiB/s
	TargetSlow  = "slow"  // 12 KiB/s
	TargetDaily = "daily" // a leak under a daily cycle
	TargetOther = "other" // leaks with no target of their own in the issue
)

// ProdLabel labels one production series.
type ProdLabel struct {
	Label
	Family string  // shape family (gc_long, daily, leak_oom, …)
	Target string  // target class: TargetFast, TargetSlow, TargetDaily, TargetOther or TargetNone
	Cycle  float64 // longest GC period, seconds (0 for none)
}

// ProdSeries is one labelled production series.
type ProdSeries struct {
	ProdLabel
	Points []Point
}

const day = 24 * hour

// prod describes one production series; point() simulates it step by step
// because GC cycles and restarts carry state.
type prod struct {
	name, family string
	duration     float64
	base, limit  float64
	noise        float64
	load         func(t float64) float64 // traffic multiplier around 1; nil for 1
	gcPeriod     float64                 // base GC period, 0 for none
	gcJitter     float64                 // each cycle's period is drawn ×(1±gcJitter)
	gcAmp        float64
	gcByLoad     bool                    // period divided by load, amplitude times load
	baseByLoad   bool                    // base times load (daily cycles)
	shape        func(t float64) float64 // added; nil for none
	leakStart    float64
	rate         float64                                   // mean leak rate, bytes/s; 0 for none
	leak         func(since float64, r *rand.Rand) float64 // bytes leaked this step, since the start; nil = linear
	leakByLoad   bool                                      // the leak's step times load (traffic-proportional)
	oom          bool                                      // restart when the total exceeds the limit
	target       string
	cycle        float64 // longest GC period, for the label
}

// Production returns the production family for seed, in a fixed order.
func Production(seed uint64) []ProdSeries {
	defs := prodDefs(rand.New(rand.NewPCG(seed, 0x9d0c)))
	out := make([]ProdSeries, len(defs))
	for i, p := range defs {
		out[i] = ProdSeries{ProdLabel: p.label(), Points: p.points(seriesRand(seed, i))}
	}
	return out
}

// seriesRand is the generator of the i-th series' own draws (GC jitter,
// leak steps, noise).
func seriesRand(seed uint64, i int) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x1000+uint64(i))) }

func uniform(r *rand.Rand, lo, hi float64) float64 { return lo + (hi-lo)*r.Float64() }

func logUniform(r *rand.Rand, lo, hi float64) float64 {
	return math.Exp(uniform(r, math.Log(lo), math.Log(hi)))
}

// loadCurve is traffic around 1: two sinusoids of 40 min–3 h with a total
// swing of ±swing.
func loadCurve(r *rand.Rand, swing float64) func(float64) float64 {
	p1, p2 := uniform(r, 40*minute, 3*hour), uniform(r, 40*minute, 3*hour)
	f1, f2 := r.Float64()*2*math.Pi, r.Float64()*2*math.Pi
	w := r.Float64()
	return func(t float64) float64 {
		return 1 + swing*(w*math.Sin(2*math.Pi*t/p1+f1)+(1-w)*math.Sin(2*math.Pi*t/p2+f2))
	}
}

// dailyCurve is a daily cycle of ±amp (with a second harmonic, peaking in the
// afternoon) and weekends lower by weekend.
func dailyCurve(r *rand.Rand, amp, weekend float64) func(float64) float64 {
	phase := r.Float64() * 2 * math.Pi
	h2 := uniform(r, 0, 0.3)
	firstDay := r.IntN(7)
	return func(t float64) float64 {
		x := 2 * math.Pi * t / day
		v := 1 + amp*(math.Sin(x+phase)+h2*math.Sin(2*x+phase))/(1+h2)
		// weekend: a smooth dip over days 5 and 6 of the week
		d := math.Mod(t/day+float64(firstDay), 7)
		if d >= 5 {
			v -= weekend * math.Sin(math.Pi*(d-5)/2)
		}
		return v
	}
}

// gcUnder returns a short GC sawtooth (30 s–2 min) for the families whose
// subject is not the GC.
func gcUnder(r *rand.Rand, base float64) (period, amp float64) {
	return logUniform(r, 30, 2*minute), base * uniform(r, 0.1, 0.5)
}

func prodDefs(r *rand.Rand) []prod {
	var out []prod
	// leaks adds the healthy series p and its fast and slow leaking variants.
	leaks := func(p prod) {
		p.target = TargetNone
		p.duration = 6 * hour
		out = append(out, p)
		fast := p
		fast.name, fast.rate, fast.target = p.family+"_leak_fast", mib, TargetFast
		fast.leakStart = uniform(r, 30*minute, 2*hour)
		fast.duration = fast.leakStart + 2*hour
		fast.limit = 0 // room for the leak: set from the series
		out = append(out, fast)
		slow := p
		slow.name, slow.rate, slow.target = p.family+"_leak_slow", 12*kib, TargetSlow
		slow.leakStart = uniform(r, 30*minute, 2*hour)
		slow.duration = slow.leakStart + 5*hour
		out = append(out, slow)
	}
	named := func(family string, p prod) prod {
		p.name, p.family = family, family
		p.noise = p.base * uniform(r, 0.002, 0.01)
		p.limit = math.Max(4*gib, 2*p.base+2*gib)
		return p
	}

	// gc_long
	{
		base := logUniform(r, 128*mib, 2*gib)
		period := logUniform(r, 20, 15*minute)
		leaks(named("gc_long", prod{base: base, gcPeriod: period, gcJitter: 0.25,
			gcAmp: logUniform(r, 64*mib, gib), cycle: period * 1.25}))
	}
	// gc_load
	{
		base := logUniform(r, 128*mib, 2*gib)
		swing := uniform(r, 0.2, 0.5)
		period := logUniform(r, minute, 5*minute)
		leaks(named("gc_load", prod{base: base, gcPeriod: period, gcJitter: 0.15, gcByLoad: true,
			gcAmp: logUniform(r, 64*mib, 768*mib), load: loadCurve(r, swing),
			cycle: period * 1.15 / (1 - swing)}))
	}
	// heap_expand
	{
		base := logUniform(r, 64*mib, 512*mib)
		capSize := logUniform(r, 256*mib, 1.5*gib)
		end := uniform(r, 10*minute, 40*minute)
		n := 3 + r.IntN(6)
		at := make([]float64, n)
		for i := range at {
			at[i] = uniform(r, 0, end)
		}
		at[n-1] = end
		period, amp := gcUnder(r, capSize)
		leaks(named("heap_expand", prod{base: base, gcPeriod: period, gcJitter: 0.1, gcAmp: amp, cycle: period * 1.1,
			shape: func(t float64) float64 {
				k := 0
				for _, a := range at {
					if t >= a {
						k++
					}
				}
				return capSize * float64(k) / float64(n)
			}}))
	}
	// highwater
	{
		base := logUniform(r, 128*mib, gib)
		every := uniform(r, 10*minute, 60*minute)
		length := uniform(r, 2*minute, 10*minute)
		maxBurst := uniform(r, 100*mib, 600*mib)
		// bursts[i]: start and size; the resident size is the largest burst so
		// far, plus the burst in progress.
		type burst struct{ at, size float64 }
		var bursts []burst
		for t := uniform(r, 0, every); t < 8*hour; t += every * uniform(r, 0.3, 1.7) {
			bursts = append(bursts, burst{t, maxBurst * r.Float64()})
		}
		period, amp := gcUnder(r, base)
		leaks(named("highwater", prod{base: base, gcPeriod: period, gcJitter: 0.1, gcAmp: amp, cycle: period * 1.1,
			shape: func(t float64) float64 {
				hw := 0.0
				for _, b := range bursts {
					if b.at > t {
						break
					}
					// the burst ramps up over its first half and is then freed,
					// but the allocator keeps what it reached
					hw = math.Max(hw, b.size*math.Min((t-b.at)/(length/2), 1))
				}
				return hw
			}}))
	}
	// queue
	{
		base := logUniform(r, 128*mib, gib)
		every := uniform(r, 20*minute, 60*minute)
		build := uniform(r, 5*minute, math.Min(20*minute, every/2))
		drain := uniform(r, minute, 10*minute)
		size := uniform(r, 100*mib, 500*mib)
		var starts []float64
		for t := uniform(r, 0, every); t < 8*hour; t += every * uniform(r, 0.8, 1.2) {
			starts = append(starts, t)
		}
		period, amp := gcUnder(r, base)
		leaks(named("queue", prod{base: base, gcPeriod: period, gcJitter: 0.1, gcAmp: amp, cycle: period * 1.1,
			shape: func(t float64) float64 {
				v := 0.0
				for _, s := range starts {
					switch d := t - s; {
					case d < 0:
					case d < build:
						v = math.Max(v, size*d/build)
					case d < build+drain:
						v = math.Max(v, size*(1-(d-build)/drain))
					}
				}
				return v
			}}))
	}
	// cache
	{
		base := logUniform(r, 128*mib, gib)
		period, amp := gcUnder(r, base)
		leaks(named("cache", prod{base: base, gcPeriod: period, gcJitter: 0.1, gcAmp: amp, cycle: period * 1.1,
			shape: saturating(uniform(r, 0, 20*minute), logUniform(r, minute, 30*minute), logUniform(r, 64*mib, gib))}))
	}
	// daily: healthy over 7 days, and a slow leak under the cycle
	{
		base := logUniform(r, 256*mib, 2*gib)
		period, amp := gcUnder(r, base)
		p := named("daily", prod{base: base, gcPeriod: period, gcJitter: 0.1, gcAmp: amp, cycle: period * 1.1,
			baseByLoad: true, load: dailyCurve(r, uniform(r, 0.10, 0.25), uniform(r, 0, 0.10)), duration: 7 * day})
		out = append(out, p)
		leak := p
		leak.name, leak.rate, leak.target = "daily_leak_slow", 12*kib, TargetDaily
		leak.leakStart = uniform(r, day, 2*day)
		leak.duration = leak.leakStart + day
		leak.load = dailyCurve(r, uniform(r, 0.10, 0.25), uniform(r, 0, 0.10))
		out = append(out, leak)
	}
	// leaks of other shapes
	gcLeak := func(family string, p prod) {
		base := logUniform(r, 128*mib, gib)
		period, amp := gcUnder(r, base)
		p.base, p.gcPeriod, p.gcJitter, p.gcAmp, p.cycle = base, period, 0.1, amp, period*1.1
		p = named(family, p)
		if p.leakStart == 0 {
			p.leakStart = uniform(r, 30*minute, 2*hour)
		}
		if p.duration == 0 {
			p.duration = p.leakStart + 2*hour
		}
		if !p.oom {
			p.limit = 0 // room for the leak: set from the series
		}
		out = append(out, p)
	}
	{
		load := loadCurve(r, uniform(r, 0.2, 0.5))
		gcLeak("leak_traffic", prod{rate: mib, target: TargetFast, load: load, leakByLoad: true})
	}
	{
		double := uniform(r, 30*minute, 90*minute)
		gcLeak("leak_accel", prod{rate: 12 * kib, target: TargetOther,
			leak:     func(since float64, _ *rand.Rand) float64 { return 12 * kib * interval * math.Exp2(since/double) },
			duration: 0})
		out[len(out)-1].duration = out[len(out)-1].leakStart + 3*hour
	}
	{
		every := uniform(r, minute, 10*minute)
		size := uniform(r, 2*mib, 16*mib)
		gcLeak("leak_steps", prod{rate: size / every, target: TargetOther,
			leak: func(since float64, r *rand.Rand) float64 {
				// a step falls in this interval with probability interval/every
				if r.Float64() < interval/every {
					return size
				}
				return 0
			}})
	}
	{
		p := prod{rate: mib, target: TargetFast, oom: true, duration: 4 * hour}
		gcLeak("leak_oom", p)
		last := &out[len(out)-1]
		last.limit = last.base + last.gcAmp + uniform(r, 0.5*gib, gib)
	}
	for i := range out {
		if out[i].target == TargetNone {
			out[i].rate, out[i].leakStart = 0, 0
		}
	}
	return out
}

func (p prod) label() ProdLabel {
	l := Label{File: p.name + ".csv", Leak: p.rate > 0, LeakStart: p.leakStart, Rate: p.rate}
	switch p.target {
	case TargetFast:
		l.MaxDetect = 3 * minute
		if p.cycle > minute {
			l.MaxDetect = 2*p.cycle + 3*minute
		}
	case TargetSlow:
		l.MaxDetect = 4 * hour
	case TargetDaily:
		l.MaxDetect = 6 * hour
	case TargetOther:
		l.MaxDetect = maxDetect(p.rate)
	}
	return ProdLabel{Label: l, Family: p.family, Target: p.target, Cycle: p.cycle}
}

// points simulates the series. Random draws made while simulating (GC
// jitter, leak steps, noise) come from r, the series' own generator.
func (p prod) points(r *rand.Rand) []Point {
	out := make([]Point, 0, int(p.duration/interval)+1)
	load := p.load
	if load == nil {
		load = func(float64) float64 { return 1 }
	}
	gcPhase := r.Float64() // fraction of the current cycle done
	gcLen := p.gcPeriod * (1 + p.gcJitter*(2*r.Float64()-1))
	leaked := 0.0
	start := 0.0 // the current process's start (restarts after an OOM)
	limit := math.RoundToEven(p.limit)
	for t := 0.0; t <= p.duration; t += interval {
		local := t - start
		l := load(t)
		v := p.base
		if p.baseByLoad {
			v *= l
		}
		if start > 0 {
			// a restarted process grows from 5% to its working set in 2 minutes
			v *= 0.05 + 0.95*math.Min(local/(2*minute), 1)
		}
		if p.rate > 0 && t > p.leakStart {
			step := p.rate * interval
			if p.leak != nil {
				step = p.leak(t-p.leakStart, r)
			}
			if p.leakByLoad {
				step *= l
			}
			leaked += step
		}
		v += leaked
		if p.gcPeriod > 0 {
			amp := p.gcAmp
			if p.gcByLoad {
				amp *= l
			}
			v += amp * gcPhase
			period := gcLen
			if p.gcByLoad {
				period /= math.Max(l, 0.1)
			}
			gcPhase += interval / period
			for gcPhase >= 1 {
				gcPhase--
				gcLen = p.gcPeriod * (1 + p.gcJitter*(2*r.Float64()-1))
			}
		}
		if p.shape != nil {
			v += p.shape(local)
		}
		v += p.noise * r.NormFloat64()
		v = math.RoundToEven(math.Max(v, 0))
		if p.oom && v > limit {
			// killed at the limit: the point shows the fresh process
			start, leaked = t, 0
			v = math.RoundToEven(p.base * 0.05)
		}
		out = append(out, Point{T: t, Bytes: v, Limit: limit})
	}
	if limit == 0 {
		// a limit the series never reaches: a quarter above its peak, in MiB
		peak := 0.0
		for _, pt := range out {
			peak = math.Max(peak, pt.Bytes)
		}
		for i := range out {
			out[i].Limit = math.Ceil(peak*1.25/mib) * mib
		}
	}
	return out
}

// WriteProduction writes the production family for seed to dir, as Write
// writes the old corpus: one CSV file per series (columns t, bytes, limit)
// that `leakwatch analyze` reads, and labels.csv with the same columns as
// the old corpus's plus family, target and cycle.
func WriteProduction(dir string, seed uint64) error {
	labels, err := create(filepath.Join(dir, "labels.csv"))
	if err != nil {
		return err
	}
	fmt.Fprintln(labels.w, "file,leak,leak_start,rate,max_detect,family,target,cycle")
	for _, s := range Production(seed) {
		if err := writeSeries(filepath.Join(dir, s.File), s.Points); err != nil {
			labels.f.Close()
			return err
		}
		fmt.Fprintf(labels.w, "%s,%t,%g,%g,%g,%s,%s,%g\n", s.File, s.Leak, s.LeakStart, s.Rate, s.MaxDetect, s.Family, s.Target, s.Cycle)
	}
	return labels.close()
}
