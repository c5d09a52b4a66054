// Package procstat reads the numeric fields of a /proc/PID/stat line, in
// one place for every package that needs one (the agent's process start
// times, the symbolizer's, the tracer's tests).
package procstat

import (
	"bytes"
	"errors"
	"math"
	"strconv"
)

// Fields of /proc/PID/stat, numbered as proc(5) numbers them.
const (
	StartTime  = 22 // clock ticks since boot
	VSize      = 23 // bytes of virtual memory
	StartStack = 28 // the main thread's first stack pointer
)

// nsPerTick is the length of a clock tick: USER_HZ is 100 on Linux.
const nsPerTick uint64 = 1e9 / 100

// Field returns field n (3 or more) of a /proc/PID/stat line. The command
// (field 2) may hold spaces and parentheses, so fields are counted after
// its last ')'.
func Field(data []byte, n int) (uint64, error) {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, errors.New("no command in stat")
	}
	fields := bytes.Fields(data[i+1:])
	idx := n - 3 // fields after the command start at field 3
	if idx < 0 || len(fields) <= idx {
		return 0, errors.New("short stat")
	}
	return strconv.ParseUint(string(fields[idx]), 10, 64)
}

// StartTimeNs returns the process's start time (field 22) in nanoseconds
// since boot, the unit of the kernel's task start times.
func StartTimeNs(data []byte) (uint64, error) {
	ticks, err := Field(data, StartTime)
	if err != nil {
		return 0, err
	}
	if ticks > math.MaxUint64/nsPerTick {
		return 0, errors.New("start time out of range")
	}
	return ticks * nsPerTick, nil
}
