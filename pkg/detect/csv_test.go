package detect

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

func readAll(in string) ([]Sample, error) { return ReadCSV(strings.NewReader(in)) }

func TestReadCSV(t *testing.T) {
	got, err := readAll("\uFEFF# recorded by hand\nlimit, \"bytes\" ,x,T\r\n1000,10,a,5\r\n\n,20,b,6.5\n")
	if err != nil {
		t.Fatal(err)
	}
	want := []Sample{{T: 5, Bytes: 10, Limit: 1000, Line: 3}, {T: 6.5, Bytes: 20, Limit: 0, Line: 5}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

func TestReadCSVErrors(t *testing.T) {
	long := "t,bytes\n1," + strings.Repeat("1", MaxLineBytes) + "\n"
	for _, tc := range []struct{ name, in, want string }{
		{"empty", "", "empty file"},
		{"only comments", "# nothing\n\n", "empty file"},
		{"header only", "t,bytes\n", "line 1: no data rows"},
		{"missing bytes", "t,limit\n1,2\n", `line 1: header: missing column "bytes"`},
		{"missing both", "a,b\n", `missing column "t" and "bytes"`},
		{"duplicate column", "t,bytes,t\n", `line 1: header: column "t" appears twice`},
		{"not a number", "t,bytes\n1,2\n2,3\n3,4\n4,5\n5,6\n6,x\n", "line 7: bytes: not a number"},
		{"bad t", "t,bytes\nnow,1\n", "line 2: t: not a number"},
		{"nan", "t,bytes\n1,NaN\n", "line 2: bytes: not a number"},
		{"inf limit", "t,bytes,limit\n1,1,+Inf\n", "line 2: limit: not a number"},
		{"negative", "t,bytes\n1,-5\n", "line 2: bytes: negative"},
		{"short row", "t,x,bytes\n1,2\n", "line 2: 2 fields"},
		{"unsorted", "t,bytes\n1,1\n3,1\n2,1\n", "line 4: t: 2 is before 3 on line 3"},
		{"duplicate t", "t,bytes\n1,1\n1,2\n", "line 3: t: duplicate timestamp 1 (also on line 2)"},
		{"binary", "t,bytes\n1,1\n\x00\x01\x02\n", "line 3: binary data"},
		{"bad utf8", "t,bytes\n\xff\xfe,1\n", "line 2: binary data"},
		{"too long", long, "line 2: longer than 65536 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := readAll(tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestResultJSON(t *testing.T) {
	at := 12.5
	b, err := json.Marshal(Result{File: "a.csv", Leak: true, DetectedAt: &at, GrowthBytesPerSecond: 3, Confidence: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"file":"a.csv","leak":true,"detected_at":12.5,"growth_bytes_per_second":3,"confidence":0.5}`
	if string(b) != want {
		t.Errorf("got %s, want %s", b, want)
	}
	b, _ = json.Marshal(Result{File: "b.csv"})
	if !strings.Contains(string(b), `"detected_at":null`) {
		t.Errorf("never detected: got %s, want detected_at null", b)
	}
}

func TestAnalyzeFlat(t *testing.T) {
	var sb strings.Builder
	sb.WriteString("t,bytes\n")
	for i := 0; i < 2000; i++ {
		sb.WriteString(strings.Repeat(" ", i%3) + strconv.Itoa(1_700_000_000+i*10) + "," + strconv.Itoa(300<<20+(i*7919)%(4<<20)) + "\n")
	}
	res, err := Analyze(strings.NewReader(sb.String()), DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if res.Leak || res.DetectedAt != nil {
		t.Errorf("flat series: %+v", res)
	}
	if _, err := Analyze(strings.NewReader("t,bytes\n1,x\n"), DefaultConfig()); err == nil || !strings.HasPrefix(err.Error(), "line 2:") {
		t.Errorf("Analyze error %v, want one naming line 2", err)
	}
}

// FuzzReadCSV: any input either reads as rows in strictly increasing,
// finite t with finite non-negative values, or fails with an error naming a
// line (or the empty file); it never panics.
func FuzzReadCSV(f *testing.F) {
	for _, s := range []string{
		"t,bytes\n0,1\n10,2\n",
		"bytes,limit,t\n1,2,3\n4,,5\n",
		"t,bytes\n1,1\n1,1\n",
		"\x00t,bytes",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r := NewCSVReader(strings.NewReader(string(in)))
		prev := math.Inf(-1)
		for i := 0; ; i++ {
			s, err := r.Next()
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				msg := err.Error()
				if !strings.HasPrefix(msg, "line ") && !strings.HasPrefix(msg, "empty file") {
					t.Fatalf("error without a line: %q", msg)
				}
				return
			}
			if !(s.T > prev) || math.IsNaN(s.Bytes) || math.IsInf(s.Bytes, 0) || s.Bytes < 0 || s.Limit < 0 || math.IsInf(s.Limit, 0) {
				t.Fatalf("row %d accepted: %+v after t=%v", i, s, prev)
			}
			prev = s.T
			if i > len(in) {
				t.Fatalf("more rows than bytes of input")
			}
		}
	})
}

// A huge series streams through in bounded memory: a million points
// (115 days at 10 s) are read without being kept.
func TestAnalyzeHugeInputInBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("streams a million lines")
	}
	const lines = 1_000_000
	pr, pw := io.Pipe()
	go func() {
		w := bufio.NewWriter(pw)
		fmt.Fprintln(w, "t,bytes,limit")
		for i := range lines {
			fmt.Fprintf(w, "%d,%d,%d\n", i*10, 100<<20+(i%7)<<10, 1<<30)
		}
		pw.CloseWithError(w.Flush())
	}()
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	// The peak of the live heap while it runs, sampled: a reader that kept
	// the points (24 MB at least) would show.
	stop := make(chan struct{})
	peak := make(chan uint64)
	go func() {
		var m runtime.MemStats
		var hi uint64
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				peak <- hi
				return
			case <-tick.C:
				runtime.ReadMemStats(&m)
				hi = max(hi, m.HeapInuse)
			}
		}
	}()
	res, err := Analyze(pr, DefaultConfig())
	close(stop)
	hi := <-peak
	if err != nil {
		t.Fatal(err)
	}
	if res.Leak {
		t.Errorf("flat series judged leaking: %+v", res)
	}
	if grew := int64(hi) - int64(before.HeapInuse); grew > 16<<20 {
		t.Errorf("heap peaked %d MiB above its start over a million lines; want it bounded", grew>>20)
	}
	t.Logf("heap peak %d KiB above start", (int64(hi)-int64(before.HeapInuse))>>10)
}
