package detect

import "math"

// The onset tier (TierOnset) finds slow growth that starts from a level the
// series held: a floor flat for at least onsetPre, then rising at a steady
// pace for at least onsetPost. It answers the case the other tiers leave to
// time: a leak of about 1 GB a day on a floor of a GiB or more is within
// the pace of a daily load cycle's rising half, so the persistence test
// holds it until the same hours of the next day are in the history
// (likeLoadCycle), and a leak that grows in lumps minutes apart fails its
// even-halves test over a 20-minute span. The shape the onset tier asks for
// is what a load cycle does not draw: a load cycle leaves its trough
// smoothly, accelerating, and a quadratic or a cubic follows it as closely
// as a hinge does; a leak turns from flat to its slope at once and keeps
// it.
//
// Over the floor of the last onsetWindow (minima over the series' cycle, as
// the history reads it), the test fits a hinge (flat until a time tau,
// then linear) by least squares and passes when:
//   - the growth after tau is at least MinGrowth and rises onsetNoises
//     times the scatter of the floor about the fit;
//   - the floor before tau is flat: its own slope over that part moves it
//     by at most two scatters and a tenth of the rise;
//   - the growth keeps its pace: the Theil-Sen slopes of the two halves
//     after tau are positive and within onsetEven of each other;
//   - the hinge fits clearly better than a quadratic over the same floor
//     (its squared error at most onsetHingeFit of the quadratic's) and no
//     worse than a cubic: a daily cycle leaving its trough is a smooth
//     curve, which the cubic follows better than a corner does;
//   - the floor now stands on the fitted line, not three scatters below.
//
// Its own span (onsetPre+onsetPost, two hours and a quarter at least) is its
// persistence, so a confirmed onset does not wait for the persistence
// test; after the segment's first runDayAge days it waits, like the other
// tiers, for growth slow enough to be a load cycle to stand above the same
// hours of the day before. Tuned on the production family's seeds 0-39;
// the held-out figures are in the package documentation ("Onset").
const (
	onsetWindow   = 6 * 3600.0
	onsetPre      = 45 * 60.0
	onsetPost     = 90 * 60.0
	onsetNoises   = 6.0
	onsetPreRise  = 0.1
	onsetEven     = 0.6
	onsetHingeFit = 0.85
	onsetCubicFit = 0.9
	onsetConfirm  = 2
)

// onsetFit is the outcome of one onset evaluation.
type onsetFit struct {
	pass  bool
	slope float64 // bytes per second after tau
	tau   float64 // when the growth began
	conf  float64 // the halves' evenness once growth and fit pass, else 0
}

// evalOnset runs the onset test at time t on the history's floor.
func (d *Detector) evalOnset(t float64) onsetFit {
	xs, ys := d.hist.floorSince(t, max(d.analysisStart, t-onsetWindow))
	unit := d.hist.unit()
	minPre, minPost := int(onsetPre/unit), int(onsetPost/unit)
	n := len(xs)
	if n < minPre+minPost {
		return onsetFit{}
	}
	i, a, s, sse := fitHinge(xs, ys, minPre, minPost)
	res := make([]float64, n)
	for j := range xs {
		res[j] = ys[j] - a - s*max(0, xs[j]-xs[i])
	}
	diffs := make([]float64, n-1)
	for j := 1; j < n; j++ {
		diffs[j-1] = ys[j] - ys[j-1]
	}
	scatter := max(madScale(res), madScale(diffs)/math.Sqrt2)
	rise := s * (xs[n-1] - xs[i])
	f := onsetFit{slope: s, tau: xs[i]}
	if s <= 0 || scatter <= 0 {
		return f
	}
	// The cheap tests first: most evaluations end here, and the Theil-Sen
	// slopes below cost a sort of some 10^4 pairs each.
	size := clamp01(min(s/d.cfg.MinGrowth, rise/(onsetNoises*scatter)))
	hinge := clamp01(onsetHingeFit*polySSE(xs, ys, 2)/sse) * clamp01(onsetCubicFit*polySSE(xs, ys, 3)/sse)
	if size*hinge < 1 || res[n-1] < -3*scatter {
		return f // conf 0: the shape is judged only on growth that fits
	}
	pre := theilSen(xs[:i], ys[:i])
	h := i + (n-i)/2
	s1, s2 := theilSen(xs[i:h], ys[i:h]), theilSen(xs[h:], ys[h:])
	if s1 > 0 && s2 > 0 {
		f.conf = clamp01(min(s1, s2) / (onsetEven * max(s1, s2)))
	}
	f.pass = f.conf >= 1 && math.Abs(pre)*(xs[i]-xs[0]) <= 2*scatter+onsetPreRise*rise
	return f
}

// fitHinge fits y = a for x < x[i], a + s*(x - x[i]) after, by least
// squares over every i in [minPre, n-minPost], and returns the best i, a,
// s and its squared error. Sums over the points from i on make each
// candidate O(1).
func fitHinge(xs, ys []float64, minPre, minPost int) (best int, a, s, sse float64) {
	n := len(xs)
	// Centred on the first x and the mean y: the sums below subtract
	// large numbers from each other.
	mean := 0.0
	for _, y := range ys {
		mean += y / float64(n)
	}
	var sy, syy float64
	for _, y := range ys {
		sy += y - mean
		syy += (y - mean) * (y - mean)
	}
	// Suffix sums over j >= i of 1, x, x², xy, y.
	var c, sx, sxx, sxy, sty float64
	sse = math.Inf(1)
	for i := n - 1; i >= minPre; i-- {
		x, y := xs[i]-xs[0], ys[i]-mean
		c++
		sx += x
		sxx += x * x
		sxy += x * y
		sty += y
		if i > n-minPost {
			continue
		}
		tau := x
		// z = max(0, x - tau): sums over all points.
		sz := sx - tau*c
		szz := sxx - 2*tau*sx + tau*tau*c
		szy := sxy - tau*sty
		m := float64(n)
		den := m*szz - sz*sz
		if den <= 0 {
			continue
		}
		sl := (m*szy - sz*sy) / den
		in := (sy - sl*sz) / m
		e := syy - in*sy - sl*szy // residual sum of squares of the OLS fit
		if e < sse {
			best, a, s, sse = i, in+mean, sl, e
		}
	}
	return best, a, s, max(sse, 0)
}

// polySSE is the squared error of the least-squares polynomial of degree
// deg (at most 3) through the points (x in hours from the first, for
// conditioning).
func polySSE(xs, ys []float64, deg int) float64 {
	const maxDeg = 3
	deg = min(deg, maxDeg)
	k := deg + 1
	var m [maxDeg + 1][maxDeg + 2]float64
	for i := range xs {
		x := (xs[i] - xs[0]) / 3600
		var p [maxDeg + 1]float64
		p[0] = 1
		for j := 1; j < k; j++ {
			p[j] = p[j-1] * x
		}
		for r := range k {
			for c := range k {
				m[r][c] += p[r] * p[c]
			}
			m[r][k] += p[r] * ys[i]
		}
	}
	for c := range k {
		if m[c][c] == 0 {
			return math.Inf(1)
		}
		for r := c + 1; r < k; r++ {
			f := m[r][c] / m[c][c]
			for j := c; j <= k; j++ {
				m[r][j] -= f * m[c][j]
			}
		}
	}
	var co [maxDeg + 1]float64
	for r := k - 1; r >= 0; r-- {
		v := m[r][k]
		for j := r + 1; j < k; j++ {
			v -= m[r][j] * co[j]
		}
		co[r] = v / m[r][r]
	}
	sse := 0.0
	for i := range xs {
		x := (xs[i] - xs[0]) / 3600
		f, p := 0.0, 1.0
		for j := range k {
			f += co[j] * p
			p *= x
		}
		e := ys[i] - f
		sse += e * e
	}
	return sse
}

// onsetHeld reports whether a confirmed onset must wait: after the
// segment's first runDayAge days, growth slow enough to be a load cycle
// stands above the same hours of the day before (likeLoadCycle), as for
// the other tiers. Before that, no day is in the history to compare, and
// the onset's shape is what tells it from a load cycle.
func (d *Detector) onsetHeld(t float64) bool {
	return (t-d.segStart)/86400 >= runDayAge && d.likeLoadCycle(t, d.onset.slope)
}
