package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// goBench is one `go test -bench` run: package, pattern, and which results
// become rows with what target (ms per op, 0: none).
type goBench struct {
	pkg, pattern, benchtime string
	targets                 map[string]float64 // benchmark name (no -N suffix) -> ms/op limit
}

var goBenches = []goBench{
	{pkg: "./pkg/tracer", pattern: "^BenchmarkSnapshot$", benchtime: "20x", targets: map[string]float64{
		"BenchmarkSnapshot/mappings=20000/steady": 5, "BenchmarkSnapshot/mappings=20000/first": 5,
	}},
	{pkg: "./pkg/metrics", pattern: "^(BenchmarkCollect|BenchmarkScrape|BenchmarkPage)$", benchtime: "20x"},
	{pkg: "./pkg/series", pattern: "^BenchmarkHistory$", benchtime: "20x"},
}

var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+(.*)$`)

// goBenchmarks runs the Go benchmarks 7 times each (-count), and adds a row
// per benchmark: ms/op (median, spread) with allocs/op and B/op.
func (b *bench) goBenchmarks() error {
	for _, g := range goBenches {
		progress("go test -bench %s %s", g.pattern, g.pkg)
		cmd := exec.Command(goTool(), "test", "-run", "^$", "-bench", g.pattern, "-benchtime", g.benchtime,
			"-count", strconv.Itoa(b.o.rounds), g.pkg)
		cmd.Dir = moduleRoot()
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("go test %s: %w\n%s", g.pkg, err, out)
		}
		name := strings.TrimPrefix(filepath.Base(g.pkg), ".")
		type res struct{ ms, allocs, bytes []float64 }
		var order []string
		results := map[string]*res{}
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			m := benchLine.FindStringSubmatch(sc.Text())
			if m == nil {
				continue
			}
			r := results[m[1]]
			if r == nil {
				r = &res{}
				results[m[1]] = r
				order = append(order, m[1])
			}
			f := strings.Fields(m[2])
			for i := 0; i+1 < len(f); i += 2 {
				v, err := strconv.ParseFloat(f[i], 64)
				if err != nil {
					continue
				}
				switch f[i+1] {
				case "ns/op":
					r.ms = append(r.ms, v/1e6)
				case "allocs/op":
					r.allocs = append(r.allocs, v)
				case "B/op":
					r.bytes = append(r.bytes, v)
				}
			}
		}
		for _, bn := range order {
			r := results[bn]
			limit := g.targets[bn]
			target := ""
			if limit > 0 {
				target = fmt.Sprintf("≤%g ms", limit)
			}
			b.add(row{
				Section: "go " + name, Measure: bn + " (ms/op)", Unit: "ms", Values: r.ms, Limit: limit, Target: target,
				Note: fmt.Sprintf("%.0f allocs/op, %s/op", median(r.allocs), sizeString(median(r.bytes))),
			})
		}
	}
	return nil
}

// sizeString is a byte count in MiB, or in KiB below one MiB.
func sizeString(b float64) string {
	if b < mib {
		return fmt.Sprintf("%.1f KiB", b/1024)
	}
	return fmt.Sprintf("%.1f MiB", b/mib)
}
