package main

import (
	"errors"
	"time"

	"github.com/leakwatch/leakwatch/pkg/agent"
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
	// refreshed is when each process's maps were last read again for a
	// page that a walk stopped at, refreshes how many were read since
	// windowStart. Unwind runs on the tracer's one reader goroutine, so
	// they need no lock.
	refreshed map[[3]uint64]time.Time
	starts    map[[2]uint64]uint64 // see startTime
	execs     map[[2]uint64]uint32 // the exec id of each process's last copy
	procRoot  string
	// prepare queues captured processes for Prepare's goroutine.
	prepare     chan [2]uint64
	done        chan struct{}
	refreshes   int
	windowStart time.Time
}

func newStackUnwinder(sym *symbolize.Symbolizer, procRoot string, tableBytes int, fpStack func(uint64) (tracer.Stack, bool)) *stackUnwinder {
	s := &stackUnwinder{
		sym: sym, uw: unwind.New(tableBytes), fpStack: fpStack, procRoot: procRoot,
		refreshed: make(map[[3]uint64]time.Time), starts: make(map[[2]uint64]uint64), execs: make(map[[2]uint64]uint32),
		prepare: make(chan [2]uint64, prepareQueue), done: make(chan struct{}),
	}
	go s.preparer()
	return s
}

// prepareQueue bounds the captured processes waiting for their tables;
// more are dropped (their copies build tables when read, if they can).
const prepareQueue = 256

// Prepare asks for the unwinding tables of a process's mappings to be
// built now, while its files can be opened; it never blocks. pid and start
// are the agent's key, as Capture's.
func (s *stackUnwinder) Prepare(pid uint32, start uint64) {
	select {
	case s.prepare <- [2]uint64{uint64(pid), start}:
	default:
	}
}

func (s *stackUnwinder) preparer() {
	for {
		select {
		case <-s.done:
			return
		case k := <-s.prepare:
			if maps, err := s.sym.CodeMappings(uint32(k[0]), k[1], false); err == nil {
				s.uw.Prepare(unwindMappings(maps))
			}
		}
	}
}

// Close stops the table preparer.
func (s *stackUnwinder) Close() { close(s.done) }

// Unwind implements tracer.StackUnwinder. The window is only read.
func (s *stackUnwinder) Unwind(c *tracer.StackCopy) (tracer.Stack, error) {
	start, ok := s.startTime(c.PID, c.StartTime)
	if !ok {
		return tracer.Stack{}, errGone // gone, and never seen: nothing to read
	}
	// A process that exec'd since its maps were read has others: read
	// them again at its first copy from the new image.
	k := [2]uint64{uint64(c.PID), start}
	last, seen := s.execs[k]
	if len(s.execs) >= maxRefreshed {
		clear(s.execs)
	}
	s.execs[k] = c.ExecID
	maps, err := s.sym.CodeMappings(c.PID, start, seen && last != c.ExecID)
	if err != nil {
		return tracer.Stack{}, err
	}
	um := unwindMappings(maps)
	regs := unwind.Regs{IP: c.IP, SP: c.SP, BP: c.BP}
	st := s.uw.Unwind(regs, c.Window, um)
	// A walk that stopped at a PC in no captured mapping may have met a
	// library loaded since the capture (dlopen): read the maps again, at
	// most once a second per process, and walk again.
	if last := st.PCs[len(st.PCs)-1]; !covers(maps, callSite(st.PCs, len(st.PCs)-1)) && s.mayRefresh(c.PID, start, last) {
		if maps, err = s.sym.CodeMappings(c.PID, start, true); err == nil && covers(maps, last-1) {
			um = unwindMappings(maps)
			st = s.uw.Unwind(regs, c.Window, um)
		}
	}
	if st.GoCode {
		return s.splice(st.PCs, c.FPStackID, um)
	}
	return tracer.Stack{Frames: st.PCs, Truncated: st.Truncated}, nil
}

var errGone = errors.New("process gone before it was captured")

// splice joins a stack that reached Go code: Go switches stacks (cgo calls
// C on the system stack), which the window does not follow, but the
// kernel's frame-pointer walk does, through Go's frame pointers. The
// unwound frames before the first Go one (the C code, without frame
// pointers) go first, then the frame-pointer stack from its first Go frame
// on. A stack that starts in Go is the frame-pointer walk's alone.
func (s *stackUnwinder) splice(pcs []uint64, fpID uint64, maps []unwind.Mapping) (tracer.Stack, error) {
	n := 0
	for n < len(pcs) && !s.uw.GoCode(callSite(pcs, n), maps) {
		n++
	}
	if n == 0 {
		return tracer.Stack{}, tracer.ErrGoStack
	}
	if fp, ok := s.fpStack(fpID); ok {
		for j := 1; j < len(fp.Frames); j++ {
			if s.uw.GoCode(callSite(fp.Frames, j), maps) {
				return tracer.Stack{Frames: append(pcs[:n:n], fp.Frames[j:]...)}, nil
			}
		}
	}
	return tracer.Stack{Frames: pcs[:n], Truncated: true}, nil // the C part: a true prefix
}

// callSite is the address to look up for frame i: a caller's return
// address less one, in its call instruction.
func callSite(pcs []uint64, i int) uint64 {
	if i == 0 {
		return pcs[0]
	}
	return pcs[i] - 1
}

func unwindMappings(maps []symbolize.CodeMapping) []unwind.Mapping {
	um := make([]unwind.Mapping, 0, len(maps))
	for _, m := range maps {
		if m.Path == "" {
			continue // not found: its PCs are walked by frame pointer
		}
		um = append(um, unwind.Mapping{Start: m.Start, End: m.Limit, Offset: m.Offset, Root: m.Root, Path: m.Path, BuildID: m.Key})
	}
	return um
}

// startTime returns the start time by which the agent and the symbolizer
// know a process (from /proc/PID/stat, in clock ticks) for the kernel's
// exact one that a stack copy carries, read once per process.
func (s *stackUnwinder) startTime(pid uint32, kernel uint64) (uint64, bool) {
	k := [2]uint64{uint64(pid), kernel}
	if st, ok := s.starts[k]; ok {
		return st, true
	}
	st, ok := agent.ProcStartTime(s.procRoot, pid)
	if !ok {
		return 0, false
	}
	if len(s.starts) >= maxRefreshed {
		clear(s.starts)
	}
	s.starts[k] = st
	return st, true
}

// mayRefresh rate-limits re-reading a process's maps: once a second for
// one page of address space that a walk stopped at (a library mapped since
// the last read is found at its first record), and maxRefreshes a second in
// all (a walk that stops at garbage does not read maps at every record).
func (s *stackUnwinder) mayRefresh(pid uint32, start, addr uint64) bool {
	now := time.Now()
	if now.Sub(s.windowStart) >= time.Second {
		s.windowStart, s.refreshes = now, 0
	}
	k := [3]uint64{uint64(pid), start, addr >> 12}
	if last, ok := s.refreshed[k]; (ok && now.Sub(last) < time.Second) || s.refreshes >= maxRefreshes {
		return false
	}
	if len(s.refreshed) >= maxRefreshed {
		clear(s.refreshed)
	}
	s.refreshed[k] = now
	s.refreshes++
	return true
}

const (
	// maxRefreshed bounds the addresses whose last refresh is kept.
	maxRefreshed = 4096
	// maxRefreshes bounds the maps read again per second.
	maxRefreshes = 50
)

func covers(maps []symbolize.CodeMapping, pc uint64) bool {
	for _, m := range maps {
		if pc >= m.Start && pc < m.Limit {
			return true
		}
	}
	return false
}

// Tables reports the unwinding tables held and refused (tracer.TableReporter).
func (s *stackUnwinder) Tables() tracer.UnwindTables {
	c := s.uw.Cache()
	return tracer.UnwindTables{Bytes: uint64(c.Bytes()), Refused: c.Refused()}
}
