package unwind

import (
	"debug/elf"
	"encoding/binary"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestUnwindPLTLeaf stops a walk in a lazy-binding PLT stub of a gcc -O2
// program: its CFA is binutils' expression, rsp+8 before the stub's push
// and rsp+16 after it. Both must find the caller's return address.
func TestUnwindPLTLeaf(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "sixlevels")
	if out, err := exec.Command("gcc", "-O2", "-Wl,-z,lazy", "-o", bin, "testdata/sixlevels.c").CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	plt := f.Section(".plt")
	var level6 uint64
	syms, _ := f.Symbols()
	for _, s := range syms {
		if s.Name == "level6" {
			level6 = s.Value
		}
	}
	f.Close()
	if plt == nil || plt.Size < 32 || level6 == 0 {
		t.Fatalf("no .plt stubs or no level6 in %s", bin)
	}
	const base = 0x555555554000
	maps := []Mapping{{Start: base, End: base + 1<<20, Path: bin}}
	ra := base + level6 + 9 // any address inside level6 will do as the caller
	stub := base + plt.Addr + 16
	for _, tc := range []struct {
		name   string
		ip     uint64
		window []uint64
	}{
		{"before the push", stub, []uint64{ra}},
		{"after the push", stub + 11, []uint64{3, ra}}, // the relocation index, then the return address
	} {
		t.Run(tc.name, func(t *testing.T) {
			win := make([]byte, 8*len(tc.window))
			for i, v := range tc.window {
				binary.LittleEndian.PutUint64(win[8*i:], v)
			}
			st := New(1<<20).Unwind(Regs{IP: tc.ip, SP: 0x7ffc00000000}, win, maps)
			if len(st.PCs) < 2 || st.PCs[1] != ra {
				t.Fatalf("unwound %x, want the caller %x second", st.PCs, ra)
			}
			if len(st.PCs) != 2 || !st.Truncated {
				t.Errorf("unwound %x (truncated %v); the window holds one caller, so want two PCs, truncated", st.PCs, st.Truncated)
			}
		})
	}
}
