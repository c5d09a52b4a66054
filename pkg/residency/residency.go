// Package residency tells how much of a process's tracked memory is
// resident: what tracked address ranges hold in RAM, from the Rss of the
// VMAs in /proc/PID/smaps. The tracer sees memory committed (mapped,
// reserved then made accessible), which for a VM's heap or a glibc arena
// can be far more than what is resident; the profile weighs its inuse view
// by this when a profile is built, and at no other time, since reading
// smaps walks the process's page tables.
//
// A VMA holds one or more tracked ranges (adjacent anonymous mappings with
// the same flags merge into one VMA), and smaps gives one Rss per VMA, so a
// VMA's Rss is shared among the ranges in it by their length: exact for a
// range that is its own VMA (a glibc heap, a VM's committed heap), an even
// spread for ranges merged into one.
package residency

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
)

// VMA is one entry of /proc/PID/smaps: its address range and resident bytes.
type VMA struct {
	Start, End uint64
	Rss        uint64 // bytes
}

// Range is a tracked address range [Start, End).
type Range struct {
	Start, End uint64
}

// Read parses /proc/PID/smaps under procRoot.
func Read(procRoot string, pid uint32) ([]VMA, error) {
	f, err := os.Open(filepath.Join(procRoot, strconv.FormatUint(uint64(pid), 10), "smaps"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Parse(f)
}

// Parse reads smaps: a header line per VMA ("start-end perms offset dev
// inode [path]") followed by "Key: value kB" lines, of which only Rss is
// kept. VMAs come back sorted by start, as the kernel lists them.
func Parse(r io.Reader) ([]VMA, error) {
	var (
		vmas []VMA
		cur  *VMA
	)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64<<10) // a path is at most PATH_MAX
	for sc.Scan() {
		line := sc.Bytes()
		if start, end, ok := parseHeader(line); ok {
			if end < start {
				return nil, fmt.Errorf("smaps: range %x-%x ends before it starts", start, end)
			}
			vmas = append(vmas, VMA{Start: start, End: end})
			cur = &vmas[len(vmas)-1]
			continue
		}
		rest, ok := bytes.CutPrefix(line, []byte("Rss:"))
		if !ok || cur == nil {
			continue
		}
		kb, err := parseKB(rest)
		if err != nil {
			return nil, fmt.Errorf("smaps: Rss of %x-%x: %w", cur.Start, cur.End, err)
		}
		cur.Rss = kb << 10
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading smaps: %w", err)
	}
	sort.Slice(vmas, func(i, j int) bool { return vmas[i].Start < vmas[j].Start })
	return vmas, nil
}

// Resident returns, for each range, the resident bytes in it: each
// overlapping VMA's Rss times the share of the VMA the range covers.
func Resident(vmas []VMA, ranges []Range) []uint64 {
	out := make([]uint64, len(ranges))
	for i, r := range ranges {
		// The first VMA ending after the range's start.
		j := sort.Search(len(vmas), func(k int) bool { return vmas[k].End > r.Start })
		for ; j < len(vmas) && vmas[j].Start < r.End; j++ {
			v := vmas[j]
			size := v.End - v.Start
			if size == 0 || v.Rss == 0 {
				continue
			}
			overlap := min(v.End, r.End) - max(v.Start, r.Start)
			out[i] += share(v.Rss, overlap, size)
		}
	}
	return out
}

// share is rss*part/whole without overflowing: part <= whole.
func share(rss, part, whole uint64) uint64 {
	if part >= whole {
		return rss
	}
	return rss/whole*part + rss%whole*part/whole
}

// parseHeader reads the address range of a VMA header line; any other line
// (a "Key: value" line) is not one.
func parseHeader(line []byte) (start, end uint64, ok bool) {
	dash := bytes.IndexByte(line, '-')
	sp := bytes.IndexByte(line, ' ')
	if dash <= 0 || sp <= dash+1 {
		return 0, 0, false
	}
	start, err := strconv.ParseUint(string(line[:dash]), 16, 64)
	if err != nil {
		return 0, 0, false
	}
	end, err = strconv.ParseUint(string(line[dash+1:sp]), 16, 64)
	if err != nil {
		return 0, 0, false
	}
	return start, end, true
}

func parseKB(b []byte) (uint64, error) {
	f := bytes.Fields(b)
	if len(f) != 2 || string(f[1]) != "kB" {
		return 0, fmt.Errorf("want \"N kB\", got %q", b)
	}
	v, err := strconv.ParseUint(string(f[0]), 10, 64)
	if err != nil || v > 1<<53 {
		return 0, fmt.Errorf("bad size %q", f[0])
	}
	return v, nil
}
