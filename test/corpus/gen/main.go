// Command gen writes leakwatch's labelled corpus of memory series: one CSV
// file per series (columns t, bytes, limit; one point every 10 s) and
// labels.csv, the manifest the detector tests and benchdetect read. Output
// is deterministic: every series has its own seeded generator. The series
// themselves are defined in package corpusgen.
//
//	go run ./test/corpus/gen [-out test/corpus] [-seed N]
//	go run ./test/corpus/gen -production -seed N -out DIR
//
// With -production it writes seed N's production family instead (see
// corpusgen.Production), e.g. to run `leakwatch analyze` on one series.
package main

import (
	"flag"
	"log"

	"github.com/leakwatch/leakwatch/test/corpus/corpusgen"
)

func main() {
	out := flag.String("out", "test/corpus", "directory to write the corpus to")
	seed := flag.Uint64("seed", corpusgen.DefaultSeed, "seed of the noise and GC phases (the committed corpus uses the default)")
	production := flag.Bool("production", false, "write the production family for -seed instead of the old corpus")
	flag.Parse()
	write := corpusgen.Write
	if *production {
		write = corpusgen.WriteProduction
	}
	if err := write(*out, *seed); err != nil {
		log.Fatal(err)
	}
}
