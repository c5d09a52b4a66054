package symbolize

import (
	"bytes"
	"cmp"
	"debug/elf"
	"encoding/binary"
	"slices"
)

// funcTable is what the Symbolizer keeps of a file's .symtab and .dynsym:
// its functions, 16 bytes each, sorted by address, one per address. The
// names stay in the file, in its string tables mapped read-only (page
// cache, not heap), and are copied out, then demangled, only when a lookup
// returns them. debug/elf would instead allocate an elf.Symbol and a
// string for every symbol of the file, functions or not.
type funcTable struct {
	syms []funcSym
	// strs are the string tables of .symtab (0) and .dynsym (1); the top
	// bit of funcSym.name says which one the name is in.
	strs [2][]byte
}

type funcSym struct {
	addr uint64
	// size holds the size in its low 30 bits (no function is 1 GiB long;
	// larger sizes are clamped) and, while the table loads, the symbol's
	// rank in its top 2 bits, so that sorting needs no wider copy.
	size uint32
	name uint32 // nameTableBit, then the offset in that string table
}

const (
	nameTableBit = 1 << 31
	sizeBits     = 30
	maxFuncSize  = 1<<sizeBits - 1
)

// lookup returns the name of the function holding addr.
func (t *funcTable) lookup(addr uint64) (string, bool) {
	s, ok := t.find(addr)
	if !ok {
		return "", false
	}
	return string(t.name(s.name)), true
}

// find returns the named function symbol whose extent holds addr.
func (t *funcTable) find(addr uint64) (funcSym, bool) {
	i, _ := slices.BinarySearchFunc(t.syms, addr, func(s funcSym, a uint64) int {
		if s.addr <= a {
			return -1
		}
		return 1
	})
	// Symbols may nest (a local label inside a function); look back a few
	// for one whose extent holds addr. A symbol without a size is never
	// trusted: attributing the gap after it would make a name up.
	for j := i - 1; j >= 0 && j >= i-8; j-- {
		if s := t.syms[j]; addr-s.addr < uint64(s.size&maxFuncSize) && len(t.name(s.name)) > 0 {
			return s, true
		}
	}
	return funcSym{}, false
}

func (t *funcTable) name(n uint32) []byte {
	return cBytes(t.strs[n>>31], n&^nameTableBit)
}

// symtab is one symbol table of a file and the string table its names
// index, both mapped only while the file loads.
type symtab struct {
	data, strs []byte
	strSect    *elf.Section
	class      elf.Class
	bo         binary.ByteOrder
}

// elfSym is an entry of a symbol table, ELF32 or ELF64.
type elfSym struct {
	name        uint32
	info        uint8
	shndx       uint16
	value, size uint64
}

const (
	sym32Size = 16
	sym64Size = 24
)

func (t *symtab) entrySize() int {
	if t.class == elf.ELFCLASS32 {
		return sym32Size
	}
	return sym64Size
}

// each calls fn on every entry but the first, which ELF reserves.
func (t *symtab) each(fn func(elfSym)) {
	n := t.entrySize()
	for b := t.data[min(n, len(t.data)):]; len(b) >= n; b = b[n:] {
		if t.class == elf.ELFCLASS32 {
			fn(elfSym{name: t.bo.Uint32(b), value: uint64(t.bo.Uint32(b[4:])), size: uint64(t.bo.Uint32(b[8:])), info: b[12], shndx: t.bo.Uint16(b[14:])})
		} else {
			fn(elfSym{name: t.bo.Uint32(b), info: b[4], shndx: t.bo.Uint16(b[6:]), value: t.bo.Uint64(b[8:]), size: t.bo.Uint64(b[16:])})
		}
	}
}

// symtabs are a file's .symtab and .dynsym, in that order, mapped for the
// load; absent or unusable tables are nil.
type symtabs struct {
	tabs    [2]*symtab
	release []func()
}

// mapSymtabs maps the symbol tables of f and their string tables. Every
// range is checked against the file size first, so a corrupt header cannot
// make it read past the file; an error is the mapper's, not the file's.
func mapSymtabs(f *elf.File, fits func(off, n uint64) bool, m mapper) (*symtabs, error) {
	st := &symtabs{}
	usable := func(s *elf.Section) bool {
		return s.Type != elf.SHT_NOBITS && s.Flags&elf.SHF_COMPRESSED == 0 && s.Size > 0 && fits(s.Offset, s.Size)
	}
	for i, typ := range []elf.SectionType{elf.SHT_SYMTAB, elf.SHT_DYNSYM} {
		s := f.SectionByType(typ)
		t := &symtab{class: f.Class, bo: f.ByteOrder}
		if s == nil || !usable(s) || s.Size%uint64(t.entrySize()) != 0 || s.Size/uint64(t.entrySize()) > maxSymbols || int(s.Link) >= len(f.Sections) {
			continue
		}
		t.strSect = f.Sections[s.Link]
		if !usable(t.strSect) || t.strSect.Size >= nameTableBit {
			continue
		}
		data, rel, err := m(int64(s.Offset), int64(s.Size))
		if err != nil {
			st.close()
			return nil, err
		}
		st.release = append(st.release, rel)
		strs, rel, err := m(int64(t.strSect.Offset), int64(t.strSect.Size))
		if err != nil {
			st.close()
			return nil, err
		}
		st.release = append(st.release, rel)
		t.data, t.strs = data, strs
		st.tabs[i] = t
	}
	return st, nil
}

func (st *symtabs) close() {
	for _, r := range st.release {
		r()
	}
	st.release = nil
}

// goSymbols finds the runtime's symbols that locate a Go binary's tables,
// the first of each name in .symtab then .dynsym.
func (st *symtabs) goSymbols() goSymbols {
	var gs goSymbols
	for _, t := range st.tabs {
		if t == nil {
			continue
		}
		t.each(func(s elfSym) {
			if s.value == 0 {
				return
			}
			switch name := cBytes(t.strs, s.name); {
			case gs.pclntab == 0 && string(name) == "runtime.pclntab":
				gs.pclntab = s.value
			case gs.text == 0 && string(name) == "runtime.text":
				gs.text = s.value
			case gs.funcdata == 0 && (string(name) == "go:func.*" || string(name) == "go.func.*"):
				gs.funcdata = s.value
			}
		})
	}
	return gs
}

// functions builds the table of the function symbols with an address and
// a size outside skip, one per address, preferring global over weak over
// local names, then the first name in byte order. The string tables it
// references are mapped anew through keep, so that the pages the load
// read are not held.
func (st *symtabs) functions(f *elf.File, skip pcRange, keep mapper) (funcTable, []func(), error) {
	rank := func(t *symtab, s elfSym) (uint32, bool) {
		typ := elf.ST_TYPE(s.info)
		if (typ != elf.STT_FUNC && typ != elf.STT_GNU_IFUNC) || s.value == 0 || s.size == 0 || skip.holds(s.value) {
			return 0, false
		}
		sec := elf.SectionIndex(s.shndx)
		if sec == elf.SHN_UNDEF || (int(sec) < len(f.Sections) && f.Sections[sec].Flags&elf.SHF_EXECINSTR == 0) {
			return 0, false
		}
		if len(cBytes(t.strs, s.name)) == 0 {
			return 0, false
		}
		switch elf.ST_BIND(s.info) {
		case elf.STB_GLOBAL:
			return 0, true
		case elf.STB_WEAK:
			return 1, true
		}
		return 2, true
	}
	// Count first: the functions of a large binary are megabytes, and
	// growing the slice would allocate them twice over.
	n := 0
	for _, t := range st.tabs {
		if t != nil {
			t.each(func(s elfSym) {
				if _, ok := rank(t, s); ok {
					n++
				}
			})
		}
	}
	if n == 0 {
		return funcTable{}, nil, nil
	}
	out := funcTable{syms: make([]funcSym, 0, n)}
	for i, t := range st.tabs {
		if t == nil {
			continue
		}
		out.strs[i] = t.strs
		t.each(func(s elfSym) {
			if r, ok := rank(t, s); ok {
				size := uint32(min(s.size, maxFuncSize))
				out.syms = append(out.syms, funcSym{addr: s.value, size: r<<sizeBits | size, name: uint32(i)<<31 | s.name})
			}
		})
	}
	// By address, then rank (the size's top bits), then name.
	slices.SortFunc(out.syms, func(a, b funcSym) int {
		if c := cmp.Compare(a.addr, b.addr); c != 0 {
			return c
		}
		if c := cmp.Compare(a.size>>sizeBits, b.size>>sizeBits); c != 0 {
			return c
		}
		return bytes.Compare(out.name(a.name), out.name(b.name))
	})
	out.syms = slices.CompactFunc(out.syms, func(a, b funcSym) bool { return a.addr == b.addr })
	if len(out.syms) < cap(out.syms)*7/8 {
		// Many aliases: give the rest back.
		out.syms = append(make([]funcSym, 0, len(out.syms)), out.syms...)
	}
	var used [2]bool
	for i := range out.syms {
		out.syms[i].size &= maxFuncSize
		used[out.syms[i].name>>31] = true
	}
	out.strs = [2][]byte{}
	var release []func()
	for i, t := range st.tabs {
		if !used[i] {
			continue
		}
		strs, rel, err := keep(int64(t.strSect.Offset), int64(t.strSect.Size))
		if err != nil {
			for _, r := range release {
				r()
			}
			return funcTable{}, nil, err
		}
		out.strs[i] = strs
		release = append(release, rel)
	}
	return out, release, nil
}

// pcRange is the addresses [lo, hi) that a Go pclntab resolves.
type pcRange struct{ lo, hi uint64 }

func (r pcRange) holds(addr uint64) bool { return addr >= r.lo && addr < r.hi }

// cBytes returns the NUL-terminated string at off, without the NUL, or
// nil when there is none within 64 KiB.
func cBytes(b []byte, off uint32) []byte {
	if uint64(off) >= uint64(len(b)) {
		return nil
	}
	b = b[off:]
	n := bytes.IndexByte(b[:min(len(b), 1<<16+1)], 0)
	if n < 0 {
		return nil
	}
	return b[:n]
}
