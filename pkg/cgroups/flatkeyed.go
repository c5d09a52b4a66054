package cgroups

import (
	"bytes"
	"fmt"
	"math"
	"strconv"
)

// maxFlatKeyedLines bounds what flatKeyed accepts; memory.stat has about
// 60 lines.
const maxFlatKeyedLines = 4096

// memoryKeys is what a MemoryReader takes from the flat-keyed memory files:
// memory.stat (v1 and v2), memory.events (v2) and memory.oom_control (v1).
// One parser serves them all, as their keys do not clash; a file leaves the
// fields of the others 0. (A v1 memory.stat also fills some v2 fields with
// its local keys, which leave out descendants; the v1 reader takes only the
// total_* ones.)
type memoryKeys struct {
	// v1 memory.stat.
	totalRSS, totalCache, totalShmem, totalInactiveFile uint64
	totalPgfault, totalPgmajfault                       uint64
	// hierLimit is hierarchical_memory_limit, the effective limit, which
	// kernels before 2.6.31 lack (hasHierLimit false).
	hierLimit    uint64
	hasHierLimit bool

	// v2 memory.stat.
	anon, file, shmem, inactiveFile, pgfault, pgmajfault uint64
	// Unreclaimable kernel memory, summed into MemoryStats.Kernel.
	slabUnreclaimable, kernelStack, pagetables, secPagetables, percpu uint64

	// v2 memory.events; oom_kill is in v1 memory.oom_control too.
	oom, oomKill uint64
}

func parseMemoryKeys(b []byte) (memoryKeys, error) {
	var m memoryKeys
	p := flatKeyed{rest: b}
	for p.next() {
		v := p.value
		switch string(p.key) {
		case "total_rss":
			m.totalRSS = v
		case "total_cache":
			m.totalCache = v
		case "total_shmem":
			m.totalShmem = v
		case "total_inactive_file":
			m.totalInactiveFile = v
		case "total_pgfault":
			m.totalPgfault = v
		case "total_pgmajfault":
			m.totalPgmajfault = v
		case "hierarchical_memory_limit":
			m.hierLimit, m.hasHierLimit = v, true
		case "anon":
			m.anon = v
		case "file":
			m.file = v
		case "shmem":
			m.shmem = v
		case "inactive_file":
			m.inactiveFile = v
		case "pgfault":
			m.pgfault = v
		case "pgmajfault":
			m.pgmajfault = v
		case "slab_unreclaimable":
			m.slabUnreclaimable = v
		case "kernel_stack":
			m.kernelStack = v
		case "pagetables":
			m.pagetables = v
		case "sec_pagetables":
			m.secPagetables = v
		case "percpu":
			m.percpu = v
		case "oom":
			m.oom = v
		case "oom_kill":
			m.oomKill = v
		}
	}
	return m, p.err
}

// flatKeyed walks the "key value" lines of a flat-keyed cgroup file
// (memory.stat, memory.events, memory.oom_control) without allocating, as
// it runs for every container every interval. Values are unsigned decimals
// or "max". Blank lines are skipped; a key seen twice is returned twice.
//
//	p := flatKeyed{rest: b}
//	for p.next() { use(p.key, p.value) }
//	if p.err != nil { ... }
type flatKeyed struct {
	rest  []byte
	line  int
	key   []byte
	value uint64
	err   error
}

// next moves to the next "key value" line and reports whether there is
// one; at the end or at an error (in p.err) it returns false.
func (p *flatKeyed) next() bool {
	for len(p.rest) > 0 && p.err == nil {
		p.line++
		if p.line > maxFlatKeyedLines {
			p.err = fmt.Errorf("more than %d lines", maxFlatKeyedLines)
			return false
		}
		var line []byte
		line, p.rest, _ = bytes.Cut(p.rest, []byte{'\n'})
		key, rest := field(line)
		if key == nil {
			continue
		}
		val, rest := field(rest)
		if extra, _ := field(rest); val == nil || extra != nil {
			p.err = fmt.Errorf("line %d: want \"key value\", got %d fields", p.line, countFields(line))
			return false
		}
		v, err := parseValue(val)
		if err != nil {
			p.err = fmt.Errorf("line %d: key %q: %w", p.line, string(key), err)
			return false
		}
		p.key, p.value = key, v
		return true
	}
	return false
}

// asciiSpace is what separates fields: the kernel writes one space.
const asciiSpace = " \t\r\v\f"

// field returns the first run of non-space bytes of b (nil when none) and
// what follows it.
func field(b []byte) (f, rest []byte) {
	start := 0
	for start < len(b) && isASCIISpace(b[start]) {
		start++
	}
	if start == len(b) {
		return nil, nil
	}
	end := start
	for end < len(b) && !isASCIISpace(b[end]) {
		end++
	}
	return b[start:end], b[end:]
}

func countFields(b []byte) int {
	n := 0
	for f, rest := field(b); f != nil; f, rest = field(rest) {
		n++
	}
	return n
}

func isASCIISpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'
}

// parseValue parses a single-value cgroup file or field: an unsigned
// decimal, or "max" meaning no limit (returned as math.MaxUint64). It
// allocates only for its error.
func parseValue(b []byte) (uint64, error) {
	b = bytes.Trim(b, asciiSpace+"\n")
	if string(b) == "max" {
		return math.MaxUint64, nil
	}
	if len(b) == 0 {
		return 0, badValue(b, strconv.ErrSyntax)
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, badValue(b, strconv.ErrSyntax)
		}
		d := uint64(c - '0')
		if v > (math.MaxUint64-d)/10 {
			return 0, badValue(b, strconv.ErrRange)
		}
		v = v*10 + d
	}
	return v, nil
}

func badValue(b []byte, err error) error {
	return fmt.Errorf("bad value %q: %w", string(b), err)
}
