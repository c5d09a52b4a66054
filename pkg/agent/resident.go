package agent

import (
	"context"

	"github.com/leakwatch/leakwatch/pkg/profile"
	"github.com/leakwatch/leakwatch/pkg/residency"
	"github.com/leakwatch/leakwatch/pkg/tracer"
)

// maxResidentProcs bounds the processes whose smaps one profile reads:
// reading smaps walks a process's page tables, so its cost grows with
// what the process holds. Processes past it count as not resident.
const maxResidentProcs = 256

// residentBytes weighs one cgroup's tracked ranges by residency, per
// process and stack, for a current inuse profile: the tracer's ranges,
// shared out of each process's smaps Rss. Processes that are gone, or
// whose smaps cannot be read, are left out; an error reading the tracer
// leaves the resident view out of the profile (nil).
func (a *Agent) residentBytes(ctx context.Context, memcg uint64) map[profile.ResidentKey]int64 {
	ranges, err := a.tracer.Ranges(memcg)
	if err != nil {
		a.logEvery("reading tracked ranges for a profile", err)
		return nil
	}
	byPID := make(map[uint32][]tracer.Range)
	for _, r := range ranges {
		byPID[r.PID] = append(byPID[r.PID], r)
	}
	out := make(map[profile.ResidentKey]int64)
	root := a.procRoot()
	read := 0
	for pid, rs := range byPID {
		if read == maxResidentProcs || ctx.Err() != nil {
			break
		}
		start, ok := ProcStartTime(root, pid)
		if !ok {
			continue
		}
		vmas, err := residency.Read(root, pid)
		if err != nil {
			continue // gone since, or not ours to read
		}
		read++
		spans := make([]residency.Range, len(rs))
		for i, r := range rs {
			spans[i] = residency.Range{Start: r.Start, End: r.Start + r.Len}
		}
		for i, b := range residency.Resident(vmas, spans) {
			r := rs[i]
			w := float64(b)
			if r.Bytes != r.Len {
				// A range sampled by size stands for more like it.
				w *= float64(r.Bytes) / float64(r.Len)
			}
			out[profile.ResidentKey{PID: pid, StartTime: start, Stack: r.StackID}] += int64(w)
		}
	}
	return out
}
