// Package perfdata reads the samples of a perf.data file written by
// `perf record --call-graph dwarf`: user registers, user stack bytes and
// mmap records. It exists so the unwinder's tests can replay the exact
// bytes perf unwound; it reads only what those tests need (x86-64, file
// mode, no compression).
package perfdata

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"os"
)

// Sample is one PERF_RECORD_SAMPLE with user registers and stack.
type Sample struct {
	PID, TID  uint32
	Time      uint64
	IP        uint64
	Regs      map[int]uint64 // by perf register number (PERF_REG_X86_*)
	Stack     []byte         // the dyn_size bytes perf copied from sp
	Callchain []uint64
}

// x86-64 perf register numbers.
const (
	RegBP = 6
	RegSP = 7
	RegIP = 8
)

// Mmap is one PERF_RECORD_MMAP/MMAP2 of an executable mapping.
type Mmap struct {
	PID        uint32
	Start, Len uint64
	Pgoff      uint64
	Filename   string
	Executable bool
}

// File is the parsed content.
type File struct {
	Samples []Sample
	Mmaps   []Mmap
}

const (
	sampleIdentifier = 1 << 16
	sampleIP         = 1 << 0
	sampleTID        = 1 << 1
	sampleTime       = 1 << 2
	sampleAddr       = 1 << 3
	sampleRead       = 1 << 4
	sampleCallchain  = 1 << 5
	sampleID         = 1 << 6
	sampleCPU        = 1 << 7
	samplePeriod     = 1 << 8
	sampleStreamID   = 1 << 9
	sampleRaw        = 1 << 10
	sampleBranch     = 1 << 11
	sampleRegsUser   = 1 << 12
	sampleStackUser  = 1 << 13

	recordMmap   = 1
	recordSample = 9
	recordMmap2  = 10

	protExec = 4
)

type attr struct {
	sampleType uint64
	regsMask   uint64
}

var le = binary.LittleEndian

// Read parses path.
func Read(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading perf.data: %w", err)
	}
	if len(b) < 104 || string(b[:8]) != "PERFILE2" {
		return nil, errors.New("not a perf.data file (PERFILE2)")
	}
	attrSize := le.Uint64(b[16:])
	attrsOff, attrsSize := le.Uint64(b[24:]), le.Uint64(b[32:])
	dataOff, dataSize := le.Uint64(b[40:]), le.Uint64(b[48:])
	if attrsOff+attrsSize > uint64(len(b)) || dataOff+dataSize > uint64(len(b)) || attrSize < 16+96 {
		return nil, errors.New("perf.data sections out of range")
	}
	// Each attrs entry (attr_size bytes) is perf_event_attr followed by the
	// file section of its sample ids.
	byID := map[uint64]attr{}
	var attrs []attr
	for off := attrsOff; off+attrSize <= attrsOff+attrsSize; off += attrSize {
		a := b[off:]
		at := attr{sampleType: le.Uint64(a[24:]), regsMask: le.Uint64(a[80:])}
		attrs = append(attrs, at)
		idsOff, idsSize := le.Uint64(a[attrSize-16:]), le.Uint64(a[attrSize-8:])
		for i := idsOff; i+8 <= idsOff+idsSize && i+8 <= uint64(len(b)); i += 8 {
			byID[le.Uint64(b[i:])] = at
		}
	}
	if len(attrs) == 0 {
		return nil, errors.New("perf.data has no event attributes")
	}
	f := &File{}
	data := b[dataOff : dataOff+dataSize]
	for off := 0; off+8 <= len(data); {
		typ := le.Uint32(data[off:])
		misc := le.Uint16(data[off+4:])
		size := int(le.Uint16(data[off+6:]))
		if size < 8 || off+size > len(data) {
			return f, errors.New("perf.data record out of range")
		}
		rec := data[off+8 : off+size]
		off += size
		switch typ {
		case recordSample:
			at := attrs[0]
			if len(attrs) > 1 {
				if at.sampleType&sampleIdentifier == 0 || len(rec) < 8 {
					return f, errors.New("several events without PERF_SAMPLE_IDENTIFIER")
				}
				var ok bool
				if at, ok = byID[le.Uint64(rec)]; !ok {
					continue
				}
			}
			if at.sampleType&(sampleRegsUser|sampleStackUser) != sampleRegsUser|sampleStackUser {
				continue // the dummy tracking event
			}
			s, err := parseSample(rec, at)
			if err != nil {
				return f, err
			}
			f.Samples = append(f.Samples, s)
		case recordMmap, recordMmap2:
			if len(rec) < 32 {
				continue
			}
			m := Mmap{PID: le.Uint32(rec), Start: le.Uint64(rec[8:]), Len: le.Uint64(rec[16:]), Pgoff: le.Uint64(rec[24:])}
			name := rec[32:]
			if typ == recordMmap2 {
				// pid tid addr len pgoff, 24 bytes of device/inode or build
				// id, prot, flags, filename.
				if len(rec) < 64 {
					continue
				}
				m.Executable = le.Uint32(rec[56:])&protExec != 0
				name = rec[64:]
			} else {
				m.Executable = misc&0x2000 == 0 // PERF_RECORD_MISC_MMAP_DATA unset
			}
			for i, c := range name {
				if c == 0 {
					name = name[:i]
					break
				}
			}
			m.Filename = string(name)
			f.Mmaps = append(f.Mmaps, m)
		}
	}
	return f, nil
}

func parseSample(rec []byte, at attr) (Sample, error) {
	var s Sample
	off := 0
	bad := errors.New("perf.data sample too short")
	u64 := func() uint64 {
		if off+8 > len(rec) {
			off = len(rec) + 1
			return 0
		}
		off += 8
		return le.Uint64(rec[off-8:])
	}
	st := at.sampleType
	if st&sampleIdentifier != 0 {
		u64()
	}
	if st&sampleIP != 0 {
		s.IP = u64()
	}
	if st&sampleTID != 0 {
		v := u64()
		s.PID, s.TID = uint32(v), uint32(v>>32)
	}
	if st&sampleTime != 0 {
		s.Time = u64()
	}
	if st&sampleAddr != 0 {
		u64()
	}
	if st&sampleID != 0 {
		u64()
	}
	if st&sampleStreamID != 0 {
		u64()
	}
	if st&sampleCPU != 0 {
		u64()
	}
	if st&samplePeriod != 0 {
		u64()
	}
	if st&sampleRead != 0 {
		return s, errors.New("PERF_SAMPLE_READ is not read")
	}
	if st&sampleCallchain != 0 {
		n := u64()
		if n > uint64(len(rec)) {
			return s, bad
		}
		for i := uint64(0); i < n; i++ {
			s.Callchain = append(s.Callchain, u64())
		}
	}
	if st&sampleRaw != 0 {
		if off+4 > len(rec) {
			return s, bad
		}
		off += 4 + int(le.Uint32(rec[off:]))
	}
	if st&sampleBranch != 0 {
		return s, errors.New("PERF_SAMPLE_BRANCH_STACK is not read")
	}
	if st&sampleRegsUser != 0 {
		if abi := u64(); abi != 0 {
			s.Regs = map[int]uint64{}
			mask := at.regsMask
			for mask != 0 {
				r := bits.TrailingZeros64(mask)
				mask &= mask - 1
				s.Regs[r] = u64()
			}
		}
	}
	if st&sampleStackUser != 0 {
		size := u64()
		if size > uint64(len(rec)) || off+int(size) > len(rec) {
			return s, bad
		}
		stack := rec[off : off+int(size)]
		off += int(size)
		if size != 0 {
			dyn := u64()
			if dyn < size {
				stack = stack[:dyn]
			}
		}
		s.Stack = stack
	}
	if off > len(rec) {
		return s, bad
	}
	return s, nil
}
