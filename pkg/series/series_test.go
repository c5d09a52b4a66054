package series

import (
	"testing"
	"time"
)

func TestHistoryKeepsRecentRawAndOlderBuckets(t *testing.T) {
	h := New(Config{Raw: 6, Bucket: time.Minute, Downsample: 3})
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	// 10 minutes at 10 s: values rise by 1 each sample.
	for i := range 60 {
		h.Add(t0.Add(time.Duration(i)*10*time.Second), uint64(i), uint64(2*i))
	}
	pts := h.Points()
	// The last 6 raw points (i = 54..59) cover minute 9; buckets kept are
	// minutes 6, 7, 8 (minute 9 is still filling and raw covers it).
	if len(pts) != 3+6 {
		t.Fatalf("got %d points, want 9: %+v", len(pts), pts)
	}
	for i, want := range []struct{ lo, hi uint64 }{{36, 41}, {42, 47}, {48, 53}} {
		if pts[i].Min != want.lo || pts[i].Max != want.hi || pts[i].LeakSignal != want.hi {
			t.Errorf("bucket %d = %+v, want min %d max %d last %d", i, pts[i], want.lo, want.hi, want.hi)
		}
	}
	for i, p := range pts[3:] {
		if want := uint64(54 + i); p.LeakSignal != want || p.Usage != 2*want || p.Min != want || p.Max != want {
			t.Errorf("raw %d = %+v, want %d", i, p, want)
		}
	}
	for i := 1; i < len(pts); i++ {
		if !pts[i].T.After(pts[i-1].T) {
			t.Fatalf("points out of order at %d: %v then %v", i, pts[i-1].T, pts[i].T)
		}
	}
}

func TestHistoryMemoryIsBounded(t *testing.T) {
	h := New(DefaultConfig())
	t0 := time.Now()
	for i := range 100000 {
		h.Add(t0.Add(time.Duration(i)*10*time.Second), uint64(i), 0)
	}
	if n, limit := len(h.Points()), DefaultConfig().Raw+DefaultConfig().Downsample; n > limit {
		t.Fatalf("%d points kept, bound is %d", n, limit)
	}
	if c, limit := h.raw.Footprint()+h.coarse.Footprint(), DefaultConfig().Raw+DefaultConfig().Downsample; c != limit {
		t.Errorf("full history holds buffers of %d points, want %d", c, limit)
	}
}

// A young container's history costs what it holds, not its bound; its
// buffers grow without losing or reordering a point.
func TestHistoryGrowsAsItFills(t *testing.T) {
	h := New(DefaultConfig())
	t0 := time.Unix(1700000000, 0)
	for i := range 6 { // a minute
		h.Add(t0.Add(time.Duration(i)*10*time.Second), uint64(i), 0)
	}
	if c := h.raw.Footprint() + h.coarse.Footprint(); c > 16 {
		t.Errorf("a minute of history holds buffers of %d points", c)
	}
	for i := 6; i < 200; i++ {
		h.Add(t0.Add(time.Duration(i)*10*time.Second), uint64(i), 0)
	}
	pts := h.Points()
	for i := 1; i < len(pts); i++ {
		if !pts[i].T.After(pts[i-1].T) {
			t.Fatalf("point %d at %v is not after %v", i, pts[i].T, pts[i-1].T)
		}
	}
	if last := pts[len(pts)-1]; last.LeakSignal != 199 {
		t.Errorf("last point %d, want 199", last.LeakSignal)
	}
	if n := h.raw.Len(); n != DefaultConfig().Raw {
		t.Errorf("%d raw points, want the %d kept", n, DefaultConfig().Raw)
	}
}

func TestEmptyHistory(t *testing.T) {
	if pts := New(DefaultConfig()).Points(); len(pts) != 0 {
		t.Fatalf("empty history has %d points", len(pts))
	}
}

// BenchmarkHistory is one container's history with the default sizes,
// made and filled with 12 hours of 10 s samples: its B/op is what each
// container's history costs the agent once full.
func BenchmarkHistory(b *testing.B) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b.ReportAllocs()
	for b.Loop() {
		h := New(DefaultConfig())
		for i := range 12 * 360 {
			h.Add(t0.Add(time.Duration(i)*10*time.Second), uint64(i), uint64(i))
		}
	}
}
