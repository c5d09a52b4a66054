package residency

import (
	"os"
	"strings"
	"testing"
)

const mib = 1 << 20

func TestParseFixture(t *testing.T) {
	f, err := os.Open("testdata/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	vmas, err := Parse(f)
	if err != nil {
		t.Fatal(err)
	}
	want := []VMA{
		{0x55d0c0a00000, 0x55d0c0a02000, 8 << 10},
		{0x7f0000000000, 0x7f0004000000, 16 * mib},
		{0x7f0004000000, 0x7f0010000000, 0},
		{0x7ffd1e2a0000, 0x7ffd1e2c1000, 12 << 10},
	}
	if len(vmas) != len(want) {
		t.Fatalf("got %d VMAs, want %d: %+v", len(vmas), len(want), vmas)
	}
	for i := range want {
		if vmas[i] != want[i] {
			t.Errorf("VMA %d = %+v, want %+v", i, vmas[i], want[i])
		}
	}
}

func TestParseRejects(t *testing.T) {
	for _, in := range []string{
		"7f0000002000-7f0000001000 rw-p 00000000 00:00 0\nRss: 4 kB\n",
		"7f0000000000-7f0000001000 rw-p 00000000 00:00 0\nRss: 4 MB\n",
		"7f0000000000-7f0000001000 rw-p 00000000 00:00 0\nRss: x kB\n",
	} {
		if _, err := Parse(strings.NewReader(in)); err == nil {
			t.Errorf("Parse(%q) succeeded, want an error", in)
		}
	}
}

func TestResident(t *testing.T) {
	vmas := []VMA{
		{Start: 0x1000_0000, End: 0x1400_0000, Rss: 16 * mib}, // 64 MiB, a quarter resident
		{Start: 0x1400_0000, End: 0x2000_0000, Rss: 0},        // reserved
		{Start: 0x3000_0000, End: 0x3010_0000, Rss: mib},      // 1 MiB, all resident
	}
	for _, tc := range []struct {
		name string
		r    Range
		want uint64
	}{
		{"the whole VMA", Range{0x1000_0000, 0x1400_0000}, 16 * mib},
		{"half of it: half its Rss", Range{0x1000_0000, 0x1200_0000}, 8 * mib},
		{"spanning into the reservation", Range{0x1200_0000, 0x1800_0000}, 8 * mib},
		{"across a gap, two VMAs", Range{0x1000_0000, 0x3010_0000}, 17 * mib},
		{"nothing mapped", Range{0x2000_0000, 0x3000_0000}, 0},
		{"before everything", Range{0x100, 0x200}, 0},
		{"after everything", Range{0x4000_0000, 0x4000_1000}, 0},
	} {
		if got := Resident(vmas, []Range{tc.r})[0]; got != tc.want {
			t.Errorf("%s: %d resident, want %d", tc.name, got, tc.want)
		}
	}
}

func TestShareDoesNotOverflow(t *testing.T) {
	const tb = 1 << 40
	if got := share(64*tb, 3*tb, 4*tb); got != 48*tb {
		t.Errorf("share = %d, want %d", got, uint64(48*tb))
	}
}

func FuzzParse(f *testing.F) {
	if b, err := os.ReadFile("testdata/smaps"); err == nil {
		f.Add(string(b))
	}
	f.Add("0-1000 rw-p 0 0 0\nRss: 4 kB\n")
	f.Fuzz(func(t *testing.T, in string) {
		vmas, err := Parse(strings.NewReader(in))
		if err != nil {
			return
		}
		for i, v := range vmas {
			if v.End < v.Start {
				t.Fatalf("VMA %d ends before it starts: %+v", i, v)
			}
			if i > 0 && vmas[i-1].Start > v.Start {
				t.Fatalf("VMAs not sorted at %d", i)
			}
		}
		_ = Resident(vmas, []Range{{0, 1 << 47}})
	})
}
