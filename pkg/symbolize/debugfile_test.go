package symbolize

import (
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/leakwatch/leakwatch/pkg/debugfile"
)

// A stripped C binary names its static functions only through its debug
// file, which distributions ship apart (-dbgsym packages, or a
// .gnu_debuglink beside the binary). The debug file is found where the
// process sees it, and a debug file of another build is never used.
func TestStrippedBinaryNamedFromItsDebugFile(t *testing.T) {
	if _, err := exec.LookPath("objcopy"); err != nil {
		t.Fatalf("objcopy not found (binutils; hack/install-deps.sh installs it): %v", err)
	}
	full := build(t, "cc", "debuglinked", "-O2", "-g", "testdata/debuglinked.c")
	other := build(t, "cc", "debuglinked-other", "-O2", "-g", "-DOTHER_BUILD=1", "testdata/debuglinked.c")
	// stripped writes the stripped binary into dir with a .gnu_debuglink
	// naming prog.debug, whose CRC objcopy takes from debugOf's debug file.
	stripped := func(t *testing.T, dir, debugOf string) string {
		t.Helper()
		dbg := filepath.Join(t.TempDir(), "prog.debug")
		prog := filepath.Join(dir, "prog")
		run(t, "objcopy", "--only-keep-debug", debugOf, dbg)
		run(t, "objcopy", "--strip-all", "--add-gnu-debuglink="+dbg, full, prog)
		return dbg
	}
	for _, tc := range []struct {
		name string
		// place puts the debug file dbg where the case says, beneath
		// the binary's directory dir.
		place func(t *testing.T, dir, dbg string)
		want  bool
		other bool // the debug file is another build's
	}{
		{name: "beside the binary", place: func(t *testing.T, dir, dbg string) { rename(t, dbg, filepath.Join(dir, "prog.debug")) }, want: true},
		{name: "in .debug beside the binary", place: func(t *testing.T, dir, dbg string) { rename(t, dbg, filepath.Join(dir, ".debug", "prog.debug")) }, want: true},
		{name: "nowhere", place: func(*testing.T, string, string) {}},
		{name: "another build's", place: func(t *testing.T, dir, dbg string) { rename(t, dbg, filepath.Join(dir, "prog.debug")) }, other: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			debugOf := full
			if tc.other {
				debugOf = other
			}
			dbg := stripped(t, dir, debugOf)
			tc.place(t, dir, dbg)
			f := start(t, filepath.Join(dir, "prog"), "hidden_helper")
			addr := f.vals["hidden_helper"]
			// While the process runs, and after it exits (the file and
			// its debug file held since capture).
			s := newTestSymbolizer(t, Config{})
			if err := s.Capture(f.pid, f.start); err != nil {
				t.Fatal(err)
			}
			live := funcName(symbolize(t, s, f, addr)[0])
			s2 := newTestSymbolizer(t, Config{})
			if err := s2.Capture(f.pid, f.start); err != nil {
				t.Fatal(err)
			}
			f.stop(t)
			exited := funcName(symbolize(t, s2, f, addr)[0])
			// Without its debug file the stripped binary names nothing:
			// any name would be made up.
			want := fmt.Sprintf("<unknown %#x>", addr)
			if tc.want {
				want = "hidden_helper"
			}
			for when, got := range map[string]string{"running": live, "exited": exited} {
				if got != want {
					t.Errorf("%s: hidden_helper resolves to %q, want %q", when, got, want)
				}
			}
		})
	}
}

// Debian's libc is stripped; libc6-dbg (hack/install-deps.sh installs it)
// holds its .symtab under /usr/lib/debug/.build-id. Its allocator's
// internals, which no .dynsym names, are named from there.
func TestLibcInternalsNamedFromLibc6Dbg(t *testing.T) {
	const libc = "/lib/x86_64-linux-gnu/libc.so.6"
	lf := openELFFile(t, libc)
	id := readBuildID(lf, func(uint64, uint64) bool { return true })
	debug := filepath.Join(debugfile.Root, ".build-id", id[:2], id[2:]+".debug")
	if _, err := os.Stat(debug); err != nil {
		t.Fatalf("libc's debug file: %v (Debian package libc6-dbg; hack/install-deps.sh installs it)", err)
	}
	value := func(syms []elf.Symbol, name string) uint64 {
		for _, s := range syms {
			if s.Name == name && s.Value != 0 {
				return s.Value
			}
		}
		t.Fatalf("no symbol %s", name)
		return 0
	}
	dyn, err := lf.DynamicSymbols()
	if err != nil {
		t.Fatal(err)
	}
	internal := elfSymbols(t, debug)
	f := start(t, build(t, "cc", "debuglinked", "-O2", "-g", "testdata/debuglinked.c"), "hidden_helper", "value", "malloc")
	base := f.vals["malloc"] - value(dyn, "malloc")
	s := newTestSymbolizer(t, Config{})
	for _, name := range []string{"sysmalloc", "_int_malloc"} {
		addr := base + value(internal, name) + 1
		if got := funcName(symbolize(t, s, f, addr)[0]); got != name {
			t.Errorf("libc's %s at %#x resolves to %q", name, addr, got)
		}
	}
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

func rename(t *testing.T, from, to string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(from, to); err != nil {
		t.Fatal(err)
	}
}
