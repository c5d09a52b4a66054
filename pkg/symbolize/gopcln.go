package symbolize

import (
	"debug/elf"
	"debug/gosym"
	"encoding/binary"
)

// goTable reads a Go binary's pclntab the way the runtime does, for Go
// 1.18 and later, including the inline trees, so a PC in an inlined body
// yields the inlined function and every function it was inlined into.
// debug/gosym cannot: it reports the outermost function with the innermost
// file and line. Older binaries (Go 1.2 to 1.17) go through debug/gosym and
// get the outermost function only.
//
// Every read is bounds-checked: the table comes from a file that may be
// corrupt, and a bad offset yields fewer frames, never a panic.
type goTable struct {
	bo        binary.ByteOrder
	version   int // 118 or 120
	quantum   uint64
	nfunc     int
	ptr       int    // pointer size
	textStart uint64 // runtime.text, which functab entries are offsets from
	// funcnameOff is the offset of funcnametab from the header;
	// moduledata the address of the runtime's, 0 unless searched for.
	funcnameOff, moduledata uint64

	funcnametab, cutab, filetab, pctab, functab []byte
	// gofunc is the data from go:func.*, which funcdata offsets (the inline
	// trees) are relative to; nil when it cannot be found, which costs the
	// inlined frames only.
	gofunc []byte

	legacy *gosym.Table
}

// Go pclntab magics and the runtime constants this reader needs.
const (
	goMagic12  = 0xfffffffb
	goMagic116 = 0xfffffffa
	goMagic118 = 0xfffffff0
	goMagic120 = 0xfffffff1

	pcdataInlTreeIndex = 2
	funcdataInlTree    = 3
	// runtime.inlinedCall: Go 1.18 and 1.19 keep the parent's index, file
	// and line (20 bytes), Go 1.20 on the start line instead (16 bytes).
	inlinedCallSize118 = 20
	inlinedCallSize120 = 16
	maxInlineDepth     = 64
)

// goSymbols are the addresses of the runtime's symbols that locate a Go
// binary's tables, 0 when absent (stripped binaries).
type goSymbols struct {
	pclntab, text, funcdata uint64 // runtime.pclntab, runtime.text, go:func.*
}

// loadGoTable finds and reads the pclntab of f, or returns nil when f is
// not a Go binary or its table is unusable.
func loadGoTable(f *elf.File, gs goSymbols, fits func(off, n uint64) bool, m mapper) (*goTable, []func()) {
	im := newGoImage(f, fits, m)
	defer im.close()
	pcln, data, rel, ok := im.pclntab(gs)
	if !ok {
		return nil, nil
	}
	release := []func(){rel}
	done := func() []func() {
		for _, r := range release {
			r()
		}
		return nil
	}

	t := &goTable{bo: f.ByteOrder}
	if !t.parseHeader(data) {
		// Go 1.2 to 1.17 tables hold absolute entry addresses: no text
		// start is needed.
		if tab := legacyTable(data); tab != nil {
			return &goTable{legacy: tab}, release
		}
		return nil, done()
	}
	if t.textStart = t.findTextStart(im, gs, pcln); t.textStart == 0 {
		// An entry's offset means nothing without it; a guess (the .text
		// section, which external linking starts with C code) names
		// every frame after a neighbour.
		return nil, done()
	}

	var gofunc uint64
	if gs.funcdata != 0 {
		gofunc = gs.funcdata
	} else {
		if t.moduledata == 0 {
			t.moduledata = im.moduledata(t, pcln, t.ptr)
		}
		if t.moduledata != 0 {
			field := uint64(mdGofunc118)
			if t.version >= 120 {
				field = mdGofunc120
			}
			gofunc, _ = im.word(t.moduledata+field*uint64(t.ptr), t.ptr)
		}
	}
	// The address is checked against real trees: a moduledata field read
	// from the wrong Go version's layout must not name inlined frames.
	if gofunc >= pcln && gofunc-pcln < uint64(len(data)) {
		if d := data[gofunc-pcln:]; t.treesPlausible(d, t.someTrees()) {
			t.gofunc = d
		}
	} else if gofunc != 0 {
		if d, rel, ok := im.mapAt(gofunc, maxPclntabBytes); ok && t.treesPlausible(d, t.someTrees()) {
			t.gofunc = d
			release = append(release, rel)
		} else if ok {
			rel()
		}
	}
	if t.gofunc == nil && t.version >= 120 {
		t.gofunc = t.guessGofunc(data)
	}
	return t, release
}

// findTextStart returns the address the table's entry offsets count from:
// runtime.text. Go 1.18 to 1.2x write it into the header (relocated in a
// PIE); later ones leave it 0 there and only the runtime's moduledata
// holds it, which a stripped binary is searched for.
func (t *goTable) findTextStart(im *goImage, gs goSymbols, pcln uint64) uint64 {
	if text, ok := im.word(pcln+8+2*uint64(t.ptr), t.ptr); ok && text != 0 {
		return text
	}
	if gs.text != 0 {
		return gs.text
	}
	if t.moduledata = im.moduledata(t, pcln, t.ptr); t.moduledata != 0 {
		text, _ := im.word(t.moduledata+mdText*uint64(t.ptr), t.ptr)
		return text
	}
	return 0
}

// covered is the range of addresses t resolves: the binary's Go code,
// from its first function to the end of its last. It is empty when t does
// not resolve its own first function, so that a table that cannot serve
// does not hide the ELF symbols of that range.
func (t *goTable) covered() pcRange {
	if t.legacy != nil {
		var r pcRange
		for i, fn := range t.legacy.Funcs {
			if i == 0 || fn.Entry < r.lo {
				r.lo = fn.Entry
			}
			r.hi = max(r.hi, fn.End)
		}
		if r.lo < r.hi && len(t.frames(r.lo)) > 0 {
			return r
		}
		return pcRange{}
	}
	first, _ := t.functabEntry(0)
	end, _ := t.functabEntry(t.nfunc)
	// Check the first function directly: a lookup's binary search would
	// fault in pages all over the mapped table.
	if f, ok := t.funcAt(0); !ok || first >= end || t.name(f.field(1)) == "" {
		return pcRange{}
	}
	return pcRange{lo: t.textStart + uint64(first), hi: t.textStart + uint64(end)}
}

func sectionAt(f *elf.File, addr uint64) *elf.Section {
	for _, s := range f.Sections {
		if s.Flags&elf.SHF_ALLOC != 0 && addr >= s.Addr && addr-s.Addr < s.Size {
			return s
		}
	}
	return nil
}

// parseHeader reads runtime.pcHeader of Go 1.18 and later.
func (t *goTable) parseHeader(data []byte) bool {
	if len(data) < 8 || data[4] != 0 || data[5] != 0 {
		return false
	}
	switch t.bo.Uint32(data) {
	case goMagic118:
		t.version = 118
	case goMagic120:
		t.version = 120
	default:
		return false
	}
	t.quantum = uint64(data[6])
	ptr := int(data[7])
	if (ptr != 4 && ptr != 8) || t.quantum == 0 || len(data) < 8+8*ptr {
		return false
	}
	word := func(i int) uint64 {
		b := data[8+i*ptr:]
		if ptr == 8 {
			return t.bo.Uint64(b)
		}
		return uint64(t.bo.Uint32(b))
	}
	from := func(i int) []byte {
		off := word(i)
		if off > uint64(len(data)) {
			return nil
		}
		return data[off:]
	}
	nfunc := word(0)
	t.ptr, t.funcnameOff = ptr, word(3)
	t.funcnametab, t.cutab, t.filetab, t.pctab, t.functab = from(3), from(4), from(5), from(6), from(7)
	if t.funcnametab == nil || t.cutab == nil || t.filetab == nil || t.pctab == nil || t.functab == nil ||
		nfunc == 0 || nfunc > uint64(len(t.functab))/8 {
		return false
	}
	t.nfunc = int(nfunc)
	return true
}

// A view of one runtime._func.
type goFunc struct {
	t        *goTable
	b        []byte // from the _func to the end of functab
	entry    uint64 // absolute
	size     uint64
	npcdata  uint32
	nfuncdat uint8
	hdr      int // size of the fixed part
}

func (f goFunc) field(i int) uint32 { return f.t.u32(f.b, 4*i) }

func (f goFunc) pcdata(i uint32) uint32 {
	if i >= f.npcdata {
		return 0
	}
	return f.t.u32(f.b, f.hdr+4*int(i))
}

func (f goFunc) funcdata(i uint8) (uint32, bool) {
	if i >= f.nfuncdat {
		return 0, false
	}
	v := f.t.u32(f.b, f.hdr+4*int(f.npcdata)+4*int(i))
	return v, v != ^uint32(0)
}

func (t *goTable) u32(b []byte, off int) uint32 {
	if off < 0 || off+4 > len(b) {
		return 0
	}
	return t.bo.Uint32(b[off:])
}

// functabEntry returns entry i of the functab: the function's entry offset
// from textStart and the offset of its _func from the functab.
func (t *goTable) functabEntry(i int) (uint32, uint32) {
	return t.u32(t.functab, 8*i), t.u32(t.functab, 8*i+4)
}

// findFunc returns the function holding pc.
func (t *goTable) findFunc(pc uint64) (goFunc, bool) {
	if pc < t.textStart || pc-t.textStart > 1<<32 {
		return goFunc{}, false
	}
	off := uint32(pc - t.textStart)
	end, _ := t.functabEntry(t.nfunc)
	if off >= end {
		return goFunc{}, false
	}
	// The last function starting at or below off.
	lo, hi := 0, t.nfunc
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if e, _ := t.functabEntry(mid); e <= off {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo == 0 {
		return goFunc{}, false
	}
	return t.funcAt(lo - 1)
}

func (t *goTable) funcAt(i int) (goFunc, bool) {
	entry, foff := t.functabEntry(i)
	next, _ := t.functabEntry(i + 1)
	hdr := 40
	if t.version >= 120 {
		hdr = 44
	}
	if uint64(foff)+uint64(hdr) > uint64(len(t.functab)) || next < entry {
		return goFunc{}, false
	}
	f := goFunc{t: t, b: t.functab[foff:], entry: t.textStart + uint64(entry), size: uint64(next - entry), hdr: hdr}
	f.npcdata = f.field(7)
	f.nfuncdat = f.b[hdr-1]
	if f.npcdata > 1<<16 {
		return goFunc{}, false
	}
	return f, true
}

// frames expands pc into the functions inlined at it, innermost first,
// ending with the function that holds pc.
func (t *goTable) frames(pc uint64) []Frame {
	if t.legacy != nil {
		return t.legacyFrames(pc)
	}
	f, ok := t.findFunc(pc)
	if !ok {
		return nil
	}
	var out []Frame
	if treeOff, ok := f.funcdata(funcdataInlTree); ok && t.gofunc != nil && uint64(treeOff) < uint64(len(t.gofunc)) {
		tree := t.gofunc[treeOff:]
		table := f.pcdata(pcdataInlTreeIndex)
		ix := t.pcvalue(table, f.entry, pc)
		for depth := 0; ix >= 0 && depth < maxInlineDepth; depth++ {
			nameOff, parentPC, startLine, ok := t.inlinedCall(tree, ix)
			if !ok {
				break
			}
			file, line := t.fileLine(f, pc)
			out = append(out, Frame{Function: t.name(nameOff), File: file, Line: line, StartLine: int(startLine), Inlined: true})
			if uint64(parentPC) >= f.size {
				break
			}
			pc = f.entry + uint64(parentPC)
			ix = t.pcvalue(table, f.entry, pc)
		}
	}
	file, line := t.fileLine(f, pc)
	fr := Frame{Function: t.name(f.field(1)), File: file, Line: line}
	if t.version >= 120 {
		fr.StartLine = int(int32(f.field(9)))
	}
	if fr.Function == "" {
		return nil
	}
	return append(out, fr)
}

// inlinedCall reads entry ix of an inline tree: the inlined function's
// name offset, the offset from the outer function's entry of a PC at the
// call site, and (Go 1.20 on) the inlined function's start line.
func (t *goTable) inlinedCall(tree []byte, ix int32) (nameOff, parentPC uint32, startLine int32, ok bool) {
	size, name, parent := inlinedCallSize120, 4, 8
	if t.version < 120 {
		size, name, parent = inlinedCallSize118, 12, 16
	}
	at := int(ix) * size
	if ix < 0 || at+size > len(tree) {
		return 0, 0, 0, false
	}
	if t.version >= 120 {
		startLine = int32(t.u32(tree, at+12))
	}
	return t.u32(tree, at+name), t.u32(tree, at+parent), startLine, true
}

func (t *goTable) fileLine(f goFunc, pc uint64) (string, int) {
	line := t.pcvalue(f.field(6), f.entry, pc)
	fileno := t.pcvalue(f.field(5), f.entry, pc)
	if fileno < 0 || line < 0 {
		return "", 0
	}
	cu := uint64(f.field(8)) + uint64(fileno)
	if cu > uint64(len(t.cutab))/4 {
		return "", int(line)
	}
	off := t.u32(t.cutab, int(cu)*4)
	if off == ^uint32(0) {
		return "", int(line)
	}
	return cString(t.filetab, off), int(line)
}

func (t *goTable) name(off uint32) string { return cString(t.funcnametab, off) }

// cString returns the NUL-terminated string at off, copied so that it
// outlives mapped memory.
func cString(b []byte, off uint32) string { return string(cBytes(b, off)) }

// pcvalue decodes the pc-value table at off for targetPC, as the runtime
// does: pairs of zig-zag value deltas and pc deltas. It returns -1 when the
// table is missing or does not cover targetPC.
func (t *goTable) pcvalue(off uint32, entry, targetPC uint64) int32 {
	if off == 0 || uint64(off) >= uint64(len(t.pctab)) {
		return -1
	}
	p := t.pctab[off:]
	val := int32(-1)
	pc := entry
	for first := true; ; first = false {
		uv, n := binary.Uvarint(p)
		if n <= 0 || uv > 1<<32-1 || (uv == 0 && !first) {
			return -1
		}
		p = p[n:]
		d := uint32(uv)
		val += int32(-(d & 1) ^ (d >> 1))
		pcd, n := binary.Uvarint(p)
		if n <= 0 || pcd > 1<<32-1 {
			return -1
		}
		p = p[n:]
		pc += pcd * t.quantum
		if targetPC < pc {
			return val
		}
	}
}

// guessGofunc finds go:func.* in a stripped binary. The linker puts it
// right after the last _func in the pclntab (Go 1.2x), aligned to at most
// 64 bytes; each candidate is checked against inline trees of real
// functions, whose entries must name a function and point inside it.
func (t *goTable) guessGofunc(data []byte) []byte {
	base := len(data) - len(t.functab)
	var end uint64
	for i := 0; i < t.nfunc; i++ {
		f, ok := t.funcAt(i)
		if !ok {
			return nil
		}
		_, foff := t.functabEntry(i)
		end = max(end, uint64(foff)+uint64(f.hdr)+4*uint64(f.npcdata)+4*uint64(f.nfuncdat))
	}
	withTree := t.someTrees()
	if len(withTree) == 0 {
		return nil
	}
	for _, align := range []uint64{1, 4, 8, 16, 32, 64} {
		start := uint64(base) + (end+align-1)&^(align-1)
		if start >= uint64(len(data)) {
			break
		}
		cand := data[start:]
		if t.treesPlausible(cand, withTree) {
			return cand
		}
	}
	return nil
}

// someTrees returns up to 64 functions that have an inline tree.
func (t *goTable) someTrees() []int {
	var withTree []int
	for i := 0; i < t.nfunc && len(withTree) < 64; i++ {
		f, ok := t.funcAt(i)
		if !ok {
			return nil
		}
		if _, ok := f.funcdata(funcdataInlTree); ok {
			withTree = append(withTree, i)
		}
	}
	return withTree
}

// treesPlausible checks gofunc as the base of the inline trees of funcs:
// each tree's first entry must name a function and point inside its own.
func (t *goTable) treesPlausible(gofunc []byte, funcs []int) bool {
	for _, i := range funcs {
		f, _ := t.funcAt(i)
		off, _ := f.funcdata(funcdataInlTree)
		if uint64(off) >= uint64(len(gofunc)) {
			return false
		}
		tree := gofunc[off:]
		nameOff, parentPC, _, ok := t.inlinedCall(tree, 0)
		// The padding after funcID, and in Go 1.20 on the bytes before.
		pad := len(tree) > 3 && tree[3] == 0 && (t.version < 120 || tree[1] == 0 && tree[2] == 0)
		if !ok || !pad || uint64(parentPC) >= f.size ||
			uint64(nameOff) >= uint64(len(t.funcnametab)) || (nameOff > 0 && t.funcnametab[nameOff-1] != 0) ||
			cString(t.funcnametab, nameOff) == "" {
			return false
		}
	}
	return true
}

// legacyTable reads a Go 1.2 to 1.17 table with debug/gosym, which
// allocates per function the table claims: the claim is checked against
// the table's size first.
func legacyTable(data []byte) (tab *gosym.Table) {
	if len(data) < 16 || data[4] != 0 || data[5] != 0 || (data[7] != 4 && data[7] != 8) {
		return nil
	}
	var bo binary.ByteOrder = binary.LittleEndian
	if m := binary.BigEndian.Uint32(data); m == goMagic12 || m == goMagic116 {
		bo = binary.BigEndian
	} else if m := bo.Uint32(data); m != goMagic12 && m != goMagic116 {
		return nil
	}
	ptr := uint64(data[7])
	nfunc := bo.Uint64(data[8:])
	if ptr == 4 {
		nfunc = uint64(bo.Uint32(data[8:]))
	}
	if nfunc == 0 || nfunc > uint64(len(data))/(2*ptr) {
		return nil
	}
	defer func() {
		if recover() != nil {
			tab = nil
		}
	}()
	t, err := gosym.NewTable(nil, gosym.NewLineTable(data, 0))
	if err != nil || len(t.Funcs) == 0 {
		return nil
	}
	return t
}

// legacyFrames serves pre-1.18 binaries through debug/gosym: the outermost
// function only, and no file or line, since gosym would give the line of
// the innermost inlined body under the outer function's name.
func (t *goTable) legacyFrames(pc uint64) (out []Frame) {
	defer func() {
		// debug/gosym trusts its table; a corrupt one must not take the
		// agent down.
		if recover() != nil {
			out = nil
		}
	}()
	fn := t.legacy.PCToFunc(pc)
	if fn == nil {
		return nil
	}
	return []Frame{{Function: fn.Name}}
}
