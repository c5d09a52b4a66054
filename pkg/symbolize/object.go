package symbolize

import (
	"bytes"
	"debug/elf"
	"debug/gosym"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"unsafe"
)

// object is what the Symbolizer keeps of one ELF file: how file offsets
// map to addresses, its build id and its symbol tables. Objects are shared
// by every process that maps the same file, and may hold memory-mapped
// file data, so users acquire and release them.
type object struct {
	buildID string // GNU build id in hex, else the Go build id, else ""
	loads   []segment
	// funcs are the ELF function symbols; of a Go binary only those its
	// pclntab does not cover (cgo and assembly outside the Go text).
	funcs funcTable
	goTab *goTable // nil unless the file is a Go binary
	// text is the file's executable segments, mapped, of files that are
	// not Go binaries: the code that SkippedCaller decodes, also after
	// the processes that ran it have exited.
	text []textSegment

	// heapBytes is what the object holds on the heap, which
	// Config.MaxTableBytes bounds; mappedBytes is what it maps of its
	// file, page cache the kernel can reclaim, which it does not.
	heapBytes, mappedBytes int64

	refs    atomic.Int64
	evicted atomic.Bool
	unmap   func()
	once    sync.Once
}

type textSegment struct {
	vaddr uint64
	data  []byte
}

// code returns n bytes of the file's code at vaddr.
func (o *object) code(vaddr, n uint64) ([]byte, bool) {
	for _, t := range o.text {
		if vaddr >= t.vaddr && vaddr-t.vaddr <= uint64(len(t.data)) && n <= uint64(len(t.data))-(vaddr-t.vaddr) {
			off := vaddr - t.vaddr
			return t.data[off : off+n], true
		}
	}
	return nil, false
}

type segment struct {
	off, filesz, vaddr uint64
	exec               bool
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
//
// The symbol tables are read in place, mapped for the load only. A Go
// binary is symbolized through its pclntab; of its symbol tables it keeps
// only the functions outside the pclntab's range, which is none for a
// binary without cgo or linked-in assembly of its own.
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

	// What the object keeps mapped is counted, and uncounted when given
	// back while loading.
	var mapped int64
	keep := func(off, length int64) ([]byte, func(), error) {
		b, rel, err := m(off, length)
		if err != nil {
			return nil, nil, err
		}
		mapped += int64(len(b))
		return b, func() { mapped -= int64(len(b)); rel() }, nil
	}
	tabs, err := mapSymtabs(f, fits, m)
	if err != nil {
		return nil, err
	}
	defer tabs.close()
	var release []func()
	unmap := func() {
		for _, r := range release {
			r()
		}
	}
	var covered pcRange
	if gt, rel := loadGoTable(f, tabs.goSymbols(), fits, keep); gt != nil {
		o.goTab, release = gt, rel
		covered = gt.covered()
	}
	funcs, rel, err := tabs.functions(f, covered, keep)
	if err != nil {
		unmap()
		return nil, err
	}
	o.funcs, release = funcs, append(release, rel...)
	if o.goTab == nil {
		for _, sg := range o.loads {
			if !sg.exec || sg.filesz == 0 {
				continue
			}
			b, rel, err := keep(int64(sg.off), int64(sg.filesz))
			if err != nil {
				unmap()
				return nil, err
			}
			o.text, release = append(o.text, textSegment{vaddr: sg.vaddr, data: b}), append(release, rel)
		}
	}
	o.unmap = unmap
	o.heapBytes, o.mappedBytes = o.heapSize(), mapped
	return o, nil
}

// heapSize estimates the heap an object retains: its own tables, not the
// mapped file data they point into.
func (o *object) heapSize() int64 {
	n := unsafe.Sizeof(*o) + uintptr(len(o.buildID)) +
		uintptr(cap(o.loads))*unsafe.Sizeof(segment{}) + uintptr(cap(o.text))*unsafe.Sizeof(textSegment{}) + uintptr(cap(o.funcs.syms))*unsafe.Sizeof(funcSym{})
	if g := o.goTab; g != nil {
		n += unsafe.Sizeof(*g)
		if g.legacy != nil {
			// debug/gosym keeps a Func, a Sym and the name for every
			// function, and its line table caches the names again.
			for _, fn := range g.legacy.Funcs {
				n += unsafe.Sizeof(gosym.Func{}) + unsafe.Sizeof(gosym.Sym{}) + 2*uintptr(len(fn.Name)) + 64
			}
		}
	}
	return int64(n)
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
	if name, ok := o.funcs.lookup(vaddr); ok {
		return []Frame{newFrame(name)}
	}
	return nil
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
