package main

import (
	"log/slog"

	"github.com/leakwatch/leakwatch/pkg/agent"
	"github.com/leakwatch/leakwatch/pkg/profile"
	"github.com/leakwatch/leakwatch/pkg/symbolize"
)

// newSymbolizer returns the symbolizer, and its adapter for profiles.
func newSymbolizer(procRoot string, log *slog.Logger) (*symbolize.Symbolizer, agent.Symbolizer, error) {
	s, err := symbolize.New(symbolize.Config{ProcRoot: procRoot}, log)
	if err != nil {
		return nil, nil, err
	}
	return s, resolver{s: s}, nil
}

// resolver adapts symbolize.Symbolizer to the profile builder. The builder
// dedupes addresses across a process's stacks and has already moved each
// return address into its call instruction, so every address is resolved
// as a stack of its own (Symbolize adjusts all but a stack's first).
type resolver struct {
	s *symbolize.Symbolizer
	// captured, if set, is told of each process captured.
	captured func(pid uint32, startTime uint64)
}

func (r resolver) Capture(pid uint32, startTime uint64) error {
	err := r.s.Capture(pid, startTime)
	if err == nil && r.captured != nil {
		r.captured(pid, startTime)
	}
	return err
}

func (r resolver) Forget(pid uint32, startTime uint64) { r.s.Forget(pid, startTime) }

func (r resolver) SkippedCaller(pid uint32, startTime uint64, leaf, ret uint64) bool {
	return r.s.SkippedCaller(pid, startTime, leaf, ret)
}

func (r resolver) Resolve(pid uint32, startTime uint64, addrs []uint64) ([]profile.Location, error) {
	out := make([]profile.Location, len(addrs))
	maps := make(map[*symbolize.Mapping]*profile.Mapping)
	for i, a := range addrs {
		out[i] = profile.Location{Address: a}
		locs, err := r.s.Symbolize(pid, startTime, []uint64{a})
		if err != nil {
			if i == 0 {
				return nil, err
			}
			continue
		}
		if len(locs) != 1 {
			continue
		}
		l := locs[0]
		if l.Mapping != nil {
			m, ok := maps[l.Mapping]
			if !ok {
				m = &profile.Mapping{
					Start: l.Mapping.Start, Limit: l.Mapping.Limit, Offset: l.Mapping.Offset,
					File: l.Mapping.File, BuildID: l.Mapping.BuildID, Executable: true,
				}
				maps[l.Mapping] = m
			}
			out[i].Mapping = m
		}
		for _, f := range l.Frames {
			out[i].Frames = append(out[i].Frames, profile.Frame{Function: f.Function, File: f.File, Line: int64(f.Line)})
		}
	}
	return out, nil
}
