package symbolize

import (
	"bytes"
	"encoding/binary"
	"os"
	"runtime/debug"

	"golang.org/x/arch/x86/x86asm"
)

// A frame-pointer walk of a stack taken inside a function that sets up no
// frame of its own (glibc's mmap() wrapper, memset) goes from that
// function's instruction pointer to its caller's saved frame, whose return
// address is in the caller's caller: the caller is skipped. The tracer
// keeps the word at the user stack pointer with each stack for that case.
// It is the caller's return address only while the innermost function has
// not moved the stack pointer since it was called; otherwise it is
// whatever that function keeps there (a saved register, a local, a stale
// slot), often an address in code that never ran on this stack (measured:
// a Go program's page faults got time.Sleep between main.leakHere and
// main.main). SkippedCaller tells the two apart.

// maxPrologueBytes bounds how far into its function a leaf may be and
// still be checked: every instruction before it is decoded.
const maxPrologueBytes = 64 << 10

// endbr64 begins functions built with CET; the decoder does not know it.
var endbr64 = []byte{0xf3, 0x0f, 0x1e, 0xfa}

// SkippedCaller reports whether ret, the word at the user stack pointer
// when a stack whose innermost address is leaf was taken, is provably the
// return address of the call into leaf's function, and so the caller that
// the frame-pointer walk skipped. It is, when all of these hold:
//
//   - leaf is in a function of the file's ELF symbol table, not Go code
//     (Go functions keep frame pointers, and a Go binary's symbols are kept
//     only for its C code);
//   - no instruction of that function from its start up to leaf, decoded
//     in order, moves the stack pointer (no push, no sub, no enter): the
//     word at the stack pointer is still the one its call pushed;
//   - ret is in an executable mapping of the process, just after a call
//     instruction: a direct call to leaf's function, or a call through a
//     PLT stub or a GOT slot or a register, which cannot always be
//     followed; a GOT slot that can be read (the process still runs) must
//     hold leaf's function.
//
// The code is read from the files the process mapped (kept mapped by the
// symbol tables of native files), so a process that has exited, as an OOM
// kill's victim, is judged the same way. A Go binary's code is not kept:
// a return address into one (its cgo C code calling libc, as x_cgo_mmap
// does) gets no hint either, which costs nothing a profile shows, since
// allocator frames are trimmed there.
func (s *Symbolizer) SkippedCaller(pid uint32, startTime uint64, leaf, ret uint64) (ok bool) {
	key := procKey{pid, startTime}
	p, err := s.process(key)
	if err != nil || leaf == 0 || ret == 0 {
		return false
	}
	// Code is mapped file data: a file truncated under us faults.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			s.st.errors.Add(1)
			ok = false
		}
	}()
	code := s.codeAt(key, p)
	defer code.release()
	start, ok := code.nativeFunction(leaf)
	if !ok || leaf-start > maxPrologueBytes {
		return false
	}
	prologue, ok := code.read(start, leaf-start)
	if !ok || !keepsStackPointer(prologue) {
		return false
	}
	slots := &procMemory{s: s, key: key}
	defer slots.close()
	return callsInto(code.read, slots.word, ret, start)
}

// codeReader reads the code of a process from the files it mapped,
// holding each file's object until released.
type codeReader struct {
	s    *Symbolizer
	key  procKey
	p    *process
	held map[*procMapping]*object
}

func (s *Symbolizer) codeAt(key procKey, p *process) *codeReader {
	return &codeReader{s: s, key: key, p: p, held: make(map[*procMapping]*object)}
}

func (c *codeReader) release() {
	for _, o := range c.held {
		if o != nil {
			o.release()
		}
	}
}

// object returns the object of the mapping holding addr, and addr in the
// file's own addresses.
func (c *codeReader) object(addr uint64) (*object, uint64, bool) {
	pm := c.p.find(addr)
	if pm == nil {
		return nil, 0, false
	}
	o, seen := c.held[pm]
	if !seen {
		o = c.s.object(c.key, pm)
		c.held[pm] = o
	}
	if o == nil {
		return nil, 0, false
	}
	v, ok := o.vaddr(addr - pm.Start + pm.Offset)
	return o, v, ok
}

// read returns n bytes of code at addr, an address of the process, from
// one executable mapping.
func (c *codeReader) read(addr, n uint64) ([]byte, bool) {
	o, v, ok := c.object(addr)
	if !ok || (n > 0 && c.p.find(addr+n-1) != c.p.find(addr)) {
		return nil, false
	}
	return o.code(v, n)
}

// nativeFunction returns the start of the ELF function symbol holding
// addr, an address of the process, unless addr is Go code.
func (c *codeReader) nativeFunction(addr uint64) (uint64, bool) {
	o, v, ok := c.object(addr)
	if !ok || (o.goTab != nil && len(o.goTab.frames(v)) > 0) {
		return 0, false
	}
	sym, ok := o.funcs.find(v)
	if !ok {
		return 0, false
	}
	return addr - (v - sym.addr), true
}

// procMemory reads words of a live process's memory (/proc/PID/mem, which
// needs CAP_SYS_PTRACE for processes of other users): the GOT slots that
// the dynamic linker filled in.
type procMemory struct {
	s      *Symbolizer
	key    procKey
	f      *os.File
	failed bool
}

// word returns the 8 bytes at addr, or false when the process has exited
// or its memory cannot be read.
func (m *procMemory) word(addr uint64) (uint64, bool) {
	if m.f == nil && !m.failed {
		f, err := os.Open(m.s.procPath(m.key.pid, "mem"))
		// The pid may have been reused: the memory must be the process's.
		if err != nil || m.s.checkIdentity(m.key) != nil {
			if f != nil {
				_ = f.Close()
			}
			m.failed = true
		} else {
			m.f = f
		}
	}
	if m.f == nil {
		return 0, false
	}
	var b [8]byte
	if _, err := m.f.ReadAt(b[:], int64(addr)); err != nil || m.s.checkIdentity(m.key) != nil {
		return 0, false
	}
	return binary.LittleEndian.Uint64(b[:]), true
}

func (m *procMemory) close() {
	if m.f != nil {
		_ = m.f.Close()
	}
}

// keepsStackPointer reports whether code, a function's instructions from
// its start, decodes exactly and none of them moves the stack pointer.
// Branches are not followed: an instruction that moves it anywhere before
// the end counts, which errs towards no hint.
func keepsStackPointer(code []byte) bool {
	for len(code) > 0 {
		if bytes.HasPrefix(code, endbr64) {
			code = code[len(endbr64):]
			continue
		}
		inst, err := x86asm.Decode(code, 64)
		if err != nil || inst.Op == 0 || inst.Len <= 0 || inst.Len > len(code) || movesStackPointer(inst) {
			return false
		}
		code = code[inst.Len:]
	}
	return true
}

func movesStackPointer(inst x86asm.Inst) bool {
	switch inst.Op {
	case x86asm.PUSH, x86asm.PUSHF, x86asm.PUSHFQ, x86asm.PUSHFD, x86asm.PUSHA, x86asm.PUSHAD,
		x86asm.POP, x86asm.POPF, x86asm.POPFQ, x86asm.POPFD, x86asm.POPA, x86asm.POPAD,
		x86asm.ENTER, x86asm.LEAVE:
		return true
	}
	// Anything with the stack pointer as a register operand, but reading
	// it into another register.
	for i, a := range inst.Args {
		switch a {
		case x86asm.RSP, x86asm.ESP, x86asm.SP, x86asm.SPB:
			if i != 1 || inst.Op != x86asm.MOV {
				return true
			}
		}
	}
	return false
}

// callsInto reports whether the code before ret is a call instruction
// that went to the function at fn, as far as the code tells: code reads
// the process's code, slot a GOT slot's current value (false when it
// cannot be read).
func callsInto(code func(addr, n uint64) ([]byte, bool), slot func(addr uint64) (uint64, bool), ret, fn uint64) bool {
	const longest = 7 // REX prefix, ff, ModRM, SIB, disp32 ends before that
	if ret < longest {
		return false
	}
	b, ok := code(ret-longest, longest)
	if !ok {
		return false
	}
	// holds reports whether a GOT slot holds fn, or cannot be read: a
	// call through it is then as good as any indirect call.
	holds := func(addr uint64) bool {
		v, ok := slot(addr)
		return !ok || v == fn
	}
	// call rel32, to fn or to a PLT stub.
	if b[2] == 0xe8 {
		target := ret + uint64(int64(int32(binary.LittleEndian.Uint32(b[3:]))))
		if target == fn {
			return true
		}
		if got, ok := pltSlot(code, target); ok {
			return holds(got)
		}
	}
	// call r/m64 (ff /2), of whichever length ends at ret.
	for n := 2; n <= longest; n++ {
		inst, err := x86asm.Decode(b[longest-n:], 64)
		if err != nil || inst.Op != x86asm.CALL || inst.Len != n {
			continue
		}
		switch a := inst.Args[0].(type) {
		case x86asm.Reg:
			return true
		case x86asm.Mem:
			if a.Base != x86asm.RIP {
				return true
			}
			// call *slot(%rip), as -fno-plt code calls a library.
			return holds(ret + uint64(a.Disp))
		}
	}
	return false
}

// pltSlot returns the GOT slot that the PLT stub at addr jumps through
// (jmp *slot(%rip), after endbr64 and bnd where the binary has them), or
// false when addr is no such stub.
func pltSlot(code func(addr, n uint64) ([]byte, bool), addr uint64) (uint64, bool) {
	b, ok := code(addr, 11)
	if !ok {
		return 0, false
	}
	i := 0
	if bytes.HasPrefix(b, endbr64) {
		i = len(endbr64)
	}
	if b[i] == 0xf2 { // bnd
		i++
	}
	if b[i] != 0xff || b[i+1] != 0x25 {
		return 0, false
	}
	next := addr + uint64(i) + 6
	return next + uint64(int64(int32(binary.LittleEndian.Uint32(b[i+2:])))), true
}
