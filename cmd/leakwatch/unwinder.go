package main

import (
	"github.com/leakwatch/leakwatch/pkg/symbolize"
	"github.com/leakwatch/leakwatch/pkg/tracer"
	"github.com/leakwatch/leakwatch/pkg/unwind"
)

// stackUnwinder unwinds the tracer's stack copies from call-frame
// information, with the executable mappings the symbolizer captured for
// the process: one capture serves both, and a process that exits before
// its copy is read still unwinds while its files are found.
type stackUnwinder struct {
	sym *symbolize.Symbolizer
	uw  *unwind.Unwinder
}

func newStackUnwinder(sym *symbolize.Symbolizer, tableBytes int) *stackUnwinder {
	return &stackUnwinder{sym: sym, uw: unwind.New(tableBytes)}
}

// Unwind implements tracer.StackUnwinder. The window is only read.
func (s *stackUnwinder) Unwind(c *tracer.StackCopy) ([]uint64, bool) {
	maps, err := s.sym.CodeMappings(c.PID, c.StartTime, false)
	if err == nil && !covers(maps, c.IP) {
		// A library loaded since the capture (dlopen, a JIT's code).
		maps, err = s.sym.CodeMappings(c.PID, c.StartTime, true)
	}
	if err != nil {
		return nil, false
	}
	um := make([]unwind.Mapping, 0, len(maps))
	for _, m := range maps {
		if m.Path == "" {
			continue // not found: its PCs are walked by frame pointer
		}
		um = append(um, unwind.Mapping{Start: m.Start, End: m.Limit, Offset: m.Offset, Root: m.Root, Path: m.Path, BuildID: m.Key})
	}
	st := s.uw.Unwind(unwind.Regs{IP: c.IP, SP: c.SP, BP: c.BP}, c.Window, um)
	if st.GoCode {
		return nil, false // Go's own frame pointers, walked by the kernel, are right
	}
	return st.PCs, len(st.PCs) > 0
}

func covers(maps []symbolize.CodeMapping, pc uint64) bool {
	for _, m := range maps {
		if pc >= m.Start && pc < m.Limit {
			return true
		}
	}
	return false
}
