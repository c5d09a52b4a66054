package detect

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const corpusDir = "../../test/corpus"

// TestCorpus replays every labelled series of test/corpus: a non-leak series
// must never turn leaking, a leak must turn leaking after it starts and
// within its detection target, and still be leaking at the end.
func TestCorpus(t *testing.T) {
	f, err := os.Open(filepath.Join(corpusDir, "labels.csv"))
	if err != nil {
		t.Fatalf("corpus manifest: %v (regenerate with go run ./test/corpus/gen)", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	n := 0
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ",")
		if len(fields) != 5 {
			t.Fatalf("labels.csv: bad line %q", sc.Text())
		}
		file, leak := fields[0], fields[1] == "true"
		start, _ := strconv.ParseFloat(fields[2], 64)
		target, _ := strconv.ParseFloat(fields[4], 64)
		n++
		// The label's target is the tiers'; with the persistence test a
		// leak is found within two of its spans.
		for _, c := range []struct {
			name   string
			cfg    Config
			target float64
		}{
			{"tiers", tiersOnly(), target},
			{"default", DefaultConfig(), max(target, 2*DefaultConfig().Persistence.Seconds())},
		} {
			t.Run(strings.TrimSuffix(file, ".csv")+"/"+c.name, func(t *testing.T) {
				r, err := os.Open(filepath.Join(corpusDir, file))
				if err != nil {
					t.Fatal(err)
				}
				defer r.Close()
				res, err := Analyze(r, c.cfg)
				if err != nil {
					t.Fatal(err)
				}
				if !leak {
					if res.DetectedAt != nil || res.Leak {
						t.Fatalf("not a leak, but turned leaking at %vs (%+v)", *res.DetectedAt, res)
					}
					return
				}
				switch {
				case res.DetectedAt == nil:
					t.Fatalf("leak starting at %vs never detected (%+v)", start, res)
				case *res.DetectedAt < start:
					t.Fatalf("turned leaking at %vs, before the leak started at %vs", *res.DetectedAt, start)
				case *res.DetectedAt-start > c.target:
					t.Errorf("detected %vs after the leak started, target %vs", *res.DetectedAt-start, c.target)
				}
				if !res.Leak || res.GrowthBytesPerSecond <= 0 || res.Confidence < 0.5 {
					t.Errorf("at the end: %+v, want leaking with positive growth and confidence", res)
				}
			})
		}
	}
	if n < 20 {
		t.Fatalf("only %d labelled series in the corpus", n)
	}
}
