package symbolize

import (
	"debug/elf"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// wantFunc is a function symbol as debug/elf reads it.
type wantFunc struct {
	addr, size uint64
	name       string
}

// funcsByDebugELF applies the table's rules to what debug/elf reads: the
// reference the compact parser must match, symbol for symbol.
func funcsByDebugELF(t *testing.T, f *elf.File) []wantFunc {
	t.Helper()
	type cand struct {
		wantFunc
		rank int
	}
	var all []elf.Symbol
	if s, err := f.Symbols(); err == nil {
		all = append(all, s...)
	}
	if s, err := f.DynamicSymbols(); err == nil {
		all = append(all, s...)
	}
	var cands []cand
	for _, s := range all {
		typ := elf.ST_TYPE(s.Info)
		if (typ != elf.STT_FUNC && typ != elf.STT_GNU_IFUNC) || s.Value == 0 || s.Size == 0 || s.Name == "" {
			continue
		}
		if s.Section == elf.SHN_UNDEF || (int(s.Section) < len(f.Sections) && f.Sections[s.Section].Flags&elf.SHF_EXECINSTR == 0) {
			continue
		}
		rank := 2
		switch elf.ST_BIND(s.Info) {
		case elf.STB_GLOBAL:
			rank = 0
		case elf.STB_WEAK:
			rank = 1
		}
		cands = append(cands, cand{wantFunc{s.Value, s.Size, s.Name}, rank})
	}
	slices.SortFunc(cands, func(a, b cand) int {
		switch {
		case a.addr != b.addr:
			if a.addr < b.addr {
				return -1
			}
			return 1
		case a.rank != b.rank:
			return a.rank - b.rank
		}
		return strings.Compare(a.name, b.name)
	})
	var out []wantFunc
	for _, c := range cands {
		if n := len(out); n == 0 || out[n-1].addr != c.addr {
			out = append(out, c.wantFunc)
		}
	}
	return out
}

// openFile opens path for the test's duration.
func openFile(t *testing.T, path string) (*os.File, int64) {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fh.Close() })
	st, err := fh.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return fh, st.Size()
}

// openELF opens path for the parser, mapped as the Symbolizer maps it.
func openELF(t *testing.T, path string) (*elf.File, mapper, func(off, n uint64) bool) {
	t.Helper()
	fh, size := openFile(t, path)
	f, err := elf.NewFile(fh)
	if err != nil {
		t.Fatal(err)
	}
	return f, mmapper(fh, size), func(off, n uint64) bool { return off <= uint64(size) && n <= uint64(size)-off }
}

// loadFuncTable runs the compact parser on every function of the file.
func loadFuncTable(t *testing.T, path string) (*elf.File, funcTable) {
	t.Helper()
	f, m, fits := openELF(t, path)
	tabs, err := mapSymtabs(f, fits, m)
	if err != nil {
		t.Fatal(err)
	}
	defer tabs.close()
	ft, release, err := tabs.functions(f, pcRange{}, m)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, r := range release {
			r()
		}
	})
	return f, ft
}

func findLibc(t *testing.T) string {
	t.Helper()
	for _, pattern := range []string{"/lib/*-linux-gnu/libc.so.6", "/usr/lib/*-linux-gnu/libc.so.6", "/lib64/libc.so.6", "/usr/lib/libc.so.6"} {
		if m, _ := filepath.Glob(pattern); len(m) > 0 {
			return m[0]
		}
	}
	t.Skip("no libc.so.6 found")
	return ""
}

// The compact parser reads real files as debug/elf does: ELF64 and ELF32,
// little- and big-endian, .symtab and .dynsym, C, C++ and Go.
func TestFuncTableMatchesDebugELF(t *testing.T) {
	for _, tt := range []struct {
		name string
		path func(t *testing.T) string
		some bool // must hold functions
	}{
		// go test strips its binaries: this one has .dynsym at most.
		{"test-binary", func(t *testing.T) string { p, _ := os.Executable(); return p }, false},
		{"go", func(t *testing.T) string { return build(t, "go", "go") }, true},
		{"libc", findLibc, true},
		{"ls", func(t *testing.T) string {
			if _, err := os.Stat("/bin/ls"); err != nil {
				t.Skip("no /bin/ls")
			}
			return "/bin/ls"
		}, false},
		{"c-pie", func(t *testing.T) string { return buildC(t, "c-pie", "-fPIE", "-pie") }, true},
		{"c-pie-stripped", func(t *testing.T) string {
			return buildC(t, "c-pie-stripped", "-fPIE", "-pie", "-rdynamic", "-s")
		}, true},
		{"cxx", func(t *testing.T) string {
			return build(t, "g++", "cxx", "-O1", "-g0", "testdata/fixture.cc")
		}, true},
		{"go-386", func(t *testing.T) string { return build(t, "go:386", "go-386") }, true},
		{"go-s390x", func(t *testing.T) string { return build(t, "go:s390x", "go-s390x") }, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := tt.path(t)
			f, ft := loadFuncTable(t, path)
			want := funcsByDebugELF(t, f)
			if tt.some && len(want) == 0 {
				t.Fatalf("%s: debug/elf finds no functions", path)
			}
			got := make([]wantFunc, len(ft.syms))
			for i, s := range ft.syms {
				got[i] = wantFunc{s.addr, uint64(s.size), string(ft.name(s.name))}
			}
			if len(got) != len(want) {
				t.Errorf("%s: %d functions, debug/elf %d", path, len(got), len(want))
			}
			for i := range min(len(got), len(want)) {
				if got[i] != want[i] {
					t.Fatalf("%s: function %d is %+v, debug/elf %+v", path, i, got[i], want[i])
				}
			}
			for _, w := range want {
				if name, ok := ft.lookup(w.addr); !ok || name != w.name {
					t.Fatalf("%s: lookup(%#x) = %q, want %q", path, w.addr, name, w.name)
				}
			}
			if cap(ft.syms) > len(ft.syms)*8/7+1 {
				t.Errorf("%s: %d slots kept for %d functions", path, cap(ft.syms), len(ft.syms))
			}
		})
	}
}

// loadPath loads the object of the file at path as the Symbolizer does.
func loadPath(t *testing.T, path string) *object {
	t.Helper()
	fh, size := openFile(t, path)
	o, err := loadObject(fh, size, mmapper(fh, size))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(o.evict)
	return o
}

// A Go binary's functions come from its pclntab: its symbol table adds
// nothing to the heap but the C functions outside the Go text.
func TestGoBinaryKeepsOnlyForeignSymbols(t *testing.T) {
	for _, name := range []string{"go", "go-stripped"} {
		t.Run(name, func(t *testing.T) {
			var flags []string
			if name == "go-stripped" {
				flags = []string{"-ldflags=-s -w"}
			}
			o := loadPath(t, build(t, "go", name, flags...))
			if o.goTab == nil || len(o.funcs.syms) != 0 {
				t.Fatalf("pclntab %v, %d ELF functions kept; want the pclntab only", o.goTab != nil, len(o.funcs.syms))
			}
			if o.heapBytes > 4<<10 || o.mappedBytes == 0 {
				t.Errorf("heap %d bytes, mapped %d: want under 4 KiB on the heap, the pclntab mapped", o.heapBytes, o.mappedBytes)
			}
		})
	}
	t.Run("cgo", func(t *testing.T) {
		path := build(t, "cgo", "cgo")
		o := loadPath(t, path)
		if o.goTab == nil {
			t.Fatal("no pclntab")
		}
		covered := o.goTab.covered()
		if covered.lo >= covered.hi {
			t.Fatalf("pclntab covers %+v", covered)
		}
		_, all := loadFuncTable(t, path)
		if len(o.funcs.syms) == 0 || len(o.funcs.syms) >= len(all.syms)/2 {
			t.Errorf("kept %d of %d ELF functions; want the C ones only", len(o.funcs.syms), len(all.syms))
		}
		found := false
		for _, s := range o.funcs.syms {
			if covered.holds(s.addr) {
				t.Errorf("kept %s at %#x, inside the pclntab's %#x-%#x", o.funcs.name(s.name), s.addr, covered.lo, covered.hi)
			}
			found = found || string(o.funcs.name(s.name)) == "leakwatch_c_grow"
		}
		if !found {
			t.Error("leakwatch_c_grow not kept")
		}
	})
}
