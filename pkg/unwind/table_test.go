package unwind

import (
	"bufio"
	"bytes"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/leakwatch/leakwatch/pkg/debugfile"
)

// The binaries whose CFI the tests read: Debian's own, from their packages
// (python3 is a link to the versioned interpreter).
var debianBinaries = []string{
	"/lib/x86_64-linux-gnu/libc.so.6",
	"/usr/bin/python3",
	"/usr/bin/redis-server",
}

// debianPython is the interpreter /usr/bin/python3 names; perf reports the
// file, not the link.
func debianPython(t testing.TB) string {
	t.Helper()
	p, err := filepath.EvalSymlinks("/usr/bin/python3")
	if err != nil {
		t.Fatalf("python3: %v (hack/install-deps.sh installs it)", err)
	}
	return p
}

// readelfRow is one row of `readelf -wF`: binutils' own reading of the CFI,
// the reference the table is checked against.
type readelfRow struct {
	loc      uint64
	cfa      string // "rsp+16", "rbp+16", "exp"
	rbp, ra  string // "u", "c-16", ...
	fdeBegin uint64
}

func readelfRows(t *testing.T, path string) []readelfRow {
	t.Helper()
	// binutils 2.40's readelf exits 1 after printing libc's tables with
	// no message; the rows count below checks the output is whole.
	out, err := exec.Command("readelf", "-wF", path).Output()
	if err != nil && len(out) == 0 {
		t.Fatalf("readelf -wF %s: %v", path, err)
	}
	var rows []readelfRow
	var cols []string
	var fdeBegin uint64
	inFDE := false
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		switch {
		case len(f) >= 4 && f[3] == "FDE":
			inFDE = true
			pc := strings.TrimPrefix(f[len(f)-1], "pc=")
			b, _, _ := strings.Cut(pc, "..")
			fdeBegin, _ = strconv.ParseUint(b, 16, 64)
		case len(f) >= 4 && f[3] == "CIE":
			inFDE = false
		case len(f) > 0 && f[0] == "LOC":
			cols = f
		case inFDE && len(f) == len(cols) && len(f) >= 3:
			loc, err := strconv.ParseUint(f[0], 16, 64)
			if err != nil || f[1] == "ZERO" { // readelf's line for the section's terminator
				continue
			}
			r := readelfRow{loc: loc, cfa: f[1], rbp: "u", fdeBegin: fdeBegin}
			if !strings.HasPrefix(r.cfa, "rsp+") && !strings.HasPrefix(r.cfa, "rbp+") {
				r.cfa = "exp" // an expression or another register: not evaluated
			}
			for i, c := range cols {
				switch c {
				case "rbp":
					r.rbp = f[i]
				case "ra":
					r.ra = f[i]
				}
			}
			// Rules the table does not follow are "?" on both sides.
			if r.rbp != "u" && !strings.HasPrefix(r.rbp, "c") {
				r.rbp = "?"
			}
			if r.ra != "u" && r.ra != "c-8" {
				r.ra = "?"
			}
			rows = append(rows, r)
		}
	}
	return rows
}

// TestTableMatchesReadelf checks every row binutils prints for Debian's
// libc, python3 and redis-server against the table's lookup at that PC.
func TestTableMatchesReadelf(t *testing.T) {
	for _, path := range debianBinaries {
		if _, err := os.Stat(path); err != nil {
			t.Fatalf("%s: %v (installed by hack/install-deps.sh)", path, err)
		}
		t.Run(path, func(t *testing.T) {
			tab, err := BuildTable("", path)
			if err != nil {
				t.Fatalf("BuildTable: %v", err)
			}
			ref := readelfRows(t, path)
			if len(ref) < 1000 {
				t.Fatalf("readelf printed %d rows; expected thousands", len(ref))
			}
			bad := 0
			for _, r := range ref {
				got, ok := tab.rows.lookup(r.loc)
				if want := describe(got, ok); want != r.cfa+" "+r.rbp+" "+r.ra {
					if bad < 10 {
						t.Errorf("pc %#x (fde %#x): table %q, readelf %q", r.loc, r.fdeBegin, want, r.cfa+" "+r.rbp+" "+r.ra)
					}
					bad++
				}
			}
			t.Logf("%s: %d readelf rows, %d table rows (%d KiB), %d differ", path, len(ref), tab.Rows(), tab.Size()>>10, bad)
			if bad > 0 {
				t.Errorf("%d of %d rows differ", bad, len(ref))
			}
		})
	}
}

// describe prints a row in readelf's notation.
func describe(r row, ok bool) string {
	if !ok {
		return "none"
	}
	var cfa string
	switch r.CFA {
	case cfaRSP:
		cfa = "rsp+" + strconv.Itoa(int(r.CFAOff))
	case cfaRBP:
		cfa = "rbp+" + strconv.Itoa(int(r.CFAOff))
	case cfaPLT10, cfaPLT11, cfaSignal, cfaUnknown:
		cfa = "exp"
	}
	rbp := "u"
	if r.Flags&flagRBPSaved != 0 {
		rbp = fmt.Sprintf("c%+d", r.RBPOff)
	} else if r.Flags&flagRBPUnknown != 0 {
		rbp = "?"
	}
	ra := "c-8"
	if r.Flags&flagRAUndefined != 0 {
		ra = "u"
	} else if r.Flags&flagRAUnknown != 0 {
		ra = "?"
	}
	return cfa + " " + rbp + " " + ra
}

// TestTableFromDebugFile builds a program whose own functions carry only
// .debug_frame (no unwind tables), strips that into a debug file found by
// build id under a root directory (as /proc/PID/root would be), and checks
// the table against readelf's reading of the unstripped program.
func TestTableFromDebugFile(t *testing.T) {
	root := t.TempDir()
	full := filepath.Join(t.TempDir(), "sixlevels")
	cmd := exec.Command("gcc", "-O2", "-g", "-fomit-frame-pointer", "-fno-asynchronous-unwind-tables", "-fno-unwind-tables",
		"-o", full, "testdata/sixlevels.c")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	f, err := elf.Open(full)
	if err != nil {
		t.Fatal(err)
	}
	id := BuildID(f)
	f.Close()
	if len(id) < 4 {
		t.Fatalf("no build id in %s", full)
	}
	debug := filepath.Join(root, debugfile.Root, ".build-id", id[:2], id[2:]+".debug")
	if err := os.MkdirAll(filepath.Dir(debug), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	stripped := filepath.Join(root, "bin", "sixlevels")
	for _, c := range [][]string{
		{"objcopy", "--only-keep-debug", full, debug},
		{"objcopy", "--strip-debug", full, stripped},
	} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", c, err, out)
		}
	}
	tab, err := BuildTable(root, "/bin/sixlevels")
	if err != nil {
		t.Fatalf("BuildTable: %v", err)
	}
	ref := readelfRows(t, full)
	bad, levels := 0, 0
	for _, r := range ref {
		got, ok := tab.rows.lookup(r.loc)
		if d := describe(got, ok); d != r.cfa+" "+r.rbp+" "+r.ra {
			bad++
			t.Errorf("pc %#x: table %q, readelf %q", r.loc, d, r.cfa+" "+r.rbp+" "+r.ra)
		}
	}
	// The levels' rows come from .debug_frame only: check they are there.
	sf, err := elf.Open(full)
	if err != nil {
		t.Fatal(err)
	}
	defer sf.Close()
	syms, err := sf.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range syms {
		if strings.HasPrefix(s.Name, "level") {
			if _, ok := tab.rows.lookup(s.Value); ok {
				levels++
			}
		}
	}
	if levels != 6 {
		t.Errorf("%d of the six levels have rows, want 6 (from the debug file's .debug_frame)", levels)
	}
	t.Logf("%d readelf rows, %d differ; %d table rows", len(ref), bad, tab.Rows())
}

func TestGoAtTellsCFromGoInAGoBinary(t *testing.T) {
	goBin := &Table{goCode: true, cCode: [][2]uint64{{0x100, 0x200}, {0x400, 0x480}}}
	for _, tc := range []struct {
		va   uint64
		want bool
	}{{0x50, true}, {0x100, false}, {0x1ff, false}, {0x200, true}, {0x47f, false}, {0x480, true}} {
		if got := goBin.goAt(tc.va); got != tc.want {
			t.Errorf("goAt(%#x) = %v, want %v", tc.va, got, tc.want)
		}
	}
	if (&Table{}).goAt(0x150) {
		t.Error("a C binary's code taken for Go")
	}
}

// The compact rows give back what they were built of, and refuse what
// they cannot hold rather than wrap.
func TestCompactRows(t *testing.T) {
	var rows []row
	for i := range 1000 {
		rows = append(rows, row{PC: 0x400000 + uint64(i)*16, rule: rule{CFAOff: int32(8 + i%5*8), RBPOff: int16(-16 * (i % 2)), CFA: cfaRSP, Flags: uint8(i % 3)}})
	}
	rows = append(rows, row{PC: 0x400000 + 1000*16, rule: rule{CFA: cfaNone}})
	tab, err := compactRows(rows)
	if err != nil {
		t.Fatal(err)
	}
	if len(tab.rules) != 31 { // 30 rules and the gap's
		t.Errorf("%d distinct rules, want 31", len(tab.rules))
	}
	for i, r := range rows[:1000] {
		for _, pc := range []uint64{r.PC, r.PC + 15} {
			if got, ok := tab.lookup(pc); !ok || got != r {
				t.Fatalf("row %d at %#x: got %+v %v, want %+v", i, pc, got, ok, r)
			}
		}
	}
	for _, pc := range []uint64{0x3fffff, 0x400000 + 1000*16, 0x400000 + 1<<33} {
		if got, ok := tab.lookup(pc); ok {
			t.Errorf("%#x is outside the rows, got %+v", pc, got)
		}
	}
	if want := 1001*6 + 31*8; tab.size() != want {
		t.Errorf("size %d, want %d", tab.size(), want)
	}

	if _, err := compactRows([]row{{PC: 0x1000, rule: rule{CFA: cfaRSP}}, {PC: 0x1000 + 1<<32, rule: rule{CFA: cfaNone}}}); err == nil {
		t.Error("rows spanning 4 GiB were compacted")
	}
	many := make([]row, 1<<16+1)
	for i := range many {
		many[i] = row{PC: uint64(i), rule: rule{CFAOff: int32(i), CFA: cfaRSP}}
	}
	if _, err := compactRows(many); err == nil {
		t.Error("65,537 distinct rules were compacted")
	}
}
