package detect

import (
	"errors"
	"fmt"
	"io"
	"math"
	"time"
)

// Result is the outcome of replaying one series file. Its JSON form is the
// line `leakwatch analyze` prints per file.
type Result struct {
	File string `json:"file"`
	// Leak is the verdict at the last point.
	Leak bool `json:"leak"`
	// DetectedAt is the time, in seconds since the first point, at which
	// the verdict first turned leaking; nil if it never did.
	DetectedAt           *float64 `json:"detected_at"`
	GrowthBytesPerSecond float64  `json:"growth_bytes_per_second"`
	Confidence           float64  `json:"confidence"`
	// Explanation is the verdict's when it first turned leaking, else at
	// the last point (see Verdict.Why); filled in only on request.
	Explanation *ExplanationJSON `json:"explanation,omitempty"`
}

// ExplanationJSON is an Explanation as `leakwatch analyze --explain` and
// the agent's API print it: seconds and bytes, snake_case. Times are
// RFC 3339; previous_high_bytes is null without history to compare.
type ExplanationJSON struct {
	Tier                 string     `json:"tier"`
	WindowSeconds        float64    `json:"window_seconds"`
	GrowthBytesPerSecond float64    `json:"growth_bytes_per_second"`
	CycleSeconds         float64    `json:"cycle_seconds"`
	FloorWidthSeconds    float64    `json:"floor_width_seconds"`
	FloorBytes           *float64   `json:"floor_bytes"`
	PreviousHighBytes    *float64   `json:"previous_high_bytes"`
	LeakingSince         *time.Time `json:"leaking_since,omitempty"`
	PersistenceSeconds   float64    `json:"persistence_seconds"`
	HeldBack             string     `json:"held_back,omitempty"`
	Summary              string     `json:"summary"`
}

// JSON returns e as ExplanationJSON.
func (e *Explanation) JSON() *ExplanationJSON {
	if e == nil {
		return nil
	}
	finite := func(v float64) *float64 {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil
		}
		return &v
	}
	j := &ExplanationJSON{
		Tier:                 e.Tier.String(),
		WindowSeconds:        e.Window.Seconds(),
		GrowthBytesPerSecond: e.GrowthBytesPerSecond,
		CycleSeconds:         e.Cycle.Seconds(),
		FloorWidthSeconds:    e.FloorWidth.Seconds(),
		FloorBytes:           finite(e.FloorBytes),
		PreviousHighBytes:    finite(e.PreviousHighBytes),
		PersistenceSeconds:   e.Persistence.Seconds(),
		HeldBack:             e.HeldBack,
		Summary:              e.String(),
	}
	if !e.LeakingSince.IsZero() {
		j.LeakingSince = &e.LeakingSince
	}
	return j
}

// String is the explanation in one sentence.
func (e *Explanation) String() string {
	cycle := "no GC-like cycle seen"
	if e.Cycle > 0 {
		cycle = fmt.Sprintf("cycle of about %v", e.Cycle.Round(time.Second))
	}
	prev := "no earlier floor to compare"
	if !math.IsNaN(e.PreviousHighBytes) && !math.IsInf(e.PreviousHighBytes, 0) {
		prev = fmt.Sprintf("the highest floor before it was %.1f MiB", e.PreviousHighBytes/(1<<20))
	}
	persisted := ""
	switch {
	case e.HeldBack != "":
		persisted = "; not leaking yet: " + e.HeldBack + fmt.Sprintf(" (span %v)", e.Persistence.Round(time.Second))
	case e.Persistence > 0 && !e.LeakingSince.IsZero():
		persisted = fmt.Sprintf("; the growth persisted (persistence span %v)", e.Persistence.Round(time.Second))
	}
	return fmt.Sprintf("%s tier: the floor (minima over %v; %s) grew %.1f KiB/s over %v and stands at %.1f MiB; %s%s",
		e.Tier, e.FloorWidth.Round(time.Second), cycle, e.GrowthBytesPerSecond/1024, e.Window.Round(time.Second), e.FloorBytes/(1<<20), prev, persisted)
}

// maxSpan is the longest series a replay accepts, in seconds: what a
// time.Duration holds, with room to spare.
const maxSpan = 100 * 365 * 24 * 3600.0

// Analyze replays a series file (see CSVReader for the format) through a
// detector built from cfg, holding only one line and one detector in memory.
// Result.File is left for the caller to fill in.
func Analyze(r io.Reader, cfg Config) (Result, error) {
	var res Result
	var v Verdict
	var why *Explanation
	err := Replay(r, cfg, func(rel float64, got Verdict) {
		v = got
		if v.Leaking && res.DetectedAt == nil {
			res.DetectedAt = &rel
			why = v.Why
		}
	})
	if err != nil {
		return Result{}, err
	}
	res.Leak = v.Leaking
	res.GrowthBytesPerSecond = v.GrowthBytesPerSecond
	res.Confidence = v.Confidence
	if why == nil {
		why = v.Why
	}
	res.Explanation = why.JSON()
	return res, nil
}

// Replay feeds a series file through a detector built from cfg, as Analyze
// does, and calls observe with each row's time in seconds since the first
// row and the verdict after that row.
func Replay(r io.Reader, cfg Config, observe func(rel float64, v Verdict)) error {
	d, err := New(cfg)
	if err != nil {
		return err
	}
	first := math.NaN()
	cr := NewCSVReader(r)
	for {
		s, err := cr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if math.IsNaN(first) {
			first = s.T
		}
		rel := s.T - first
		if rel > maxSpan {
			return fmt.Errorf("line %d: t: %g seconds after the first row, more than the %g a replay can span", s.Line, rel, maxSpan)
		}
		observe(rel, d.Observe(Point{T: time.Unix(0, 0).Add(time.Duration(rel * float64(time.Second))), Bytes: s.Bytes, Limit: s.Limit}))
	}
}
