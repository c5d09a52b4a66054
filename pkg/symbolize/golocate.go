package symbolize

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
)

// goImage is a Go binary's memory as its loader lays it out: the bytes
// each PT_LOAD segment maps from the file, with the RELATIVE relocations
// a position-independent executable's pointers wait for applied. It finds
// the pclntab and the runtime's moduledata where no symbol or section
// names them, and reads the text start the pclntab's entries are relative
// to.
type goImage struct {
	f    *elf.File
	fits func(off, n uint64) bool
	m    mapper
	// rela is .rela.dyn, mapped while the table loads; nil when the file
	// has none or its machine's RELATIVE type is not known here.
	rela     []byte
	relative uint32
	release  []func()
}

// relativeTypes are the RELATIVE relocation types of 64-bit machines Go
// builds for: the only relocation a static Go binary's pointers get.
var relativeTypes = map[elf.Machine]uint32{
	elf.EM_X86_64:  uint32(elf.R_X86_64_RELATIVE),
	elf.EM_AARCH64: uint32(elf.R_AARCH64_RELATIVE),
	elf.EM_PPC64:   uint32(elf.R_PPC64_RELATIVE),
	elf.EM_RISCV:   uint32(elf.R_RISCV_RELATIVE),
	elf.EM_S390:    uint32(elf.R_390_RELATIVE),
}

const rela64Size = 24

func newGoImage(f *elf.File, fits func(off, n uint64) bool, m mapper) *goImage {
	im := &goImage{f: f, fits: fits, m: m}
	typ, ok := relativeTypes[f.Machine]
	if s := f.Section(".rela.dyn"); ok && f.Class == elf.ELFCLASS64 && s != nil && s.Type == elf.SHT_RELA &&
		s.Size > 0 && s.Size%rela64Size == 0 && s.Size <= maxPclntabBytes && fits(s.Offset, s.Size) {
		if data, rel, err := m(int64(s.Offset), int64(s.Size)); err == nil {
			im.rela, im.relative = data, typ
			im.release = append(im.release, rel)
		}
	}
	return im
}

func (im *goImage) close() {
	for _, r := range im.release {
		r()
	}
	im.release = nil
}

// mapAt maps the file bytes of the image from vaddr to the end of the
// segment that holds it, at most limit bytes.
func (im *goImage) mapAt(vaddr, limit uint64) ([]byte, func(), bool) {
	for _, p := range im.f.Progs {
		if p.Type != elf.PT_LOAD || vaddr < p.Vaddr || vaddr-p.Vaddr >= p.Filesz || !im.fits(p.Off, p.Filesz) {
			continue
		}
		n := min(p.Filesz-(vaddr-p.Vaddr), limit)
		data, rel, err := im.m(int64(p.Off+vaddr-p.Vaddr), int64(n))
		if err != nil {
			return nil, nil, false
		}
		return data, rel, true
	}
	return nil, nil, false
}

// word reads the pointer of ptr bytes at vaddr as the loader leaves it.
func (im *goImage) word(vaddr uint64, ptr int) (uint64, bool) {
	if ptr == 8 {
		for b := im.rela; len(b) >= rela64Size; b = b[rela64Size:] {
			if im.f.ByteOrder.Uint64(b) == vaddr && uint32(im.f.ByteOrder.Uint64(b[8:])) == im.relative {
				return im.f.ByteOrder.Uint64(b[16:]), true
			}
		}
	}
	b, rel, ok := im.mapAt(vaddr, uint64(ptr))
	if !ok {
		return 0, false
	}
	defer rel()
	if len(b) < ptr {
		return 0, false
	}
	if ptr == 8 {
		return im.f.ByteOrder.Uint64(b), true
	}
	return uint64(im.f.ByteOrder.Uint32(b)), true
}

// pclntab returns the address of the pclntab and its bytes to the end of
// the section or segment that holds it: the .gopclntab section (or
// .data.rel.ro.gopclntab, where Go 1.18 to 1.21 put it in a PIE), the
// section holding runtime.pclntab, else a header found in the segments, as
// in a binary without section headers.
func (im *goImage) pclntab(gs goSymbols) (uint64, []byte, func(), bool) {
	sect := im.f.Section(".gopclntab")
	if sect == nil {
		sect = im.f.Section(".data.rel.ro.gopclntab")
	}
	if sect == nil && gs.pclntab != 0 {
		// External linking may fold the table into another section; the
		// runtime's own symbols say where it is.
		sect = sectionAt(im.f, gs.pclntab)
	}
	if sect != nil {
		if sect.Type == elf.SHT_NOBITS || sect.Size < 64 || sect.Size > maxPclntabBytes || !im.fits(sect.Offset, sect.Size) {
			return 0, nil, nil, false
		}
		start := uint64(0)
		if addr := gs.pclntab; addr != 0 && addr >= sect.Addr && addr-sect.Addr < sect.Size {
			start = addr - sect.Addr
		}
		data, rel, err := im.m(int64(sect.Offset+start), int64(sect.Size-start))
		if err != nil {
			return 0, nil, nil, false
		}
		return sect.Addr + start, data, rel, true
	}
	if len(im.f.Sections) > 0 && gs.pclntab == 0 {
		// Section headers that name no pclntab: not a Go binary, or none
		// the toolchain made; scanning every library would be waste.
		return 0, nil, nil, false
	}
	return im.scanPclntab()
}

// scanPclntab looks for a pclntab header in the read-only segments.
func (im *goImage) scanPclntab() (uint64, []byte, func(), bool) {
	for _, p := range im.f.Progs {
		if p.Type != elf.PT_LOAD || p.Flags&elf.PF_X != 0 || p.Filesz < 64 {
			continue
		}
		seg, rel, ok := im.mapAt(p.Vaddr, maxPclntabBytes)
		if !ok {
			continue
		}
		for _, magic := range []uint32{goMagic120, goMagic118, goMagic116, goMagic12} {
			var pat [6]byte
			im.f.ByteOrder.PutUint32(pat[:], magic)
			for from := 0; ; {
				i := bytes.Index(seg[from:], pat[:])
				if i < 0 {
					break
				}
				at := from + i
				from = at + 1
				// The linker aligns the table to a pointer at least.
				if at%4 != 0 || !plausibleHeader(seg[at:], im.f.ByteOrder) {
					continue
				}
				return p.Vaddr + uint64(at), seg[at:], rel, true
			}
		}
		rel()
	}
	return 0, nil, nil, false
}

// plausibleHeader checks a pclntab header found by scanning: the fixed
// bytes, and for Go 1.16 and later offsets that increase within the data.
func plausibleHeader(b []byte, bo binary.ByteOrder) bool {
	if len(b) < 64 || b[4] != 0 || b[5] != 0 || (b[6] != 1 && b[6] != 2 && b[6] != 4) || (b[7] != 4 && b[7] != 8) {
		return false
	}
	ptr := int(b[7])
	word := func(i int) uint64 {
		if ptr == 8 {
			return bo.Uint64(b[8+8*i:])
		}
		return uint64(bo.Uint32(b[8+4*i:]))
	}
	first := 0
	switch bo.Uint32(b) {
	case goMagic12:
		return word(0) > 0 && word(0) < uint64(len(b))/uint64(2*ptr)
	case goMagic116:
		first = 2
	default:
		first = 3
	}
	prev := uint64(8 + (first+5)*ptr) // the header's own size
	for i := first; i < first+5; i++ {
		if w := word(i); w < prev || w >= uint64(len(b)) {
			return false
		} else {
			prev = w
		}
	}
	return word(0) > 0
}

// Word indexes of runtime.moduledata fields, the same from Go 1.16 on:
// pcHeader, five slices, findfunctab, minpc, maxpc, text.
const (
	mdFuncnametab = 1
	mdMinPC       = 20
	mdMaxPC       = 21
	mdText        = 22
	// gofunc (go:func.*) comes after the section bounds, two words later
	// from Go 1.20 on, which added the coverage counters.
	mdGofunc118 = 38
	mdGofunc120 = 40

	maxModuledataTries = 16
)

// moduledata finds the runtime's moduledata of the table at pcln: a
// structure in the data whose first word points at the pclntab and whose
// minpc and maxpc, less its text start, are the table's first and last
// entry offsets. It returns its address, or 0.
func (im *goImage) moduledata(t *goTable, pcln uint64, ptr int) uint64 {
	first, _ := t.functabEntry(0)
	end, _ := t.functabEntry(t.nfunc)
	// A binary has one; each candidate costs scans of the relocations,
	// so a file made of the pclntab's address cannot make this quadratic.
	tries := 0
	fits := func(md uint64) bool {
		if tries++; tries > maxModuledataTries {
			return false
		}
		names, ok := im.word(md+mdFuncnametab*uint64(ptr), ptr)
		if !ok || names != pcln+t.funcnameOff {
			return false
		}
		text, ok1 := im.word(md+mdText*uint64(ptr), ptr)
		lo, ok2 := im.word(md+mdMinPC*uint64(ptr), ptr)
		hi, ok3 := im.word(md+mdMaxPC*uint64(ptr), ptr)
		return ok1 && ok2 && ok3 && text != 0 && lo == text+uint64(first) && hi == text+uint64(end)
	}
	// A PIE's pointers are relocations whose addend is the address.
	for b := im.rela; ptr == 8 && len(b) >= rela64Size; b = b[rela64Size:] {
		if uint32(im.f.ByteOrder.Uint64(b[8:])) == im.relative && im.f.ByteOrder.Uint64(b[16:]) == pcln {
			if md := im.f.ByteOrder.Uint64(b); fits(md) {
				return md
			}
		}
	}
	var pat [8]byte
	if ptr == 8 {
		im.f.ByteOrder.PutUint64(pat[:], pcln)
	} else {
		im.f.ByteOrder.PutUint32(pat[:], uint32(pcln))
	}
	for _, p := range im.f.Progs {
		if p.Type != elf.PT_LOAD || p.Flags&elf.PF_W == 0 {
			continue
		}
		seg, rel, ok := im.mapAt(p.Vaddr, maxPclntabBytes)
		if !ok {
			continue
		}
		for from := 0; ; {
			i := bytes.Index(seg[from:], pat[:ptr])
			if i < 0 {
				break
			}
			at := from + i
			from = at + 1
			if md := p.Vaddr + uint64(at); at%ptr == 0 && fits(md) {
				rel()
				return md
			}
		}
		rel()
	}
	return 0
}
