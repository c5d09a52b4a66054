package cgroups

import (
	"errors"
	"maps"
	"math"
	"os"
	"strconv"
	"strings"
	"testing"
)

func TestParseValue(t *testing.T) {
	tests := []struct {
		in   string
		want uint64
		err  error
	}{
		{in: "0", want: 0},
		{in: "1073741824\n", want: 1 << 30},
		{in: "  42 \t", want: 42},
		{in: "max\n", want: math.MaxUint64},
		{in: "9223372036854771712\n", want: 9223372036854771712},
		{in: "18446744073709551615", want: math.MaxUint64},
		{in: "18446744073709551616", err: strconv.ErrRange},
		{in: "99999999999999999999", err: strconv.ErrRange},
		{in: "", err: strconv.ErrSyntax},
		{in: "\n", err: strconv.ErrSyntax},
		{in: "-1", err: strconv.ErrSyntax},
		{in: "+1", err: strconv.ErrSyntax},
		{in: "1_000", err: strconv.ErrSyntax},
		{in: "0x10", err: strconv.ErrSyntax},
		{in: "Max", err: strconv.ErrSyntax},
		{in: "1 2", err: strconv.ErrSyntax},
	}
	for _, tt := range tests {
		got, err := parseValue([]byte(tt.in))
		if got != tt.want || !errors.Is(err, tt.err) || (tt.err == nil) != (err == nil) {
			t.Errorf("parseValue(%q) = %d, %v; want %d, %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestFlatKeyed(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want map[string]uint64
		err  string
	}{
		{name: "memory.events", in: "low 0\nhigh 0\nmax 27\noom 2\noom_kill 1\noom_group_kill 0\n",
			want: map[string]uint64{"low": 0, "high": 0, "max": 27, "oom": 2, "oom_kill": 1, "oom_group_kill": 0}},
		{name: "no final newline", in: "a 1\nb 2", want: map[string]uint64{"a": 1, "b": 2}},
		{name: "blank lines and extra space", in: "\n  a \t 1  \n\n\r\nb 2\r\n", want: map[string]uint64{"a": 1, "b": 2}},
		{name: "max value", in: "limit max\n", want: map[string]uint64{"limit": math.MaxUint64}},
		{name: "duplicate: the later wins", in: "a 1\na 2\n", want: map[string]uint64{"a": 2}},
		{name: "empty", in: "", want: map[string]uint64{}},
		{name: "key alone", in: "a 1\nkey\n", err: `line 2: want "key value", got 1 fields`},
		{name: "three fields", in: "a 1 2\n", err: `line 1: want "key value", got 3 fields`},
		{name: "negative", in: "a -1\n", err: `line 1: key "a": bad value "-1": invalid syntax`},
		{name: "overflow", in: "a 18446744073709551616\n", err: "value out of range"},
		{name: "too many lines", in: strings.Repeat("a 1\n", maxFlatKeyedLines+1), err: "more than 4096 lines"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := flatKeyedMap([]byte(tt.in))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want one saying %q", err, tt.err)
				}
				return
			}
			if err != nil || !maps.Equal(got, tt.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestParseMemoryKeys(t *testing.T) {
	tests := []struct {
		file string
		want memoryKeys
	}{
		{file: "testdata/v2/kubepods.slice/memory.stat", want: memoryKeys{
			anon: 354418688, file: 113246208, shmem: 4194304, inactiveFile: 67108864,
			slabUnreclaimable: 4194304, kernelStack: 753664, pagetables: 2179072, percpu: 183000,
			pgfault: 1863706, pgmajfault: 115,
		}},
		{file: "testdata/v2/kubepods.slice/memory.events", want: memoryKeys{oom: 2, oomKill: 1}},
		{file: "testdata/v1/memory/docker/" + dockerID + "/memory.stat", want: memoryKeys{
			totalRSS: 134217728, totalCache: 16777216, totalInactiveFile: 12582912,
			totalPgfault: 65536, totalPgmajfault: 17, hierLimit: 512 << 20, hasHierLimit: true,
			// The local keys, which the v1 reader leaves alone.
			inactiveFile: 12582912, pgfault: 65536, pgmajfault: 17,
		}},
		{file: "testdata/v1/memory/docker/" + dockerID + "/memory.oom_control", want: memoryKeys{}},
		{file: "testdata/v1/memory/kubepods/burstable/pod3f9a2c4e-8b1d-4e6f-9a0b-c1d2e3f4a5b6/" + burstableID + "/memory.oom_control",
			want: memoryKeys{oomKill: 1}},
	}
	for _, tt := range tests {
		got, err := parseMemoryKeys(readFixture(t, tt.file))
		if err != nil || got != tt.want {
			t.Errorf("parseMemoryKeys(%s)\n got %+v, %v\nwant %+v", tt.file, got, err, tt.want)
		}
	}
	if _, err := parseMemoryKeys([]byte("anon x\n")); err == nil {
		t.Error("parseMemoryKeys accepted a bad value")
	}
}

// The parsers run for every container every interval.
func TestParsersDoNotAllocate(t *testing.T) {
	files := [][]byte{
		readFixture(t, "testdata/v1/memory/docker/"+dockerID+"/memory.stat"),
		readFixture(t, "testdata/v2/kubepods.slice/memory.stat"),
		readFixture(t, "testdata/v2/kubepods.slice/memory.events"),
		[]byte("max\n"),
	}
	n := testing.AllocsPerRun(100, func() {
		for _, b := range files[:3] {
			_, _ = parseMemoryKeys(b)
		}
		_, _ = parseValue(files[3])
	})
	if n != 0 {
		t.Errorf("%v allocations per parse, want 0", n)
	}
}

func readFixture(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
