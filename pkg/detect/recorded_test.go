package detect

import (
	"bufio"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// recordedDir holds series recorded from the real agent (a steady Go leak,
// a JVM filling its heap) by test/deploy's TestRecordAgentSeries: per
// collection t, bytes and limit, which replay here, and leaking, confidence
// and growth as the agent reported them.
const recordedDir = "../../deploy/prometheus/tests/recorded"

// The verdict and the confidence agree at every evaluation of series
// recorded from the real agent, replayed through the code path of
// `leakwatch analyze`; and the replay gives what the agent reported, so
// the daemon and analyze are one detector.
func TestRecordedVerdictsKeepConfidence(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(recordedDir, "*.csv"))
	if err != nil || len(files) < 2 {
		t.Fatalf("recordings in %s: %v, %v (re-record with test/deploy's TestRecordAgentSeries)", recordedDir, files, err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".csv"), func(t *testing.T) {
			agent := readAgentVerdicts(t, file)
			f, err := os.Open(file)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			i, leaking := 0, 0
			// The agent that recorded them ran before the persistence
			// test existed: the tiers alone.
			err = Replay(f, tiersOnly(), func(rel float64, v Verdict) {
				where := file + " at " + strconv.FormatFloat(rel, 'f', 0, 64) + "s"
				agrees(t, where, v)
				if v.Leaking {
					leaking++
				}
				if a := agent[i]; a.Leaking != v.Leaking || math.Abs(a.Confidence-v.Confidence) > 1e-9 {
					t.Errorf("%s: replay %v, the agent reported leaking=%v confidence=%v", where, v, a.Leaking, a.Confidence)
				}
				i++
			})
			if err != nil {
				t.Fatal(err)
			}
			// The alert waits 15 minutes on the verdict: a recording in
			// which it never held that long tests nothing.
			if held := time.Duration(leaking) * tiersOnly().Interval; held < 15*time.Minute {
				t.Fatalf("leaking in %d of %d collections (%v): too short a recording", leaking, i, held)
			}
			t.Logf("%d collections, leaking in %d", i, leaking)
		})
	}
}

// readAgentVerdicts reads the leaking and confidence columns of a recording.
func readAgentVerdicts(t *testing.T, file string) []Verdict {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []Verdict
	sc := bufio.NewScanner(f)
	header := true
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		fields := strings.Split(line, ",")
		if header {
			if strings.Join(fields, ",") != "t,bytes,limit,leaking,confidence,growth" {
				t.Fatalf("%s: header %q", file, line)
			}
			header = false
			continue
		}
		conf, err := strconv.ParseFloat(fields[4], 64)
		if err != nil {
			t.Fatalf("%s: %q: %v", file, line, err)
		}
		out = append(out, Verdict{Leaking: fields[3] == "1", Confidence: conf})
	}
	return out
}
