package profile

import (
	"fmt"
	"path"
	"sort"
	"strings"

	"github.com/google/pprof/profile"
)

// TopStacks renders the n samples of a built profile with the most of its
// last sample type (bytes) as short text, the bytes then up to depth
// functions from the innermost out: "12.0MiB main.leak < main.loop". A
// location the symbolizer could not name is shown as its file and offset
// ("libc.so.6+0x9cb5a"), as it would be looked up by hand, not as a bare
// address of one process.
func TopStacks(p *profile.Profile, n, depth int) []string {
	if len(p.SampleType) == 0 {
		return nil
	}
	vi := len(p.SampleType) - 1
	samples := append([]*profile.Sample(nil), p.Sample...)
	sort.SliceStable(samples, func(i, j int) bool { return samples[i].Value[vi] > samples[j].Value[vi] })
	var out []string
	for _, s := range samples {
		if len(out) == n || s.Value[vi] <= 0 {
			break
		}
		var fns []string
		for _, l := range s.Location {
			fns = append(fns, locationNames(l)...)
			if len(fns) >= depth {
				fns = fns[:depth]
				break
			}
		}
		out = append(out, fmt.Sprintf("%.1fMiB %s", float64(s.Value[vi])/(1<<20), strings.Join(fns, " < ")))
	}
	return out
}

// locationNames names a location's functions, inlined ones first.
func locationNames(l *profile.Location) []string {
	if len(l.Line) > 0 {
		names := make([]string, len(l.Line))
		for i, ln := range l.Line {
			names[i] = ln.Function.Name
		}
		return names
	}
	if m := l.Mapping; m != nil && m.File != "" && l.Address >= m.Start {
		return []string{fmt.Sprintf("%s+0x%x", path.Base(m.File), l.Address-m.Start+m.Offset)}
	}
	return []string{fmt.Sprintf("0x%x", l.Address)}
}
