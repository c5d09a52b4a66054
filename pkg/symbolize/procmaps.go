package symbolize

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// mapsEntry is one line of /proc/PID/maps.
type mapsEntry struct {
	Start, End uint64
	Perms      string // "r-xp"
	Offset     uint64
	DevMajor   uint32
	DevMinor   uint32
	Inode      uint64
	Path       string // as the process sees it, without " (deleted)"
	Deleted    bool
}

func (e mapsEntry) executable() bool { return len(e.Perms) >= 3 && e.Perms[2] == 'x' }

// fileBacked says whether the mapping is of a regular file, which excludes
// anonymous memory and the kernel's pseudo mappings ([vdso], [stack], ...).
func (e mapsEntry) fileBacked() bool { return e.Inode != 0 && strings.HasPrefix(e.Path, "/") }

const deletedSuffix = " (deleted)"

// maxMapsLines bounds what one maps file may yield; the kernel caps a
// process at vm.max_map_count (65530 by default).
const maxMapsLines = 1 << 20

var errMapsLine = errors.New("malformed maps line")

// parseMaps parses the content of /proc/PID/maps. A malformed line fails
// the whole parse: the file comes from the kernel, so garbage means it is
// not a maps file at all.
func parseMaps(data []byte) ([]mapsEntry, error) {
	var out []mapsEntry
	for n := 0; len(data) > 0; n++ {
		if n >= maxMapsLines {
			return nil, fmt.Errorf("more than %d lines in maps", maxMapsLines)
		}
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		if len(line) == 0 {
			continue
		}
		e, err := parseMapsLine(string(line))
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n+1, err)
		}
		out = append(out, e)
	}
	return out, nil
}

// parseMapsLine parses "start-end perms offset major:minor inode   path".
// The path is everything after the inode and its padding, so it may hold
// spaces.
func parseMapsLine(line string) (mapsEntry, error) {
	var e mapsEntry
	rest := line
	field := func() (string, bool) {
		rest = strings.TrimLeft(rest, " ")
		i := strings.IndexByte(rest, ' ')
		if i < 0 {
			f := rest
			rest = ""
			return f, f != ""
		}
		f := rest[:i]
		rest = rest[i:]
		return f, true
	}
	rng, ok1 := field()
	perms, ok2 := field()
	off, ok3 := field()
	dev, ok4 := field()
	ino, ok5 := field()
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 {
		return e, errMapsLine
	}
	lo, hi, ok := strings.Cut(rng, "-")
	if !ok {
		return e, errMapsLine
	}
	var err error
	if e.Start, err = strconv.ParseUint(lo, 16, 64); err != nil {
		return e, errMapsLine
	}
	if e.End, err = strconv.ParseUint(hi, 16, 64); err != nil || e.End < e.Start {
		return e, errMapsLine
	}
	if len(perms) != 4 {
		return e, errMapsLine
	}
	e.Perms = perms
	if e.Offset, err = strconv.ParseUint(off, 16, 64); err != nil {
		return e, errMapsLine
	}
	maj, mnr, ok := strings.Cut(dev, ":")
	if !ok {
		return e, errMapsLine
	}
	m1, err1 := strconv.ParseUint(maj, 16, 32)
	m2, err2 := strconv.ParseUint(mnr, 16, 32)
	if err1 != nil || err2 != nil {
		return e, errMapsLine
	}
	e.DevMajor, e.DevMinor = uint32(m1), uint32(m2)
	if e.Inode, err = strconv.ParseUint(ino, 10, 64); err != nil {
		return e, errMapsLine
	}
	path := strings.TrimLeft(rest, " ")
	if p, ok := strings.CutSuffix(path, deletedSuffix); ok && e.Inode != 0 {
		path, e.Deleted = p, true
	}
	e.Path = path
	return e, nil
}
