package cgroups

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
)

// maxFlatKeyedLines bounds what parseFlatKeyed accepts; memory.stat has
// about 60 lines.
const maxFlatKeyedLines = 4096

// readFlatKeyed reads a flat-keyed cgroup file such as memory.stat.
func readFlatKeyed(path string) (map[string]uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	kv, err := parseFlatKeyed(b)
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", path, err)
	}
	return kv, nil
}

// parseFlatKeyed parses "key value" lines, the format of memory.stat,
// memory.events and memory.oom_control. Values are unsigned decimals or
// "max". Blank lines are ignored; a later duplicate key wins.
func parseFlatKeyed(b []byte) (map[string]uint64, error) {
	kv := make(map[string]uint64, 64)
	for n := 1; len(b) > 0; n++ {
		if n > maxFlatKeyedLines {
			return nil, fmt.Errorf("more than %d lines", maxFlatKeyedLines)
		}
		var line []byte
		line, b, _ = bytes.Cut(b, []byte{'\n'})
		f := bytes.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) != 2 {
			return nil, fmt.Errorf("line %d: want \"key value\", got %d fields", n, len(f))
		}
		v, err := parseValue(f[1])
		if err != nil {
			return nil, fmt.Errorf("line %d: key %q: %w", n, f[0], err)
		}
		kv[string(f[0])] = v
	}
	return kv, nil
}

// parseValue parses a single-value cgroup file or field: an unsigned
// decimal, or "max" meaning no limit (returned as math.MaxUint64).
func parseValue(b []byte) (uint64, error) {
	s := string(bytes.TrimSpace(b))
	if s == "max" {
		return math.MaxUint64, nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		var ne *strconv.NumError
		if errors.As(err, &ne) {
			err = ne.Err
		}
		return 0, fmt.Errorf("bad value %q: %w", s, err)
	}
	return v, nil
}
