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
	err := Replay(r, cfg, func(rel float64, got Verdict) {
		v = got
		if v.Leaking && res.DetectedAt == nil {
			res.DetectedAt = &rel
		}
	})
	if err != nil {
		return Result{}, err
	}
	res.Leak = v.Leaking
	res.GrowthBytesPerSecond = v.GrowthBytesPerSecond
	res.Confidence = v.Confidence
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
