package symbolize

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// object is what the Symbolizer keeps of one ELF file: how file offsets
// map to addresses, its build id and its symbol tables. Objects are shared
// by every process that maps the same file, and may hold memory-mapped
// file data, so users acquire and release them.
type object struct {
	buildID string // GNU build id in hex, else the Go build id, else ""
	loads   []segment
	syms    []symbol // sorted by addr, one per address
	goTab   *goTable // nil unless the file is a Go binary

	refs    atomic.Int64
	evicted atomic.Bool
	unmap   func()
	once    sync.Once
}

type segment struct {
	off, filesz, vaddr uint64
	exec               bool
}

type symbol struct {
	addr, size uint64
	name       string
}

// mapper returns length bytes of the file from off, and how to give them
// back. The Symbolizer maps the file; tests and fuzzing read it.
type mapper func(off, length int64) ([]byte, func(), error)

// Guards against hostile files: a symbol table or pclntab larger than
// these is not loaded (the file is still used for its other tables).
const (
	maxSymbols      = 1 << 23
	maxNoteBytes    = 1 << 16
	maxPclntabBytes = 1 << 30
)

var errNotELF = errors.New("not an ELF file")

// loadObject reads an ELF file of size bytes. Every section it reads is
// checked against size first, so a corrupt header cannot make it allocate
// more than the file holds.
func loadObject(r io.ReaderAt, size int64, m mapper) (*object, error) {
	f, err := elf.NewFile(r)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errNotELF, err)
	}
	defer f.Close()
	fits := func(off, n uint64) bool { return off <= uint64(size) && n <= uint64(size)-off }

	o := &object{}
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && fits(p.Off, p.Filesz) {
			o.loads = append(o.loads, segment{off: p.Off, filesz: p.Filesz, vaddr: p.Vaddr, exec: p.Flags&elf.PF_X != 0})
		}
	}
	o.buildID = readBuildID(f, fits)

	readable := func(s *elf.Section) bool {
		return s != nil && s.Type != elf.SHT_NOBITS && s.Flags&elf.SHF_COMPRESSED == 0 && fits(s.Offset, s.Size)
	}
	// debug/elf reads a symbol table and the string table it links to;
	// check both before letting it.
	symsOK := func(typ elf.SectionType) bool {
		s := f.SectionByType(typ)
		if !readable(s) || s.Entsize == 0 || s.Size/s.Entsize > maxSymbols || int(s.Link) >= len(f.Sections) {
			return false
		}
		return readable(f.Sections[s.Link])
	}
	var all []elf.Symbol
	if symsOK(elf.SHT_SYMTAB) {
		if s, err := f.Symbols(); err == nil {
			all = append(all, s...)
		}
	}
	if symsOK(elf.SHT_DYNSYM) {
		if s, err := f.DynamicSymbols(); err == nil {
			all = append(all, s...)
		}
	}
	o.syms = compactSymbols(f, all)

	var release []func()
	if gt, rel := loadGoTable(f, all, fits, m); gt != nil {
		o.goTab = gt
		release = rel
	}
	o.unmap = func() {
		for _, r := range release {
			r()
		}
	}
	return o, nil
}

// acquire marks o in use; callers hold the Symbolizer's mutex and got o
// from its cache, so o is not evicted yet.
func (o *object) acquire() { o.refs.Add(1) }

func (o *object) release() {
	if o.refs.Add(-1) == 0 && o.evicted.Load() {
		o.once.Do(o.unmap)
	}
}

// evict is called when the cache drops o; its mapped memory goes once the
// last user is done.
func (o *object) evict() {
	o.evicted.Store(true)
	if o.refs.Load() == 0 {
		o.once.Do(o.unmap)
	}
}

// vaddr turns an offset in the file into the address the ELF file's own
// symbols use. For a PIE or shared library p_vaddr and p_offset differ by
// a constant, for a non-PIE executable by its link address; either way the
// segment that holds the offset tells.
func (o *object) vaddr(fileOff uint64) (uint64, bool) {
	var exec *segment
	for i := range o.loads {
		s := &o.loads[i]
		if fileOff >= s.off && fileOff-s.off < s.filesz {
			return fileOff - s.off + s.vaddr, true
		}
		if s.exec && exec == nil {
			exec = s
		}
	}
	// Past the end of every segment's file bytes, still inside the mapped
	// page: use the bias of the executable segment.
	if exec != nil && fileOff >= exec.off {
		return fileOff - exec.off + exec.vaddr, true
	}
	return 0, false
}

// frames symbolizes an address of the file, innermost frame first.
func (o *object) frames(vaddr uint64) []Frame {
	if o.goTab != nil {
		if fr := o.goTab.frames(vaddr); len(fr) > 0 {
			for i := range fr {
				fr[i].SystemName = fr[i].Function
			}
			return fr
		}
	}
	if s, ok := o.symbol(vaddr); ok {
		return []Frame{newFrame(s.name)}
	}
	return nil
}

func (o *object) symbol(addr uint64) (symbol, bool) {
	i, _ := slices.BinarySearchFunc(o.syms, addr, func(s symbol, a uint64) int {
		if s.addr <= a {
			return -1
		}
		return 1
	})
	// Symbols may nest (a local label inside a function); look back a few
	// for one whose extent holds addr. A symbol without a size is never
	// trusted: attributing the gap after it would make a name up.
	for j := i - 1; j >= 0 && j >= i-8; j-- {
		if s := o.syms[j]; addr-s.addr < s.size {
			return s, true
		}
	}
	return symbol{}, false
}

// compactSymbols keeps the function symbols with an address and a size,
// one per address, preferring global over weak over local names.
func compactSymbols(f *elf.File, all []elf.Symbol) []symbol {
	type cand struct {
		symbol
		rank int
	}
	cands := make([]cand, 0, len(all))
	for _, s := range all {
		t := elf.ST_TYPE(s.Info)
		if (t != elf.STT_FUNC && t != elf.STT_GNU_IFUNC) || s.Value == 0 || s.Size == 0 || s.Name == "" {
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
		cands = append(cands, cand{symbol{addr: s.Value, size: s.Size, name: s.Name}, rank})
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
	out := make([]symbol, 0, len(cands))
	for _, c := range cands {
		if n := len(out); n > 0 && out[n-1].addr == c.addr {
			continue
		}
		out = append(out, c.symbol)
	}
	return out
}

// readBuildID returns the GNU build id in hex, or else the Go build id.
func readBuildID(f *elf.File, fits func(off, n uint64) bool) string {
	var goID string
	for _, s := range f.Sections {
		if s.Type != elf.SHT_NOTE || s.Size > maxNoteBytes || !fits(s.Offset, s.Size) || s.Flags&elf.SHF_COMPRESSED != 0 {
			continue
		}
		data, err := s.Data()
		if err != nil {
			continue
		}
		gnu, g := parseNotes(data, f.ByteOrder)
		if gnu != "" {
			return gnu
		}
		if goID == "" {
			goID = g
		}
	}
	return goID
}

// parseNotes walks ELF notes: namesz, descsz, type, then name and desc,
// each padded to 4 bytes.
func parseNotes(data []byte, bo binary.ByteOrder) (gnu, goID string) {
	for len(data) >= 12 {
		namesz, descsz, typ := uint64(bo.Uint32(data)), uint64(bo.Uint32(data[4:])), bo.Uint32(data[8:])
		data = data[12:]
		nameEnd := (namesz + 3) &^ 3
		if nameEnd > uint64(len(data)) {
			return
		}
		name := data[:namesz]
		data = data[nameEnd:]
		descEnd := (descsz + 3) &^ 3
		if descEnd > uint64(len(data)) {
			return
		}
		desc := data[:descsz]
		data = data[descEnd:]
		switch {
		case typ == 3 && bytes.Equal(name, []byte("GNU\x00")) && len(desc) > 0:
			return hex.EncodeToString(desc), goID
		case typ == 4 && bytes.Equal(name, []byte("Go\x00\x00")) && len(desc) > 0 && goID == "":
			goID = string(bytes.TrimRight(desc, "\x00"))
		}
	}
	return "", goID
}
