package unwind

import (
	"cmp"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"sort"

	"github.com/leakwatch/leakwatch/pkg/debugfile"
)

// Table is the compact unwind table of one binary: rows sorted by ELF
// virtual address, and the load segments that turn a file offset into one.
type Table struct {
	rows  rowTable
	loads []load
	// goCode marks a Go binary: Go keeps frame pointers but switches
	// stacks (systemstack, cgo), which no window of one stack can follow.
	// cCode are the ranges of C code in it (sorted [begin, end) vaddrs).
	goCode bool
	cCode  [][2]uint64
}

// goAt says whether vaddr is Go code: in a Go binary, outside its C.
func (t *Table) goAt(vaddr uint64) bool {
	if !t.goCode {
		return false
	}
	i := sort.Search(len(t.cCode), func(i int) bool { return t.cCode[i][1] > vaddr })
	return i == len(t.cCode) || vaddr < t.cCode[i][0]
}

// GoCode says the table is a Go binary's (see Table.goCode).
func (t *Table) GoCode() bool { return t.goCode }

type load struct {
	off, vaddr, size uint64
}

// Size is the table's memory cost in bytes, for the cache's bound.
func (t *Table) Size() int { return t.rows.size() + cap(t.loads)*24 + cap(t.cCode)*16 + 64 }

// Rows is the number of rows, for reports and tests.
func (t *Table) Rows() int { return t.rows.len() }

// vaddr turns a file offset into the ELF virtual address the table uses.
func (t *Table) vaddr(fileOff uint64) (uint64, bool) {
	for _, l := range t.loads {
		if fileOff >= l.off && fileOff < l.off+l.size {
			return fileOff - l.off + l.vaddr, true
		}
	}
	return 0, false
}

// BuildTable reads path's .eh_frame and, from the binary or its local debug
// file under root+debugfile.Root, .debug_frame. root is the filesystem the binary
// lives in ("/proc/PID/root" for a container, "" for the host).
// The path "[vdso]" names the kernel's vDSO, read from this process: every
// process on the node maps the same image.
func BuildTable(root, path string) (*Table, error) { return buildTable(root, path, 0) }

// TooLargeError says a binary's table would take more than a cache lets one
// table take.
type TooLargeError struct {
	Need, Limit int // bytes
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("its unwinding table needs about %d bytes, over the %d one table may take", e.Need, e.Limit)
}

// cfiExpansion is what a table takes per byte of call-frame information,
// from the Size of tables built of Debian's binaries: libc 1.12, python3
// 0.95, node 0.81, libjvm 0.78, libstdc++ 1.03, LLVM 15's library 1.13.
const cfiExpansion = 1.2

// buildTable is BuildTable with a bound on the table's bytes (0: none):
// above it, estimated from the size of the binary's call-frame sections
// before anything is parsed, or measured once built, the table is not
// kept and a *TooLargeError says why.
func buildTable(root, path string, limit int) (*Table, error) {
	var f *elf.File
	var err error
	if path == VDSOPath {
		f, err = ownVDSO()
	} else {
		f, err = elf.Open(filepath.Join(root, path))
	}
	if err != nil {
		return nil, fmt.Errorf("opening binary: %w", err)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 {
		return nil, fmt.Errorf("machine %s: only x86-64 is unwound", f.Machine)
	}
	t := &Table{}
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && p.Flags&elf.PF_X != 0 {
			t.loads = append(t.loads, load{off: p.Off, vaddr: p.Vaddr, size: p.Filesz})
		}
	}
	for _, name := range []string{".note.go.buildid", ".gopclntab", ".go.buildinfo"} {
		t.goCode = t.goCode || f.Section(name) != nil
	}
	if limit > 0 {
		// The sections read below: a Go binary's .debug_frame is not.
		frames := []string{".eh_frame"}
		if !t.goCode {
			frames = append(frames, ".debug_frame")
		}
		var cfi uint64
		for _, name := range frames {
			if s := f.Section(name); s != nil && s.Type != elf.SHT_NOBITS {
				cfi += s.Size
			}
		}
		if need := uint64(float64(cfi) * cfiExpansion); need > uint64(limit) {
			return nil, &TooLargeError{Need: int(min(need, 1<<40)), Limit: limit}
		}
	}
	var fdes []fde
	var errs []error
	if s := f.Section(".eh_frame"); s != nil && s.Type != elf.SHT_NOBITS {
		got, err := sectionFDEs(s, true)
		fdes = append(fdes, got...)
		errs = append(errs, err)
		if t.goCode {
			// The Go linker writes no .eh_frame for Go functions: in a Go
			// binary, what it describes is C (cgo, the C library of a
			// static build).
			for _, d := range got {
				t.cCode = append(t.cCode, [2]uint64{d.begin, d.end})
			}
			slices.SortFunc(t.cCode, func(a, b [2]uint64) int { return cmp.Compare(a[0], b[0]) })
			t.cCode = slices.Clip(t.cCode)
		}
	}
	switch s := f.Section(".debug_frame"); {
	case t.goCode:
		// Go's .debug_frame describes Go code, which keeps frame pointers
		// and is walked by them (its stacks switch; see goCode): its rows,
		// megabytes for a large Go binary, would only take memory.
	case s != nil:
		got, err := sectionFDEs(s, false)
		fdes = append(fdes, got...)
		errs = append(errs, err)
	case path != VDSOPath:
		if dbg, closer := debugFile(root, path, f); dbg != nil {
			if s := dbg.Section(".debug_frame"); s != nil && s.Type != elf.SHT_NOBITS {
				got, err := sectionFDEs(s, false)
				fdes = append(fdes, got...)
				errs = append(errs, err)
			}
			_ = closer.Close()
		}
	}
	rows := buildRows(fdes)
	if len(rows) == 0 {
		return t, errors.Join(append(errs, errNoCFI)...)
	}
	if t.rows, err = compactRows(rows); err != nil {
		return nil, err
	}
	if limit > 0 && t.Size() > limit {
		return nil, &TooLargeError{Need: t.Size(), Limit: limit}
	}
	// A partly damaged section still gives the rows it could read.
	return t, nil
}

var errNoCFI = errors.New("no call-frame information")

func sectionFDEs(s *elf.Section, eh bool) ([]fde, error) {
	data, err := s.Data()
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", s.Name, err)
	}
	fdes, err := parseFDEs(frameSection{data: data, addr: s.Addr, eh: eh})
	if err != nil {
		return fdes, fmt.Errorf("parsing %s: %w", s.Name, err)
	}
	return fdes, nil
}

// debugFile opens the local debug file of f (see package debugfile) if
// it is f's: its build id, where both have one, is f's. The caller closes
// the file returned.
func debugFile(root, path string, f *elf.File) (*elf.File, io.Closer) {
	id := BuildID(f)
	file := debugfile.Open(root, path, id, debugfile.Link(f))
	if file == nil {
		return nil, nil
	}
	d, err := elf.NewFile(file)
	if err != nil || (id != "" && BuildID(d) != "" && BuildID(d) != id) {
		_ = file.Close()
		return nil, nil
	}
	return d, file
}

// BuildID returns the GNU build id of f in hex, or "".
func BuildID(f *elf.File) string {
	s := f.Section(".note.gnu.build-id")
	if s == nil {
		return ""
	}
	data, err := s.Data()
	if err != nil || len(data) < 16 {
		return ""
	}
	namesz := binary.LittleEndian.Uint32(data[0:])
	descsz := binary.LittleEndian.Uint32(data[4:])
	start := 12 + (namesz+3)&^3
	if uint64(start)+uint64(descsz) > uint64(len(data)) {
		return ""
	}
	return hex.EncodeToString(data[start : start+descsz])
}
