package series

import (
	"bytes"
	"reflect"
	"testing"
	"time"
)

// TestStateRoundTrip: a restored history has the same points, and stays
// the same as the original while both are fed on.
func TestStateRoundTrip(t *testing.T) {
	cfg := Config{Raw: 6, Bucket: time.Minute, Downsample: 3}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, cut := range []int{0, 3, 40, 61} {
		orig := New(cfg)
		for i := range cut {
			orig.Add(t0.Add(time.Duration(i)*10*time.Second), uint64(i), uint64(2*i))
		}
		data, err := orig.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		restored := New(cfg)
		if err := restored.UnmarshalBinary(data); err != nil {
			t.Fatalf("cut %d: %v", cut, err)
		}
		for i := cut; i < cut+45; i++ {
			if !reflect.DeepEqual(restored.Points(), orig.Points()) {
				t.Fatalf("cut %d, after %d points: restored %v, original %v", cut, i, restored.Points(), orig.Points())
			}
			ts := t0.Add(time.Duration(i) * 10 * time.Second)
			orig.Add(ts, uint64(i), 0)
			restored.Add(ts, uint64(i), 0)
		}
	}
}

func TestStateRejectsBadInput(t *testing.T) {
	cfg := Config{Raw: 6, Bucket: time.Minute, Downsample: 3}
	h := New(cfg)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 50 {
		h.Add(t0.Add(time.Duration(i)*10*time.Second), uint64(i), 0)
	}
	good, _ := h.MarshalBinary()
	for n := range len(good) {
		if err := h.UnmarshalBinary(good[:n]); err == nil {
			t.Fatalf("truncated to %d of %d bytes: accepted", n, len(good))
		}
	}
	if err := h.UnmarshalBinary(append(append([]byte(nil), good...), 0)); err == nil {
		t.Error("trailing byte accepted")
	}
	foreign := append([]byte(nil), good...)
	foreign[0]++
	if err := h.UnmarshalBinary(foreign); err == nil {
		t.Error("foreign version accepted")
	}
	ranged := append([]byte(nil), good...)
	ranged[1+8+8+3*8]++ // the first raw point's minimum
	if err := h.UnmarshalBinary(ranged); err == nil {
		t.Error("a raw point whose minimum is not its signal accepted")
	}
	if err := New(Config{Raw: 6, Bucket: 2 * time.Minute}).UnmarshalBinary(good); err == nil {
		t.Error("history of another bucket width accepted")
	}
	if after, _ := h.MarshalBinary(); !bytes.Equal(after, good) {
		t.Error("a failed UnmarshalBinary changed the history")
	}
	// Smaller rings keep the newest points.
	small := New(Config{Raw: 2, Bucket: time.Minute, Downsample: 1})
	if err := small.UnmarshalBinary(good); err != nil {
		t.Fatal(err)
	}
	if pts := small.Points(); len(pts) != 3 || pts[2].LeakSignal != 49 {
		t.Errorf("restored into smaller rings: %+v, want the newest bucket and 2 raw points", pts)
	}
}
