package symbolize

import (
	"bytes"
	"slices"
	"strconv"
	"strings"
)

// Limits on perf map files, which the traced process writes and so may
// be garbage or endless.
const (
	maxPerfMapBytes   = 64 << 20
	maxPerfMapEntries = 1 << 21
	maxPerfMapName    = 4096
)

// perfMap is a JIT runtime's /tmp/perf-PID.map: "START SIZE name" per
// line, hexadecimal numbers with or without 0x.
type perfMap struct {
	entries []perfMapEntry // sorted by start; later lines win ties
}

type perfMapEntry struct {
	start, end uint64
	name       string
}

// parsePerfMap keeps every well-formed line and skips the others: a JIT
// may be writing the last line right now.
func parsePerfMap(data []byte) *perfMap {
	if len(data) > maxPerfMapBytes {
		data = data[:maxPerfMapBytes]
	}
	pm := &perfMap{}
	for len(data) > 0 && len(pm.entries) < maxPerfMapEntries {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		if e, ok := parsePerfMapLine(string(line)); ok {
			pm.entries = append(pm.entries, e)
		}
	}
	slices.SortStableFunc(pm.entries, func(a, b perfMapEntry) int {
		switch {
		case a.start < b.start:
			return -1
		case a.start > b.start:
			return 1
		}
		return 0
	})
	return pm
}

func parsePerfMapLine(line string) (perfMapEntry, bool) {
	line = strings.TrimRight(line, "\r")
	startS, rest, ok := strings.Cut(line, " ")
	if !ok {
		return perfMapEntry{}, false
	}
	sizeS, name, ok := strings.Cut(rest, " ")
	if !ok || name == "" {
		return perfMapEntry{}, false
	}
	start, err1 := strconv.ParseUint(trimHex(startS), 16, 64)
	size, err2 := strconv.ParseUint(trimHex(sizeS), 16, 64)
	if err1 != nil || err2 != nil || size == 0 || start+size < start {
		return perfMapEntry{}, false
	}
	if len(name) > maxPerfMapName {
		name = name[:maxPerfMapName]
	}
	return perfMapEntry{start: start, end: start + size, name: strings.Clone(name)}, true
}

func trimHex(s string) string {
	if len(s) > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') {
		return s[2:]
	}
	return s
}

// lookup returns the name of the entry holding addr. Entries may overlap
// when a JIT reuses code memory; the one that starts closest below addr
// wins, and among those the one written last.
func (pm *perfMap) lookup(addr uint64) (string, bool) {
	if pm == nil {
		return "", false
	}
	i, _ := slices.BinarySearchFunc(pm.entries, addr, func(e perfMapEntry, a uint64) int {
		if e.start <= a {
			return -1
		}
		return 1
	})
	// i is the first entry starting above addr; look back a little for
	// one that holds it.
	for j := i - 1; j >= 0 && j >= i-16; j-- {
		if e := pm.entries[j]; addr < e.end {
			return e.name, true
		}
	}
	return "", false
}
