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
	// fpStack looks up the kernel's frame-pointer stack of the same event.
	fpStack func(id uint64) (tracer.Stack, bool)
}

func newStackUnwinder(sym *symbolize.Symbolizer, tableBytes int, fpStack func(uint64) (tracer.Stack, bool)) *stackUnwinder {
	return &stackUnwinder{sym: sym, uw: unwind.New(tableBytes), fpStack: fpStack}
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
		return s.splice(st.PCs, c.FPStackID, um)
	}
	return st.PCs, len(st.PCs) > 0
}

// splice joins a stack that reached Go code: Go switches stacks (cgo calls
// C on the system stack), which the window does not follow, but the
// kernel's frame-pointer walk does, through Go's frame pointers. The
// unwound frames before the first Go one (the C code, without frame
// pointers) go first, then the frame-pointer stack from its first Go frame
// on. A stack that starts in Go is the frame-pointer walk's alone.
func (s *stackUnwinder) splice(pcs []uint64, fpID uint64, maps []unwind.Mapping) ([]uint64, bool) {
	n := 0
	for n < len(pcs) && !s.uw.GoCode(callSite(pcs, n), maps) {
		n++
	}
	if n == 0 {
		return nil, false
	}
	fp, ok := s.fpStack(fpID)
	if !ok {
		return pcs[:n], true // the C part alone: a true prefix
	}
	for j := 1; j < len(fp.Frames); j++ {
		if s.uw.GoCode(callSite(fp.Frames, j), maps) {
			return append(pcs[:n:n], fp.Frames[j:]...), true
		}
	}
	return pcs[:n], true
}

// callSite is the address to look up for frame i: a caller's return
// address less one, in its call instruction.
func callSite(pcs []uint64, i int) uint64 {
	if i == 0 {
		return pcs[0]
	}
	return pcs[i] - 1
}

func covers(maps []symbolize.CodeMapping, pc uint64) bool {
	for _, m := range maps {
		if pc >= m.Start && pc < m.Limit {
			return true
		}
	}
	return false
}
