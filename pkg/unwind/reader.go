package unwind

import "encoding/binary"

// reader decodes DWARF data; a read past the end sets err instead of
// panicking, so outside input never crashes the agent.
type reader struct {
	b   []byte
	off int
	err bool
}

func (r *reader) need(n int) bool {
	if r.err || n < 0 || r.off+n > len(r.b) || r.off+n < r.off {
		r.err = true
		return false
	}
	return true
}

func (r *reader) u8() byte {
	if !r.need(1) {
		return 0
	}
	r.off++
	return r.b[r.off-1]
}

func (r *reader) u16() uint16 {
	if !r.need(2) {
		return 0
	}
	r.off += 2
	return binary.LittleEndian.Uint16(r.b[r.off-2:])
}

func (r *reader) u32() uint32 {
	if !r.need(4) {
		return 0
	}
	r.off += 4
	return binary.LittleEndian.Uint32(r.b[r.off-4:])
}

func (r *reader) u64() uint64 {
	if !r.need(8) {
		return 0
	}
	r.off += 8
	return binary.LittleEndian.Uint64(r.b[r.off-8:])
}

func (r *reader) bytes(n int) []byte {
	if !r.need(n) {
		return nil
	}
	r.off += n
	return r.b[r.off-n : r.off]
}

// skipTo moves to n bytes past start, an offset already read; beyond the
// data (or a length that does not fit an int) is an error.
func (r *reader) skipTo(start int, n uint64) {
	if r.err || start < 0 || start > len(r.b) || n > uint64(len(r.b)-start) {
		r.err = true
		return
	}
	r.off = start + int(n)
}

func (r *reader) rest() []byte {
	if r.err || r.off < 0 || r.off > len(r.b) {
		return nil
	}
	return r.b[r.off:]
}

func (r *reader) cstring() string {
	for i := r.off; i < len(r.b); i++ {
		if r.b[i] == 0 {
			s := string(r.b[r.off:i])
			r.off = i + 1
			return s
		}
	}
	r.err = true
	return ""
}

func (r *reader) uleb() uint64 {
	var v uint64
	for shift := uint(0); ; shift += 7 {
		b := r.u8()
		if r.err {
			return 0
		}
		if shift < 64 {
			v |= uint64(b&0x7f) << shift
		}
		if b&0x80 == 0 {
			return v
		}
	}
}

func (r *reader) sleb() int64 {
	var v int64
	shift := uint(0)
	for {
		b := r.u8()
		if r.err {
			return 0
		}
		if shift < 64 {
			v |= int64(b&0x7f) << shift
		}
		shift += 7
		if b&0x80 == 0 {
			if shift < 64 && b&0x40 != 0 {
				v |= -1 << shift
			}
			return v
		}
	}
}

// Pointer encodings (DW_EH_PE_*) used by .eh_frame.
const (
	dwEhPeAbsptr  = 0x00
	dwEhPeUleb128 = 0x01
	dwEhPeUdata2  = 0x02
	dwEhPeUdata4  = 0x03
	dwEhPeUdata8  = 0x04
	dwEhPeSleb128 = 0x09
	dwEhPeSdata2  = 0x0a
	dwEhPeSdata4  = 0x0b
	dwEhPeSdata8  = 0x0c
	dwEhPePcrel   = 0x10
	dwEhPeOmit    = 0xff
)

// pointer reads an encoded pointer; secAddr is the virtual address of the
// section's first byte, for pc-relative values (0 to read a plain value).
func (r *reader) pointer(enc byte, secAddr uint64) uint64 {
	if enc == dwEhPeOmit {
		return 0
	}
	pos := secAddr + uint64(r.off)
	var v uint64
	switch enc & 0x0f {
	case dwEhPeAbsptr, dwEhPeUdata8, dwEhPeSdata8:
		v = r.u64()
	case dwEhPeUleb128:
		v = r.uleb()
	case dwEhPeUdata2:
		v = uint64(r.u16())
	case dwEhPeSdata2:
		v = uint64(int64(int16(r.u16())))
	case dwEhPeUdata4:
		v = uint64(r.u32())
	case dwEhPeSdata4:
		v = uint64(int64(int32(r.u32())))
	case dwEhPeSleb128:
		v = uint64(r.sleb())
	default:
		r.err = true
		return 0
	}
	if enc&0x70 == dwEhPePcrel && secAddr != 0 {
		v += pos
	}
	return v
}
