package detect

import (
	"math"
	"slices"
)

// theilSen returns the median of the pairwise slopes of (xs, ys). xs must be
// strictly increasing. It tolerates up to about 29% outliers, which is what
// lets a batch spike or a missed GC trough pass through a window unnoticed.
func theilSen(xs, ys []float64) float64 {
	n := len(xs)
	if n < 2 {
		return 0
	}
	slopes := make([]float64, 0, n*(n-1)/2)
	for i := 0; i < n; i++ {
		for j := i + 1; j < n; j++ {
			slopes = append(slopes, (ys[j]-ys[i])/(xs[j]-xs[i]))
		}
	}
	return median(slopes)
}

// mannKendall returns the one-sided p-value of an increasing trend in ys
// (taken in order), with the variance corrected for ties. It uses ranks
// only, so the size of an outlier does not matter, only its position.
func mannKendall(ys []float64) float64 {
	n := len(ys)
	if n < 3 {
		return 1
	}
	s := 0
	for i := 0; i < n; i++ {
		for j := i + 1; j < n; j++ {
			switch {
			case ys[j] > ys[i]:
				s++
			case ys[j] < ys[i]:
				s--
			}
		}
	}
	fn := float64(n)
	v := fn * (fn - 1) * (2*fn + 5)
	sorted := slices.Clone(ys)
	slices.Sort(sorted)
	for i := 0; i < n; {
		j := i
		for j < n && sorted[j] == sorted[i] {
			j++
		}
		if t := float64(j - i); t > 1 {
			v -= t * (t - 1) * (2*t + 5)
		}
		i = j
	}
	v /= 18
	if s <= 0 || v <= 0 {
		return 1
	}
	z := (float64(s) - 1) / math.Sqrt(v) // continuity correction
	return 0.5 * math.Erfc(z/math.Sqrt2)
}

// median sorts vs in place and returns its median (0 when empty).
func median(vs []float64) float64 {
	n := len(vs)
	if n == 0 {
		return 0
	}
	slices.Sort(vs)
	if n%2 == 1 {
		return vs[n/2]
	}
	return (vs[n/2-1] + vs[n/2]) / 2
}

// madScale is the median absolute deviation of vs around their median,
// scaled to estimate a normal standard deviation. vs is reordered.
func madScale(vs []float64) float64 {
	m := median(vs)
	for i, v := range vs {
		vs[i] = math.Abs(v - m)
	}
	return 1.4826 * median(vs)
}

func clamp01(v float64) float64 {
	switch {
	case v < 0 || math.IsNaN(v):
		return 0
	case v > 1:
		return 1
	}
	return v
}
