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
//     instruction: a direct call to leaf's function or to a PLT stub whose
//     GOT slot holds it, a call through a GOT slot that holds it, or a call
//     through a register or memory that cannot be followed.
//
// Code is read from the process's memory (/proc/PID/mem, which needs
// CAP_SYS_PTRACE for processes of other users), so a process that has
// exited gets false: no hint is better than a made-up frame.
func (s *Symbolizer) SkippedCaller(pid uint32, startTime uint64, leaf, ret uint64) bool {
	key := procKey{pid, startTime}
	p, err := s.process(key)
	if err != nil || leaf == 0 || ret == 0 || p.find(ret-1) == nil {
		return false
	}
	start, ok := s.nativeFunction(key, p, leaf)
	if !ok || leaf-start > maxPrologueBytes {
		return false
	}
	mem, err := os.Open(s.procPath(pid, "mem"))
	if err != nil {
		return false
	}
	defer mem.Close()
	// The pid may have been reused since the stack was taken: the memory
	// read must be the process's own.
	if s.checkIdentity(key) != nil {
		return false
	}
	code := make([]byte, leaf-start)
	if _, err := mem.ReadAt(code, int64(start)); err != nil || !keepsStackPointer(code) {
		return false
	}
	return callsInto(mem, ret, start) && s.checkIdentity(key) == nil
}

// nativeFunction returns the start of the ELF function symbol holding
// addr, an address in the process, unless addr is Go code.
func (s *Symbolizer) nativeFunction(key procKey, p *process, addr uint64) (start uint64, ok bool) {
	pm := p.find(addr)
	if pm == nil {
		return 0, false
	}
	o := s.object(key, pm)
	if o == nil {
		return 0, false
	}
	defer o.release()
	// The symbol names are mapped file data: a file truncated under us
	// faults.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			s.st.errors.Add(1)
			start, ok = 0, false
		}
	}()
	v, ok := o.vaddr(addr - pm.Start + pm.Offset)
	if !ok || (o.goTab != nil && len(o.goTab.frames(v)) > 0) {
		return 0, false
	}
	sym, ok := o.funcs.find(v)
	if !ok {
		return 0, false
	}
	return addr - (v - sym.addr), true
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

// callsInto reports whether the bytes before ret are a call instruction
// that went to the function at fn, as far as the bytes tell.
func callsInto(mem *os.File, ret, fn uint64) bool {
	const longest = 7 // REX prefix, ff, ModRM, SIB, disp32 ends before that
	var b [longest]byte
	if ret < longest {
		return false
	}
	if _, err := mem.ReadAt(b[:], int64(ret-longest)); err != nil {
		return false
	}
	// call rel32
	if b[2] == 0xe8 {
		target := ret + uint64(int64(int32(binary.LittleEndian.Uint32(b[3:]))))
		if target == fn || pltTarget(mem, target) == fn {
			return true
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
			return word(mem, ret+uint64(a.Disp)) == fn
		}
	}
	return false
}

// pltTarget returns what the PLT stub at addr jumps to: the address in its
// GOT slot (jmp *slot(%rip), after endbr64 and bnd where the binary has
// them), or 0 when addr is no such stub.
func pltTarget(mem *os.File, addr uint64) uint64 {
	var b [16]byte
	if _, err := mem.ReadAt(b[:], int64(addr)); err != nil {
		return 0
	}
	i := 0
	if bytes.HasPrefix(b[:], endbr64) {
		i = len(endbr64)
	}
	if b[i] == 0xf2 { // bnd
		i++
	}
	if b[i] != 0xff || b[i+1] != 0x25 {
		return 0
	}
	next := addr + uint64(i) + 6
	return word(mem, next+uint64(int64(int32(binary.LittleEndian.Uint32(b[i+2:])))))
}

// word reads 8 bytes of memory at addr, or 0.
func word(mem *os.File, addr uint64) uint64 {
	var b [8]byte
	if _, err := mem.ReadAt(b[:], int64(addr)); err != nil {
		return 0
	}
	return binary.LittleEndian.Uint64(b[:])
}
