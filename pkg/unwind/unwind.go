package unwind

import (
	"encoding/binary"
	"sort"
)

// Regs are the user registers at the sampled event.
type Regs struct {
	IP, SP, BP uint64
}

// Mapping is one executable mapping of the process.
type Mapping struct {
	Start, End, Offset uint64
	// Root and Path locate the file: Root is "/proc/PID/root" for a
	// process in another mount namespace, "" for the host.
	Root, Path string
	// BuildID keys the table cache; Path stands in when it is empty.
	BuildID string
}

// Stack is the result of one unwind.
type Stack struct {
	PCs []uint64
	// Truncated says the window ended before the outermost frame: the
	// stack is a true prefix, with callers missing.
	Truncated bool
	// CFIFrames and FPFrames count how each caller was found, for metrics.
	CFIFrames, FPFrames int
	// Interrupted lists the indexes of PCs that a signal interrupted: the
	// instruction itself, not a return address (no "less one" to find
	// the call when symbolizing).
	Interrupted []int
	// GoCode says the walk went through Go code, whose stacks switch
	// (see Table.goCode): a frame-pointer walk over every stack, as the
	// kernel's, may go further.
	GoCode bool
}

// Offsets in the ucontext that sp points at in a signal frame
// (struct ucontext: flags, link, stack, then mcontext's r8..r15, rdi, rsi,
// rbp, rbx, rdx, rax, rcx, rsp, rip).
const (
	ucRBP = 120
	ucRSP = 160
	ucRIP = 168
)

// MaxFrames bounds the walk.
const MaxFrames = 128

// Unwinder walks stacks with tables from its cache.
type Unwinder struct {
	cache *Cache
}

// New returns an unwinder whose tables take at most maxBytes.
func New(maxBytes int) *Unwinder { return &Unwinder{cache: NewCache(maxBytes)} }

// Cache exposes the table cache, for its size metric.
func (u *Unwinder) Cache() *Cache { return u.cache }

// Unwind walks the stack whose bytes from regs.SP are in window. maps must be
// sorted by Start. The window is only read, never kept.
func (u *Unwinder) Unwind(regs Regs, window []byte, maps []Mapping) Stack {
	w := stackWindow{base: regs.SP, b: window}
	st := Stack{PCs: []uint64{regs.IP}}
	ip, sp, bp := regs.IP, regs.SP, regs.BP
	bpKnown := true
	exact := true // ip is the instruction itself, not a return address
	for step := 0; step < MaxFrames; step++ {
		// A caller's PC is the instruction after the call: look up the
		// call itself, which may be the last instruction of a function.
		lookPC := ip
		if !exact {
			lookPC--
		}
		rw, ok, goCode := u.row(lookPC, maps)
		st.GoCode = st.GoCode || goCode
		if ok && rw.CFA == cfaSignal {
			// The interrupted frame's registers, not a return address.
			nbp, r1 := w.u64(sp + ucRBP)
			nsp, r2 := w.u64(sp + ucRSP)
			nip, r3 := w.u64(sp + ucRIP)
			if r1 != readOK || r2 != readOK || r3 != readOK {
				st.Truncated = r1 == readBeyond || r2 == readBeyond || r3 == readBeyond
				return st
			}
			if nip == 0 {
				return st
			}
			st.CFIFrames++
			st.Interrupted = append(st.Interrupted, len(st.PCs))
			st.PCs = append(st.PCs, nip)
			ip, sp, bp, bpKnown, exact = nip, nsp, nbp, true, true
			continue
		}
		var ra, cfa uint64
		if ok {
			if rw.Flags&flagRAUndefined != 0 {
				return st // the outermost frame
			}
			if rw.Flags&flagRAUnknown != 0 {
				return st
			}
			switch rw.CFA {
			case cfaRSP:
				cfa = sp + uint64(int64(rw.CFAOff))
			case cfaRBP:
				if !bpKnown {
					return st
				}
				cfa = bp + uint64(int64(rw.CFAOff))
			case cfaPLT10, cfaPLT11:
				cfa = sp + 8
				if th := uint64(10); ip&15 >= th+uint64(rw.CFA-cfaPLT10) {
					cfa += 8
				}
			default:
				return st
			}
			var r readResult
			ra, r = w.u64(cfa - 8)
			if r != readOK {
				st.Truncated = r == readBeyond
				return st
			}
			if rw.Flags&flagRBPSaved != 0 {
				// In an epilogue the slot can lie below sp: rbp was popped
				// already and holds the caller's value. A slot past the
				// window only loses rbp, which most callers never need.
				switch v, r := w.u64(cfa + uint64(int64(rw.RBPOff))); {
				case r == readOK:
					bp, bpKnown = v, true
				case cfa+uint64(int64(rw.RBPOff)) >= sp:
					bpKnown = false
				}
			} else if rw.Flags&flagRBPUnknown != 0 {
				bpKnown = false
			}
			st.CFIFrames++
		} else {
			// No CFI (Go code, JIT, a stripped binary): follow the frame
			// pointer, but only when it points into this stack above sp.
			if !bpKnown || bp < sp || bp&7 != 0 {
				return st
			}
			next, r := w.u64(bp)
			if r != readOK {
				st.Truncated = r == readBeyond
				return st
			}
			var r2 readResult
			ra, r2 = w.u64(bp + 8)
			if r2 != readOK {
				st.Truncated = r2 == readBeyond
				return st
			}
			cfa = bp + 16
			bp = next
			st.FPFrames++
		}
		if ra == 0 {
			return st // a zeroed return address ends the chain (clone, Go's goexit)
		}
		if cfa <= sp && step > 0 {
			return st // the stack must grow toward callers; anything else is a loop
		}
		st.PCs = append(st.PCs, ra)
		ip, sp, exact = ra, cfa, false
	}
	st.Truncated = true
	return st
}

// Prepare builds the tables of maps that are not cached yet, so that a
// process's stacks unwind after it exited and its files are gone.
func (u *Unwinder) Prepare(maps []Mapping) {
	for i := range maps {
		m := &maps[i]
		_, _ = u.cache.Table(m.cacheKey(), m.Root, m.Path)
	}
}

// cacheKey keys a mapping's table: its build id, else where it is.
func (m *Mapping) cacheKey() string {
	if m.BuildID != "" {
		return m.BuildID
	}
	return placeKey(m.Root, m.Path)
}

// GoCode says whether pc is in a Go binary's code (see Table.goCode).
func (u *Unwinder) GoCode(pc uint64, maps []Mapping) bool {
	_, _, goCode := u.row(pc, maps)
	return goCode
}

// row finds the CFI row for pc, and says whether pc is in Go code.
func (u *Unwinder) row(pc uint64, maps []Mapping) (rw row, found, goCode bool) {
	i := sort.Search(len(maps), func(i int) bool { return maps[i].End > pc })
	if i == len(maps) || pc < maps[i].Start {
		return row{}, false, false
	}
	m := &maps[i]
	t, err := u.cache.Table(m.cacheKey(), m.Root, m.Path)
	if t == nil {
		return row{}, false, false
	}
	if err != nil { // no CFI: nothing but what the binary is
		return row{}, false, t.goCode
	}
	va, ok := t.vaddr(pc - m.Start + m.Offset)
	if !ok {
		return row{}, false, t.goCode
	}
	rw, found = t.rows.lookup(va)
	return rw, found, t.goAt(va)
}

type readResult uint8

const (
	readOK readResult = iota
	readBeyond
	readBelow
)

// stackWindow is the copied stack: bytes at addresses base..base+len(b).
type stackWindow struct {
	base uint64
	b    []byte
}

func (w stackWindow) u64(addr uint64) (uint64, readResult) {
	if addr < w.base {
		return 0, readBelow
	}
	off := addr - w.base
	if off > uint64(len(w.b)) || uint64(len(w.b))-off < 8 {
		return 0, readBeyond
	}
	return binary.LittleEndian.Uint64(w.b[off:]), readOK
}
