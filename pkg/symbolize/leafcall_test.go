package symbolize

import (
	"encoding/binary"
	"testing"
)

func TestKeepsStackPointer(t *testing.T) {
	for _, tc := range []struct {
		name string
		code []byte
		want bool
	}{
		// glibc 2.36's mmap() up to the instruction after its syscall.
		{"glibc mmap wrapper", []byte{
			0x41, 0x89, 0xca, // mov %ecx,%r10d
			0x41, 0xf7, 0xc1, 0xff, 0x0f, 0x00, 0x00, // test $0xfff,%r9d
			0x75, 0x14, // jne
			0xb8, 0x09, 0x00, 0x00, 0x00, // mov $9,%eax
			0x0f, 0x05, // syscall
		}, true},
		{"endbr64 then a load", []byte{0xf3, 0x0f, 0x1e, 0xfa, 0x48, 0x8b, 0x07}, true},
		// A Go function past its prologue, as main.retainBytes.
		{"go prologue", []byte{
			0x49, 0x3b, 0x66, 0x10, // cmp 0x10(%r14),%rsp
			0x0f, 0x86, 0xf6, 0x00, 0x00, 0x00, // jbe
			0x55,             // push %rbp
			0x48, 0x89, 0xe5, // mov %rsp,%rbp
			0x48, 0x83, 0xec, 0x50, // sub $0x50,%rsp
		}, false},
		{"push rbx", []byte{0x53, 0x48, 0x8b, 0x07}, false},
		{"sub rsp", []byte{0x48, 0x83, 0xec, 0x08}, false},
		{"ends inside an instruction", []byte{0x41, 0x89}, false},
	} {
		if got := keepsStackPointer(tc.code); got != tc.want {
			t.Errorf("%s: keepsStackPointer = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// Addresses here are offsets in img; slots are read from img while the
// process "runs", and cannot be read once it has exited.
func TestCallsInto(t *testing.T) {
	const (
		fn    = 0x100 // the leaf's function
		other = 0x180
		plt   = 0x300
		got   = 0x400
	)
	img := make([]byte, 0x500)
	call := func(at, target uint64) uint64 { // returns the return address
		img[at] = 0xe8
		binary.LittleEndian.PutUint32(img[at+1:], uint32(int32(int64(target)-int64(at+5))))
		return at + 5
	}
	toFn := call(0x200, fn)
	toOther := call(0x210, other)
	toPLT := call(0x220, plt)
	copy(img[plt:], []byte{0xf3, 0x0f, 0x1e, 0xfa, 0xf2, 0xff, 0x25}) // endbr64; bnd jmp *slot(%rip)
	binary.LittleEndian.PutUint32(img[plt+7:], uint32(got-(plt+11)))
	binary.LittleEndian.PutUint64(img[got:], fn)
	copy(img[0x240:], []byte{0xff, 0xd0}) // call *%rax
	toReg := uint64(0x242)
	copy(img[0x250:], []byte{0xff, 0x15}) // call *slot(%rip), slot = got
	binary.LittleEndian.PutUint32(img[0x252:], uint32(got-0x256))
	toSlot := uint64(0x256)

	code := func(addr, n uint64) ([]byte, bool) {
		if addr > uint64(len(img)) || n > uint64(len(img))-addr {
			return nil, false
		}
		return img[addr : addr+n], true
	}
	live := true
	slot := func(addr uint64) (uint64, bool) {
		if !live {
			return 0, false
		}
		return binary.LittleEndian.Uint64(img[addr:]), true
	}
	for _, tc := range []struct {
		name string
		ret  uint64
		want bool
	}{
		{"direct call to the function", toFn, true},
		{"direct call elsewhere", toOther, false},
		{"call through a PLT stub to it", toPLT, true},
		{"indirect call through a register", toReg, true},
		{"call through a GOT slot holding it", toSlot, true},
		{"no call before", 0x4f0, false},
		{"inside the function itself", fn + 3, false},
	} {
		if got := callsInto(code, slot, tc.ret, fn); got != tc.want {
			t.Errorf("%s: callsInto = %v, want %v", tc.name, got, tc.want)
		}
	}
	// The slot holds another function: neither the PLT nor the GOT call
	// went to fn.
	binary.LittleEndian.PutUint64(img[got:], other)
	if callsInto(code, slot, toPLT, fn) || callsInto(code, slot, toSlot, fn) {
		t.Error("a call through a slot that holds another function counts")
	}
	// Once the process has exited its slots cannot be read: calls through
	// them count as any indirect call, a direct call elsewhere still not.
	live = false
	if !callsInto(code, slot, toPLT, fn) || !callsInto(code, slot, toSlot, fn) || callsInto(code, slot, toOther, fn) {
		t.Error("after exit: PLT and GOT calls must count, a direct call elsewhere must not")
	}
}

// A real process: its own frameless function called directly, libc's
// getppid() called through the PLT, and a function that pushes a register.
// After it exits the code still reads from its files; only the GOT slot
// behind the PLT call can no longer be read, so that call counts as any
// indirect call.
func TestSkippedCaller(t *testing.T) {
	bin := build(t, "cc", "leafcall", "-O1", "-g0", "-fno-omit-frame-pointer", "-fPIE", "-pie", "testdata/leafcall.c")
	f := start(t, bin, "own_leaf", "getppid", "direct_ret", "plt_ret", "pushing", "pushed_body", "pushing_ret")
	s := newTestSymbolizer(t, Config{})
	if err := s.Capture(f.pid, f.start); err != nil {
		t.Fatal(err)
	}
	v := f.vals
	tests := []struct {
		name              string
		leaf, ret         uint64
		whileLive, exited bool
	}{
		{"direct call into a frameless function", v["own_leaf"], v["direct_ret"], true, true},
		{"call through the PLT into libc", v["getppid"], v["plt_ret"], true, true},
		{"the PLT call went elsewhere", v["own_leaf"], v["plt_ret"], false, true},
		{"the direct call went elsewhere", v["getppid"], v["direct_ret"], false, false},
		{"leaf before the push", v["pushing"], v["pushing_ret"], true, true},
		{"leaf after the push", v["pushed_body"], v["pushing_ret"], false, false},
		{"word in no mapping", v["own_leaf"], 0x1000, false, false},
	}
	for _, tc := range tests {
		if got := s.SkippedCaller(f.pid, f.start, tc.leaf, tc.ret); got != tc.whileLive {
			t.Errorf("%s: SkippedCaller = %v while the process runs, want %v", tc.name, got, tc.whileLive)
		}
	}
	f.stop(t)
	for _, tc := range tests {
		if got := s.SkippedCaller(f.pid, f.start, tc.leaf, tc.ret); got != tc.exited {
			t.Errorf("%s: SkippedCaller = %v after exit, want %v", tc.name, got, tc.exited)
		}
	}
}
