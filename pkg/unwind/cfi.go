// Package unwind walks x86-64 user stacks from a copied stack window, using
// the call-frame information (.eh_frame, .debug_frame) of the mapped binaries
// and the frame-pointer chain where a frame has no CFI (Go code).
//
// Only x86-64 is handled: register numbers, the PLT expression and the
// return-address slot are those of the x86-64 psABI. arm64 is left out.
package unwind

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"sort"
)

// cfaKind says how a row computes the canonical frame address.
type cfaKind uint8

const (
	// cfaNone marks a PC with no CFI (a gap between FDEs).
	cfaNone cfaKind = iota
	cfaRSP
	cfaRBP
	// cfaPLT10 and cfaPLT11 are the two forms of the expression that
	// binutils emits for .plt: CFA = rsp+8, plus 8 when (rip&15) >= 10 or 11.
	cfaPLT10
	cfaPLT11
	// cfaSignal is the kernel's signal frame (glibc's __restore_rt, in a
	// CIE with 'S'): sp points at the ucontext, which holds the interrupted
	// rip, rsp and rbp at fixed offsets of the x86-64 ABI.
	cfaSignal
	// cfaUnknown is a rule this unwinder cannot evaluate (another
	// expression, a register other than rsp/rbp): unwinding stops there.
	cfaUnknown
)

const (
	// flagRAUndefined marks the outermost frame (_start, clone): the
	// return address rule is DW_CFA_undefined.
	flagRAUndefined uint8 = 1 << iota
	// flagRBPSaved says rbp is saved at CFA+RBPOff.
	flagRBPSaved
	// flagRAUnknown marks a return address not at CFA-8.
	flagRAUnknown
	// flagRBPUnknown marks an rbp rule this unwinder cannot follow.
	flagRBPUnknown
)

// row is one line of a binary's table: from PC up to the next row's PC,
// its rule. A Table keeps its rows compacted (rowTable).
type row struct {
	PC uint64
	rule
}

// x86-64 DWARF register numbers.
const (
	regRBP = 6
	regRSP = 7
	regRA  = 16
)

// fde is the parsed part of one FDE that the table builder needs.
type fde struct {
	begin, end uint64
	cie        *cie
	insns      []byte
}

type cie struct {
	codeAlign uint64
	dataAlign int64
	raReg     uint64
	fdeEnc    byte
	aug       bool // 'z': FDEs carry an augmentation data length
	signal    bool
	insns     []byte
}

// frameSection is an .eh_frame or .debug_frame section to parse.
type frameSection struct {
	data []byte
	addr uint64 // the section's virtual address, for pc-relative pointers
	eh   bool   // .eh_frame (CIE id 0, relative CIE pointers) or .debug_frame
}

var errMalformed = errors.New("malformed call-frame information")

// parseFDEs reads every FDE of the section. A malformed entry ends the walk
// with the FDEs read so far and an error, so a damaged tail costs only itself.
func parseFDEs(s frameSection) ([]fde, error) {
	cies := map[uint64]*cie{}
	var out []fde
	for off := uint64(0); off+4 <= uint64(len(s.data)); {
		start := off
		length := uint64(binary.LittleEndian.Uint32(s.data[off:]))
		off += 4
		is64 := false
		if length == 0xffffffff {
			if off+8 > uint64(len(s.data)) {
				return out, errMalformed
			}
			length = binary.LittleEndian.Uint64(s.data[off:])
			off += 8
			is64 = true
		}
		if length == 0 {
			if s.eh {
				break // the terminator of .eh_frame
			}
			continue
		}
		body := off
		next := off + length
		if next > uint64(len(s.data)) || next < off {
			return out, errMalformed
		}
		r := reader{b: s.data[:next], off: int(body)}
		var id uint64
		if is64 {
			id = r.u64()
		} else {
			id = uint64(r.u32())
		}
		isCIE := (s.eh && id == 0) || (!s.eh && (id == 0xffffffff || (is64 && id == ^uint64(0))))
		if isCIE {
			c, err := parseCIE(&r, s)
			if err != nil {
				return out, fmt.Errorf("cie at %#x: %w", start, err)
			}
			cies[start] = c
		} else {
			var cieOff uint64
			if s.eh {
				cieOff = body - id
			} else {
				cieOff = id
			}
			c, ok := cies[cieOff]
			if !ok {
				// A CIE that follows its FDE is legal but rare; parse it on demand.
				cr, err := cieAt(s, cieOff)
				if err != nil {
					return out, fmt.Errorf("fde at %#x: %w", start, err)
				}
				c = cr
				cies[cieOff] = c
			}
			f, err := parseFDE(&r, s, c)
			if err != nil {
				return out, fmt.Errorf("fde at %#x: %w", start, err)
			}
			if f.end > f.begin {
				out = append(out, f)
			}
		}
		off = next
	}
	return out, nil
}

func cieAt(s frameSection, off uint64) (*cie, error) {
	n := uint64(len(s.data))
	if n < 8 || off > n-8 {
		return nil, errMalformed // a CIE pointer before or past the section
	}
	length := uint64(binary.LittleEndian.Uint32(s.data[off:]))
	if length == 0xffffffff || length < 4 || length > n-off-4 {
		return nil, errMalformed
	}
	r := reader{b: s.data[:off+4+length], off: int(off + 8)}
	return parseCIE(&r, s)
}

func parseCIE(r *reader, s frameSection) (*cie, error) {
	c := &cie{fdeEnc: 0}
	version := r.u8()
	aug := r.cstring()
	if version == 4 {
		r.u8() // address size
		r.u8() // segment size
	}
	c.codeAlign = r.uleb()
	c.dataAlign = r.sleb()
	if version == 1 {
		c.raReg = uint64(r.u8())
	} else {
		c.raReg = r.uleb()
	}
	if !s.eh {
		c.fdeEnc = dwEhPeUdata8
	}
	if len(aug) > 0 && aug[0] == 'z' {
		c.aug = true
		n := r.uleb()
		start := r.off
		for _, ch := range aug[1:] {
			switch ch {
			case 'R':
				c.fdeEnc = r.u8()
			case 'L':
				r.u8()
			case 'P':
				enc := r.u8()
				r.pointer(enc, s.addr)
			case 'S':
				c.signal = true
			}
		}
		r.skipTo(start, n)
	} else if aug != "" && s.eh {
		return nil, fmt.Errorf("augmentation %q: %w", aug, errMalformed)
	}
	if r.err {
		return nil, errMalformed
	}
	c.insns = r.rest()
	return c, nil
}

func parseFDE(r *reader, s frameSection, c *cie) (fde, error) {
	begin := r.pointer(c.fdeEnc, s.addr)
	size := r.pointer(c.fdeEnc&0x0f, 0)
	if c.aug {
		n := r.uleb()
		r.skipTo(r.off, n)
	}
	if r.err || r.off > len(r.b) {
		return fde{}, errMalformed
	}
	return fde{begin: begin, end: begin + size, cie: c, insns: r.rest()}, nil
}

// regRule is the state of one register while running the instructions.
type regRule struct {
	kind uint8 // ruleSame, ruleOffset, ruleUndefined, ruleOther
	off  int64
}

const (
	ruleSame uint8 = iota
	ruleOffset
	ruleUndefined
	ruleOther
)

type cfaState struct {
	kind cfaKind
	reg  uint64
	off  int64
	rbp  regRule
	ra   regRule
}

func (st cfaState) row(pc uint64) row {
	rw := row{PC: pc, rule: rule{CFA: st.kind}}
	if st.kind == cfaRSP || st.kind == cfaRBP {
		if st.off != int64(int32(st.off)) {
			rw.CFA = cfaUnknown
		}
		rw.CFAOff = int32(st.off)
	}
	switch st.ra.kind {
	case ruleUndefined:
		rw.Flags |= flagRAUndefined
	case ruleOffset:
		if st.ra.off != -8 {
			rw.Flags |= flagRAUnknown
		}
	default:
		rw.Flags |= flagRAUnknown
	}
	switch st.rbp.kind {
	case ruleOffset:
		if st.rbp.off == int64(int16(st.rbp.off)) {
			rw.Flags |= flagRBPSaved
			rw.RBPOff = int16(st.rbp.off)
		} else {
			rw.Flags |= flagRBPUnknown
		}
	case ruleUndefined, ruleOther:
		rw.Flags |= flagRBPUnknown
	}
	return rw
}

func (st *cfaState) setCFA(reg uint64, off int64) {
	st.reg, st.off = reg, off
	switch reg {
	case regRSP:
		st.kind = cfaRSP
	case regRBP:
		st.kind = cfaRBP
	default:
		st.kind = cfaUnknown
	}
}

func (st *cfaState) setReg(reg uint64, rule regRule) {
	switch reg {
	case regRBP:
		st.rbp = rule
	case regRA:
		st.ra = rule
	}
}

// pltExpr matches the DW_CFA_def_cfa_expression binutils writes for .plt:
// DW_OP_breg7 8; DW_OP_breg16 0; DW_OP_lit15; DW_OP_and; DW_OP_lit10|11;
// DW_OP_ge; DW_OP_lit3; DW_OP_shl; DW_OP_plus.
func pltExpr(e []byte) (cfaKind, bool) {
	if len(e) != 11 || e[0] != 0x77 || e[1] != 0x08 || e[2] != 0x80 || e[3] != 0x00 ||
		e[4] != 0x3f || e[5] != 0x1a || e[7] != 0x2a || e[8] != 0x33 || e[9] != 0x24 || e[10] != 0x22 {
		return cfaUnknown, false
	}
	switch e[6] {
	case 0x3a:
		return cfaPLT10, true
	case 0x3b:
		return cfaPLT11, true
	}
	return cfaUnknown, false
}

// sigreturnCFA is glibc's CFA for __restore_rt: DW_OP_breg7 160; DW_OP_deref,
// the interrupted rsp saved in the ucontext.
var sigreturnCFA = []byte{0x77, 0xa0, 0x01, 0x06}

// rows runs the CIE's and the FDE's instructions and appends one row per
// change of location, ending with a cfaNone row at the FDE's end.
func (f fde) rows(out []row) ([]row, error) {
	c := f.cie
	st := cfaState{ra: regRule{kind: ruleOffset, off: -8}}
	pc := f.begin
	var initial cfaState
	var stack []cfaState
	// Rows exist only inside [begin, end); a location that moves backwards
	// or wraps is malformed CFI, which keeps the table sorted for lookup.
	emit := func() {
		if pc < f.begin || pc >= f.end {
			return
		}
		rw := st.row(pc)
		if n := len(out); n > 0 && out[n-1].PC == pc {
			out[n-1] = rw
			return
		}
		if n := len(out); n > 0 && sameRule(out[n-1], rw) {
			return // the rule did not change: no new row needed
		}
		out = append(out, rw)
	}
	run := func(insns []byte, isInitial bool) error {
		r := reader{b: insns}
		for r.off < len(r.b) && !r.err {
			op := r.u8()
			advance := func(delta uint64) {
				emit()
				hi, step := bits.Mul64(delta, c.codeAlign)
				next, carry := bits.Add64(pc, step, 0)
				if hi != 0 || carry != 0 {
					r.err = true // the location wrapped
				}
				pc = next
			}
			switch op >> 6 {
			case 1:
				advance(uint64(op & 0x3f))
				continue
			case 2:
				st.setReg(uint64(op&0x3f), regRule{kind: ruleOffset, off: int64(r.uleb()) * c.dataAlign})
				continue
			case 3:
				st.setReg(uint64(op&0x3f), restore(initial, uint64(op&0x3f)))
				continue
			}
			switch op {
			case 0x00: // nop
			case 0x01: // set_loc
				emit()
				next := r.pointer(c.fdeEnc, 0)
				if next < pc {
					return fmt.Errorf("set_loc backwards: %w", errMalformed)
				}
				pc = next
			case 0x02:
				advance(uint64(r.u8()))
			case 0x03:
				advance(uint64(r.u16()))
			case 0x04:
				advance(uint64(r.u32()))
			case 0x05: // offset_extended
				reg := r.uleb()
				st.setReg(reg, regRule{kind: ruleOffset, off: int64(r.uleb()) * c.dataAlign})
			case 0x06: // restore_extended
				reg := r.uleb()
				st.setReg(reg, restore(initial, reg))
			case 0x07: // undefined
				st.setReg(r.uleb(), regRule{kind: ruleUndefined})
			case 0x08: // same_value
				st.setReg(r.uleb(), regRule{kind: ruleSame})
			case 0x09: // register
				reg := r.uleb()
				r.uleb()
				st.setReg(reg, regRule{kind: ruleOther})
			case 0x0a: // remember_state
				if len(stack) > 64 {
					return errMalformed
				}
				stack = append(stack, st)
			case 0x0b: // restore_state
				if len(stack) == 0 {
					return errMalformed
				}
				// The CFA survives restore_state in GCC's reading too.
				st = stack[len(stack)-1]
				stack = stack[:len(stack)-1]
			case 0x0c: // def_cfa
				reg := r.uleb()
				st.setCFA(reg, int64(r.uleb()))
			case 0x0d: // def_cfa_register
				st.setCFA(r.uleb(), st.off)
			case 0x0e: // def_cfa_offset
				st.setCFA(st.reg, int64(r.uleb()))
			case 0x0f: // def_cfa_expression
				n := r.uleb()
				e := r.bytes(int(n))
				if k, ok := pltExpr(e); ok {
					st.kind, st.off = k, 8
				} else if c.signal && bytes.Equal(e, sigreturnCFA) {
					st.kind, st.off = cfaSignal, 0
				} else {
					st.kind = cfaUnknown
				}
			case 0x10: // expression
				reg := r.uleb()
				r.bytes(int(r.uleb()))
				st.setReg(reg, regRule{kind: ruleOther})
			case 0x11: // offset_extended_sf
				reg := r.uleb()
				st.setReg(reg, regRule{kind: ruleOffset, off: r.sleb() * c.dataAlign})
			case 0x12: // def_cfa_sf
				reg := r.uleb()
				st.setCFA(reg, r.sleb()*c.dataAlign)
			case 0x13: // def_cfa_offset_sf
				st.setCFA(st.reg, r.sleb()*c.dataAlign)
			case 0x14: // val_offset
				reg := r.uleb()
				r.uleb()
				st.setReg(reg, regRule{kind: ruleOther})
			case 0x15: // val_offset_sf
				reg := r.uleb()
				r.sleb()
				st.setReg(reg, regRule{kind: ruleOther})
			case 0x16: // val_expression
				reg := r.uleb()
				r.bytes(int(r.uleb()))
				st.setReg(reg, regRule{kind: ruleOther})
			case 0x2e: // GNU_args_size
				r.uleb()
			case 0x2f: // GNU_negative_offset_extended
				reg := r.uleb()
				st.setReg(reg, regRule{kind: ruleOffset, off: -int64(r.uleb()) * c.dataAlign})
			default:
				return fmt.Errorf("opcode %#x: %w", op, errMalformed)
			}
			if isInitial {
				initial = st
			}
		}
		if r.err {
			return errMalformed
		}
		return nil
	}
	if err := run(c.insns, true); err != nil {
		return out, err
	}
	initial = st
	if err := run(f.insns, false); err != nil {
		return out, err
	}
	if pc < f.end {
		emit()
	}
	out = append(out, row{PC: f.end, rule: rule{CFA: cfaNone}})
	return out, nil
}

func sameRule(a, b row) bool {
	a.PC = b.PC
	return a == b
}

func restore(initial cfaState, reg uint64) regRule {
	switch reg {
	case regRBP:
		return initial.rbp
	case regRA:
		return initial.ra
	}
	return regRule{}
}

// buildRows turns FDEs into one sorted table. Where FDEs overlap (a
// .debug_frame entry for a range .eh_frame covers), the first one given wins.
func buildRows(fdes []fde) []row {
	sort.SliceStable(fdes, func(i, j int) bool { return fdes[i].begin < fdes[j].begin })
	var out []row
	var covered uint64
	for _, f := range fdes {
		if f.begin < covered {
			continue
		}
		n := len(out)
		// A gap row ends where this FDE starts; drop it so lookups land here.
		if n > 0 && out[n-1].CFA == cfaNone && out[n-1].PC == f.begin {
			out = out[:n-1]
		}
		var err error
		mark := len(out)
		out, err = f.rows(out)
		if err != nil {
			// An FDE whose instructions we cannot run is no CFI at all,
			// never a guessed rule.
			out = append(out[:mark], row{PC: f.begin, rule: rule{CFA: cfaNone}})
		}
		covered = f.end
	}
	return out
}
