package detect

import (
	"errors"
	"fmt"
	"time"
)

// Config tunes a Detector. The zero value is not usable: start from
// DefaultConfig and change what needs changing, then call Validate (New does).
type Config struct {
	// Interval is the expected time between points. It sizes the raw ring
	// (points arriving faster than this shorten the fast tier's memory, never
	// grow it) and must leave at least three points per EnvelopeWindow.
	Interval time.Duration
	// WarmUp is ignored at the start of every segment (container start,
	// restart, long gap): start-up growth is not a leak.
	WarmUp time.Duration
	// MaxGap is the longest silence between two points that continues a
	// segment; a longer one starts a new segment with its own warm-up.
	MaxGap time.Duration
	// RestartFraction: a point below this fraction of the minimum of the last
	// few minutes is a restart (a new process), which starts a new segment.
	RestartFraction float64
	// EnvelopeWindow is the width of the minima the fast tier compares. A
	// garbage-collector cycle up to this long leaves a trough in every window
	// and so is invisible to the fast tier; longer cycles are left to the
	// bucket tiers.
	EnvelopeWindow time.Duration
	// MediumBucket and SlowBucket are the widths of the per-bucket minima kept
	// by the medium (32 buckets) and slow (96 buckets) tiers.
	MediumBucket time.Duration
	SlowBucket   time.Duration
	// FastMinGrowth (bytes/s) is the least growth the fast tier reports: the
	// fast tier looks at three minutes only, so it speaks only when growth is
	// steep enough that waiting for the slower tiers would risk an OOM kill.
	FastMinGrowth float64
	// MinGrowth (bytes/s) is the least growth any tier calls a leak.
	MinGrowth float64
	// Significance is the one-sided p-value the Mann-Kendall test must reach
	// on a bucket tier's window.
	Significance float64
	// Consistency is the least ratio between the slowest and the fastest
	// part of a window (thirds for bucket tiers, successive minima for the
	// fast tier). Steps, spikes and decelerating growth (a cache filling up)
	// concentrate their rise in one part and fail it; a leak does not.
	Consistency float64
	// ClearAfter is how long no tier may find growth before a leaking
	// verdict clears.
	ClearAfter time.Duration
	// Persistence, when not zero, is the least span over which the floor's
	// record must have risen steadily, and no slower than over the span
	// before it, before a confirmed tier turns the verdict leaking; slow
	// growth within a daily cycle's reach waits for a day of history too
	// (see the package documentation, "Persistence"). Zero turns the test
	// off: verdicts come within minutes, and so do false ones on queues,
	// caches, heaps expanding to a cap and daily load.
	Persistence time.Duration
}

// DefaultConfig returns the settings the daemon and `leakwatch analyze` use.
func DefaultConfig() Config {
	return Config{
		Interval:        10 * time.Second,
		WarmUp:          5 * time.Minute,
		MaxGap:          5 * time.Minute,
		RestartFraction: 0.25,
		EnvelopeWindow:  time.Minute,
		MediumBucket:    2 * time.Minute,
		SlowBucket:      5 * time.Minute,
		FastMinGrowth:   256 << 10,
		MinGrowth:       4 << 10,
		Significance:    0.01,
		Consistency:     0.6,
		ClearAfter:      10 * time.Minute,
		Persistence:     20 * time.Minute,
	}
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(c.Interval > 0, "interval %v: must be positive", c.Interval)
	check(c.WarmUp >= 0, "warm-up %v: must not be negative", c.WarmUp)
	check(c.MaxGap > c.Interval, "max gap %v: must exceed the interval %v", c.MaxGap, c.Interval)
	check(c.RestartFraction > 0 && c.RestartFraction < 1, "restart fraction %v: must be in (0,1)", c.RestartFraction)
	check(c.EnvelopeWindow >= 3*c.Interval, "envelope window %v: must hold at least 3 intervals of %v", c.EnvelopeWindow, c.Interval)
	check(c.MediumBucket >= c.EnvelopeWindow, "medium bucket %v: must be at least the envelope window %v", c.MediumBucket, c.EnvelopeWindow)
	check(c.SlowBucket > c.MediumBucket, "slow bucket %v: must exceed the medium bucket %v", c.SlowBucket, c.MediumBucket)
	check(c.MinGrowth > 0, "min growth %v: must be positive", c.MinGrowth)
	check(c.FastMinGrowth >= c.MinGrowth, "fast min growth %v: must be at least min growth %v", c.FastMinGrowth, c.MinGrowth)
	check(c.Significance > 0 && c.Significance < 0.5, "significance %v: must be in (0,0.5)", c.Significance)
	check(c.Consistency > 0 && c.Consistency <= 1, "consistency %v: must be in (0,1]", c.Consistency)
	check(c.ClearAfter > 0, "clear after %v: must be positive", c.ClearAfter)
	check(c.Persistence == 0 || c.Persistence >= 4*c.EnvelopeWindow, "persistence %v: must be 0 (off) or at least 4 envelope windows (%v)", c.Persistence, 4*c.EnvelopeWindow)
	if len(errs) > 0 {
		return fmt.Errorf("invalid detector config: %w", errors.Join(errs...))
	}
	return nil
}
