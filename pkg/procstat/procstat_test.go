package procstat

import (
	"os"
	"testing"
)

func TestFieldAfterAnOddCommand(t *testing.T) {
	// A command may hold spaces and parentheses: fields count after the last ')'.
	line := []byte("42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 12345 67890 300 18446744073709551615 1 2 140737488351232 0 0")
	for _, c := range []struct {
		n    int
		want uint64
	}{{StartTime, 12345}, {VSize, 67890}, {StartStack, 140737488351232}} {
		if got, err := Field(line, c.n); err != nil || got != c.want {
			t.Errorf("Field(%d) = %d, %v; want %d", c.n, got, err, c.want)
		}
	}
	if ns, err := StartTimeNs(line); err != nil || ns != 12345*10_000_000 {
		t.Errorf("StartTimeNs = %d, %v; want %d", ns, err, 12345*10_000_000)
	}
	for _, bad := range []string{"", "1 (x", "1 (x) S 1", "1 (x) S a b c d e f g h i j k l m n o p q r s"} {
		if _, err := Field([]byte(bad), StartTime); err == nil {
			t.Errorf("Field(%q) read a start time", bad)
		}
	}
}

func TestOwnStat(t *testing.T) {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{StartTime, VSize, StartStack} {
		if v, err := Field(b, n); err != nil || v == 0 {
			t.Errorf("field %d of our own stat: %d, %v", n, v, err)
		}
	}
}
