package symbolize

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"debug/gosym"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Go binaries as they are shipped, checked function by function against
// references that do not share this package's reader: the ELF symbol
// table of the same (or an identical unstripped) build, `go tool
// addr2line`, and for binaries that ship stripped, debug/gosym and the
// machine code's own call targets.

// Debian binaries of Go 1.19 (pclntab magic 0xfffffff0), stripped and
// linked externally: their .text starts with C start-up code, before
// runtime.text. hack/install-deps.sh installs them.
var debianGoBinaries = []string{"/usr/bin/prometheus", "/usr/bin/fzf"}

// requireFile fails where CI must have the file and skips, saying so,
// elsewhere.
func requireFile(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		if os.Getenv("LEAKWATCH_REQUIRE_PRIVILEGED") == "1" {
			t.Fatalf("%s: %v (hack/install-deps.sh installs it)", path, err)
		}
		t.Skipf("%s: %v; run hack/install-deps.sh", path, err)
	}
}

// symtabFuncs returns the Go functions of an unstripped binary's symbol
// table: those between runtime.text and runtime.etext with a package path
// in their names (internal linking puts C code there too), named as the
// pclntab names them (without the .abi0 of assembly functions).
func symtabFuncs(t *testing.T, path string) []elf.Symbol {
	t.Helper()
	syms := elfSymbols(t, path)
	var text, etext uint64
	for _, s := range syms {
		switch s.Name {
		case "runtime.text":
			text = s.Value
		case "runtime.etext":
			etext = s.Value
		}
	}
	if text == 0 || etext <= text {
		t.Fatalf("%s: runtime.text %#x, runtime.etext %#x", path, text, etext)
	}
	var out []elf.Symbol
	for _, s := range syms {
		if elf.ST_TYPE(s.Info) == elf.STT_FUNC && s.Size > 0 && s.Value >= text && s.Value < etext &&
			strings.Contains(s.Name, ".") && !strings.Contains(s.Name, "(") {
			s.Name = strings.TrimSuffix(s.Name, ".abi0")
			out = append(out, s)
		}
	}
	return out
}

// elfSymbols returns the symbol table of the file at path.
func elfSymbols(t *testing.T, path string) []elf.Symbol {
	t.Helper()
	syms, err := openELFFile(t, path).Symbols()
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return syms
}

// openELFFile opens path with debug/elf until the test ends.
func openELFFile(t *testing.T, path string) *elf.File {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// samplePCs returns, for every stride-th function, its entry, a PC in
// its middle and its last byte.
func samplePCs(entry, size uint64) []uint64 {
	return []uint64{entry, entry + size/2, entry + size - 1}
}

// outermost is the function holding pc by o's reading: the last frame.
func outermost(o *object, pc uint64) string {
	fr := o.frames(pc)
	if len(fr) == 0 {
		return ""
	}
	return fr[len(fr)-1].Function
}

// tally counts PCs checked and named right, and keeps a few misses.
type tally struct {
	checked, right int
	misses         []string
}

func (c *tally) check(pc uint64, got, want string) {
	c.checked++
	if got == want {
		c.right++
	} else if len(c.misses) < 5 {
		c.misses = append(c.misses, fmt.Sprintf("%#x: %q, want %q", pc, got, want))
	}
}

func (c *tally) report(t *testing.T, what string) {
	t.Helper()
	t.Logf("%s: %d PCs checked, %d named right", what, c.checked, c.right)
	if c.checked == 0 || c.right != c.checked {
		t.Errorf("%s: %d of %d PCs named wrong: %s", what, c.checked-c.right, c.checked, strings.Join(c.misses, "; "))
	}
}

// checkAgainstSymtab symbolizes PCs of bin by o and compares the outermost
// function with the symbol table of ref, an unstripped build of the same
// code.
func checkAgainstSymtab(t *testing.T, o *object, ref string) {
	t.Helper()
	var c tally
	funcs := symtabFuncs(t, ref)
	stride := max(1, len(funcs)/1500)
	for i := 0; i < len(funcs); i += stride {
		s := funcs[i]
		for _, pc := range samplePCs(s.Value, s.Size) {
			// The linker writes the middle dot of the pclntab's names
			// as a dot into ELF symbols.
			c.check(pc, strings.ReplaceAll(outermost(o, pc), "·", "."), s.Name)
		}
	}
	c.report(t, "against the ELF symbol table")
}

// addr2line asks `go tool addr2line` for the functions at pcs.
func addr2line(t *testing.T, bin string, pcs []uint64) []string {
	t.Helper()
	var in bytes.Buffer
	for _, pc := range pcs {
		fmt.Fprintf(&in, "%#x\n", pc)
	}
	cmd := exec.Command("go", "tool", "addr2line", bin)
	cmd.Stdin = &in
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go tool addr2line: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 2*len(pcs) {
		t.Fatalf("go tool addr2line answered %d lines for %d PCs", len(lines), len(pcs))
	}
	names := make([]string, len(pcs))
	for i := range pcs {
		names[i] = lines[2*i]
	}
	return names
}

// Go 1.26 builds of testdata/cgofixture, linked internally and externally,
// PIE or not, with and without symbols. An external link puts C start-up
// code before runtime.text, and Go 1.26 no longer writes the text start into
// the pclntab header, so a stripped one is right only if the runtime's
// moduledata is found.
func TestGoBuildsAgainstSymtab(t *testing.T) {
	for _, tt := range []struct {
		name, tool, buildmode, linkmode string
	}{
		{"internal", "cgo", "exe", "internal"},
		{"external", "cgo", "exe", "external"},
		{"pie-internal", "cgo", "pie", "internal"},
		{"pie-external", "cgo", "pie", "external"},
		// Other machines and a 32-bit one, without cgo.
		{"arm64", "go:arm64", "exe", "internal"},
		{"386", "go:386", "exe", "internal"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// -trimpath: the two builds' sources are in different
			// directories, and their file names are compared.
			mode, link := "-buildmode="+tt.buildmode, "-ldflags=-linkmode="+tt.linkmode
			full := build(t, tt.tool, "real-"+tt.name, "-trimpath", mode, link)
			stripped := build(t, tt.tool, "real-"+tt.name+"-stripped", "-trimpath", mode, link+" -s -w")
			t.Run("unstripped", func(t *testing.T) { checkAgainstSymtab(t, loadPath(t, full), full) })
			t.Run("stripped", func(t *testing.T) {
				sameLayout(t, full, stripped)
				o := loadPath(t, stripped)
				checkAgainstSymtab(t, o, full)
				checkInlining(t, o, gosymTable(t, full))
			})
			t.Run("no-section-headers", func(t *testing.T) {
				checkAgainstSymtab(t, loadPath(t, dropSectionHeaders(t, stripped)), full)
			})
		})
	}
}

// The reference itself is checked: on an internally linked binary, where
// the Go tools' reading (.text as the text start) is right, `go tool
// addr2line` names what the symbol table names.
func TestSymtabReferenceAgreesWithAddr2line(t *testing.T) {
	bin := build(t, "cgo", "real-internal", "-trimpath", "-buildmode=exe", "-ldflags=-linkmode=internal")
	funcs := symtabFuncs(t, bin)
	var pcs []uint64
	var want []string
	for i := 0; i < len(funcs); i += max(1, len(funcs)/300) {
		for _, pc := range samplePCs(funcs[i].Value, funcs[i].Size) {
			pcs = append(pcs, pc)
			want = append(want, funcs[i].Name)
		}
	}
	o := loadPath(t, bin)
	var c tally
	for i, name := range addr2line(t, bin, pcs) {
		if name != want[i] {
			t.Fatalf("%#x: addr2line %q, symbol table %q", pcs[i], name, want[i])
		}
		c.check(pcs[i], outermost(o, pcs[i]), name)
	}
	c.report(t, "against go tool addr2line")
}

// A Go 1.17 binary (pclntab magic 0xfffffffa) that Go's own source tree
// keeps as test data, unstripped, with strip(1)'s output and without
// section headers.
func TestGo117Binary(t *testing.T) {
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		t.Fatalf("go env GOROOT: %v", err)
	}
	src := filepath.Join(strings.TrimSpace(string(out)), "src/debug/buildinfo/testdata/go117/go117.base64")
	enc, err := os.ReadFile(src)
	if err != nil {
		t.Fatalf("the Go toolchain's Go 1.17 test binary: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "go117")
	data, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(string(enc)), ""))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if m := pclntabMagic(t, bin); m != goMagic116 {
		t.Fatalf("magic %#x, want the Go 1.16 layout", m)
	}
	checkAgainstSymtab(t, loadPath(t, bin), bin)
	stripped := bin + "-stripped"
	if msg, err := exec.Command("strip", "-o", stripped, bin).CombinedOutput(); err != nil {
		t.Fatalf("strip: %v\n%s", err, msg)
	}
	t.Run("stripped", func(t *testing.T) { checkAgainstSymtab(t, loadPath(t, stripped), bin) })
	t.Run("no-section-headers", func(t *testing.T) {
		checkAgainstSymtab(t, loadPath(t, dropSectionHeaders(t, stripped)), bin)
	})
}

// Debian's stripped Go 1.19 binaries: names as debug/gosym reads the same
// table from the header's text start, and function entries where the
// machine code's direct calls land.
func TestDebianGoBinaries(t *testing.T) {
	for _, bin := range debianGoBinaries {
		t.Run(filepath.Base(bin), func(t *testing.T) {
			requireFile(t, bin)
			if m := pclntabMagic(t, bin); m != goMagic118 {
				t.Fatalf("magic %#x, want the Go 1.18 layout", m)
			}
			o := loadPath(t, bin)
			tab := gosymTable(t, bin)
			var c tally
			stride := max(1, len(tab.Funcs)/1500)
			for i := 0; i < len(tab.Funcs); i += stride {
				fn := tab.Funcs[i]
				for _, pc := range samplePCs(fn.Entry, fn.End-fn.Entry) {
					c.check(pc, outermost(o, pc), fn.Name)
				}
			}
			c.report(t, "against debug/gosym")
			checkInlining(t, o, tab)
			checkCallTargets(t, o, bin)
			checkGoexit(t, o, bin)
			t.Run("no-section-headers", func(t *testing.T) {
				o := loadPath(t, dropSectionHeaders(t, bin))
				var c tally
				for i := 0; i < len(tab.Funcs); i += stride {
					fn := tab.Funcs[i]
					c.check(fn.Entry, outermost(o, fn.Entry), fn.Name)
				}
				c.report(t, "without section headers, against debug/gosym")
			})
		})
	}
}

// checkInlining checks the inlined frames o gives at PCs across tab's
// functions: the innermost frame is at the file and line debug/gosym gives
// (the innermost position), and an inlined function that also exists on
// its own is in that function's file.
func checkInlining(t *testing.T, o *object, tab *gosym.Table) {
	t.Helper()
	var c tally
	inlined := 0
	for i := 0; i < len(tab.Funcs); i += max(1, len(tab.Funcs)/1000) {
		fn := tab.Funcs[i]
		if !strings.Contains(fn.Name, ".") {
			// C code an internal link put into the table, without
			// positions of its own (debug/gosym makes one up).
			continue
		}
		for k := uint64(0); k < 16; k++ {
			pc := fn.Entry + k*(fn.End-fn.Entry)/16
			fr := o.frames(pc)
			file, line, _ := tab.PCToLine(pc)
			if len(fr) == 0 || file == "" {
				continue
			}
			c.check(pc, fmt.Sprintf("%s:%d", fr[0].File, fr[0].Line), fmt.Sprintf("%s:%d", file, line))
			if len(fr) > 1 {
				inlined++
			}
			for _, f := range fr[:len(fr)-1] {
				if own := tab.LookupFunc(f.Function); own != nil {
					ownFile, _, _ := tab.PCToLine(own.Entry)
					c.check(pc, f.Function+" in "+f.File, f.Function+" in "+ownFile)
				}
			}
		}
	}
	t.Logf("%d PCs with inlined frames", inlined)
	c.report(t, "inlined frames against debug/gosym")
	if inlined < c.checked/20 {
		t.Errorf("%d of %d PCs in inlined code: the inline trees were not read", inlined, c.checked)
	}
}

// checkCallTargets disassembles part of bin with GNU objdump and checks
// that every direct call lands on the entry of a function by o's reading
// (the runtime's Duff devices, entered in the middle, excepted).
func checkCallTargets(t *testing.T, o *object, bin string) {
	t.Helper()
	text := openELFFile(t, bin).Section(".text")
	lo := text.Addr + text.Size/3
	cmd := exec.Command("objdump", "-d", "--no-show-raw-insn", fmt.Sprintf("--start-address=%#x", lo), fmt.Sprintf("--stop-address=%#x", lo+1<<20), bin)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("objdump: %v", err)
	}
	call := regexp.MustCompile(`\scall\s+([0-9a-f]+)`)
	var c tally
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() && c.checked < 3000 {
		m := call.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		target, _ := strconv.ParseUint(m[1], 16, 64)
		name := outermost(o, target)
		if strings.HasPrefix(name, "runtime.duff") {
			continue
		}
		// An entry is where the function's name begins: the byte before
		// belongs to another function, or to none.
		entry := name != "" && outermost(o, target-1) != name
		c.check(target, fmt.Sprint(entry), "true")
	}
	c.report(t, "direct call targets are function entries")
}

// checkGoexit finds runtime.goexit, the frame every goroutine's stack ends
// in: its code is a NOP, a call of runtime.goexit1 and a NOP, so the return
// address its frames carry, past the call, must still be named goexit.
func checkGoexit(t *testing.T, o *object, bin string) {
	t.Helper()
	tab := gosymTable(t, bin)
	fn := tab.LookupFunc("runtime.goexit")
	if fn == nil {
		t.Fatal("no runtime.goexit in debug/gosym's reading")
	}
	code := readAt(t, openELFFile(t, bin), fn.Entry, 7)
	if code[0] != 0x90 || code[1] != 0xe8 {
		t.Fatalf("runtime.goexit at %#x starts % x, not NOP; CALL", fn.Entry, code)
	}
	target := fn.Entry + 6 + uint64(int64(int32(binary.LittleEndian.Uint32(code[2:]))))
	for pc, want := range map[uint64]string{fn.Entry: "runtime.goexit", fn.Entry + 6: "runtime.goexit", target: "runtime.goexit1"} {
		if got := outermost(o, pc); got != want {
			t.Errorf("%#x: %q, want %q", pc, got, want)
		}
	}
}

func gosymTable(t *testing.T, bin string) *gosym.Table {
	t.Helper()
	f := openELFFile(t, bin)
	data, err := f.Section(".gopclntab").Data()
	if err != nil {
		t.Fatal(err)
	}
	// The Go 1.18 header's own text start, which debug/gosym takes as
	// given, else (later Go writes 0 there) runtime.text.
	textStart := uint64(f.ByteOrder.Uint32(data[8+2*4:]))
	if ptr := data[7]; ptr == 8 {
		textStart = f.ByteOrder.Uint64(data[8+2*8:])
	}
	if textStart == 0 {
		for _, s := range elfSymbols(t, bin) {
			if s.Name == "runtime.text" {
				textStart = s.Value
			}
		}
	}
	tab, err := gosym.NewTable(nil, gosym.NewLineTable(data, textStart))
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

func pclntabMagic(t *testing.T, bin string) uint32 {
	t.Helper()
	f := openELFFile(t, bin)
	s := f.Section(".gopclntab")
	if s == nil {
		t.Fatalf("%s: no .gopclntab", bin)
	}
	b := make([]byte, 4)
	if _, err := s.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	return f.ByteOrder.Uint32(b)
}

// readAt reads n bytes of f at a virtual address.
func readAt(t *testing.T, f *elf.File, addr uint64, n int) []byte {
	t.Helper()
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && addr >= p.Vaddr && addr+uint64(n) <= p.Vaddr+p.Filesz {
			b := make([]byte, n)
			if _, err := p.ReadAt(b, int64(addr-p.Vaddr)); err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
	t.Fatalf("%#x not in a segment", addr)
	return nil
}

// sameLayout fails unless b holds a's functions at the same addresses:
// the same text section, and at each function's entry in a's symbol table
// the same first bytes. The code is not identical: stripping moves the
// data, which its PC-relative operands reach.
func sameLayout(t *testing.T, a, b string) {
	t.Helper()
	fa, fb := openELFFile(t, a), openELFFile(t, b)
	texts := [2]*elf.Section{fa.Section(".text"), fb.Section(".text")}
	if texts[0].Addr != texts[1].Addr || texts[0].Size != texts[1].Size {
		t.Fatalf("%s and %s differ in their text sections", a, b)
	}
	same := 0
	funcs := symtabFuncs(t, a)
	for _, s := range funcs {
		n := int(min(s.Size, 4))
		if bytes.Equal(readAt(t, fa, s.Value, n), readAt(t, fb, s.Value, n)) {
			same++
		}
	}
	// A function starting with a PC-relative instruction differs; a
	// shifted layout would differ nearly everywhere.
	if same < len(funcs)*9/10 {
		t.Fatalf("%s and %s: %d of %d functions start alike: the symbol table of one is no reference for the other", a, b, same, len(funcs))
	}
}

// dropSectionHeaders copies bin without its section header table, as
// sstrip leaves a binary: only the program headers say what is where.
func dropSectionHeaders(t *testing.T, bin string) string {
	t.Helper()
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) < 64 || data[5] != byte(elf.ELFDATA2LSB) {
		t.Fatalf("%s: not a little-endian ELF file", bin)
	}
	// e_shoff, e_shnum and e_shstrndx.
	switch elf.Class(data[4]) {
	case elf.ELFCLASS64:
		binary.LittleEndian.PutUint64(data[0x28:], 0)
		binary.LittleEndian.PutUint16(data[0x3c:], 0)
		binary.LittleEndian.PutUint16(data[0x3e:], 0)
	case elf.ELFCLASS32:
		binary.LittleEndian.PutUint32(data[0x20:], 0)
		binary.LittleEndian.PutUint16(data[0x30:], 0)
		binary.LittleEndian.PutUint16(data[0x32:], 0)
	default:
		t.Fatalf("%s: ELF class %d", bin, data[4])
	}
	out := filepath.Join(t.TempDir(), filepath.Base(bin)+"-noshdr")
	if err := os.WriteFile(out, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return out
}

// The Go 1.2 layout (magic 0xfffffffb) from a Go 1.15 build that Go's own
// source tree keeps as test data (its pclntab only): entries are absolute,
// so no text start is needed; Go's test of it places main.main at 0x105c280.
func TestGo115Pclntab(t *testing.T) {
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		t.Fatalf("go env GOROOT: %v", err)
	}
	fh, err := os.Open(filepath.Join(strings.TrimSpace(string(out)), "src/debug/gosym/testdata/pcln115.gz"))
	if err != nil {
		t.Fatalf("the Go toolchain's Go 1.15 pclntab: %v", err)
	}
	defer fh.Close()
	zr, err := gzip.NewReader(fh)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if m := binary.LittleEndian.Uint32(data); m != goMagic12 {
		t.Fatalf("magic %#x, want the Go 1.2 layout", m)
	}
	if !plausibleHeader(data, binary.LittleEndian) {
		t.Error("the scan would not accept the header")
	}
	tab := legacyTable(data)
	if tab == nil {
		t.Fatal("table not read")
	}
	g := &goTable{legacy: tab}
	for _, pc := range []uint64{0x105c280, 0x105c281} {
		if fr := g.frames(pc); len(fr) != 1 || fr[0].Function != "main.main" {
			t.Errorf("%#x: %+v, want main.main", pc, fr)
		}
	}
}

// A running prometheus names its own goroutines' frames, through its
// runtime, in /debug/pprof/goroutine?debug=1: every "#" line is a PC (the
// call instruction) and a function, the inlined ones first. The Symbolizer,
// reading the same live process from outside, must name each PC alike, and
// the last return address of every stack, in runtime.goexit, as goexit (the
// issue saw runtime.gcWriteBarrier there).
func TestRunningPrometheusAgreesWithItsRuntime(t *testing.T) {
	const bin = "/usr/bin/prometheus"
	requireFile(t, bin)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte("global: {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	cmd := exec.Command(bin, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr)
	logPath := filepath.Join(dir, "log")
	logs, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logs.Close()
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	dump := fetchWhenUp(t, "http://"+addr+"/debug/pprof/goroutine?debug=1", time.Minute, logPath)

	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	ticks, err := statStartTime(stat)
	if err != nil {
		t.Fatal(err)
	}
	s := newTestSymbolizer(t, Config{})
	pid, start := uint32(cmd.Process.Pid), ticks*(1e9/clockTicks)
	names := func(stack ...uint64) [][]string {
		locs, err := s.Symbolize(pid, start, stack)
		if err != nil {
			t.Fatal(err)
		}
		out := make([][]string, len(locs))
		for i, l := range locs {
			for _, f := range l.Frames {
				out[i] = append(out[i], f.Function)
			}
		}
		return out
	}

	frame := regexp.MustCompile(`^#\s+0x([0-9a-f]+)\s+(\S+)\+0x[0-9a-f]+\s`)
	var pcs []uint64
	want := map[uint64][]string{}
	var goexits []uint64
	// runtime.Callers lists inlined calls as frames of their own, each at
	// its call site's PC: the lines in one physical function, which
	// debug/gosym tells, are one PC's frames for the Symbolizer. Go never
	// inlines a function into itself, so a function that follows itself
	// is a recursive call: a frame of its own.
	tab := gosymTable(t, bin)
	var last, lastEntry uint64
	for _, line := range strings.Split(dump, "\n") {
		if m := frame.FindStringSubmatch(line); m != nil {
			pc, _ := strconv.ParseUint(m[1], 16, 64)
			fn := tab.PCToFunc(pc)
			if fn == nil {
				t.Fatalf("%#x: no function in debug/gosym's reading", pc)
			}
			if last == 0 || fn.Entry != lastEntry || want[last][len(want[last])-1] == m[2] {
				if _, ok := want[pc]; !ok {
					pcs = append(pcs, pc)
				}
				want[pc], last, lastEntry = nil, pc, fn.Entry
			}
			want[last] = append(want[last], m[2])
			continue
		}
		last = 0
		if _, rets, ok := strings.Cut(line, " @ "); ok {
			f := strings.Fields(rets)
			ret, _ := strconv.ParseUint(strings.TrimPrefix(f[len(f)-1], "0x"), 16, 64)
			goexits = append(goexits, ret)
		}
	}
	var c tally
	for _, pc := range pcs {
		c.check(pc, strings.Join(names(pc)[0], " < "), strings.Join(want[pc], " < "))
	}
	c.report(t, "against the runtime's own frames")
	var g tally
	for _, ret := range goexits {
		// As the tracer reports it: a return address after a leaf.
		got := names(0, ret)[1]
		g.check(ret, strings.Join(got, " < "), "runtime.goexit")
	}
	g.report(t, "last return address of each goroutine")
}

// fetchWhenUp gets url once the server answers, within d; else it fails
// with the server's log.
func fetchWhenUp(t *testing.T, url string, d time.Duration, logPath string) string {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(d)
	for {
		resp, err := client.Get(url)
		if err == nil {
			body, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if rerr == nil && resp.StatusCode == http.StatusOK {
				return string(body)
			}
			err = fmt.Errorf("status %s, %w", resp.Status, rerr)
		}
		if time.Now().After(deadline) {
			logs, _ := os.ReadFile(logPath)
			t.Fatalf("%s: %v\n%s", url, err, logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
