package unwind

import (
	"fmt"
	"math"
	"sort"
)

// rule is what a row says, without where it starts: a binary repeats few
// (libc 304, LLVM 15's library 596), as a function's prologue and
// epilogue are the same everywhere it is compiled alike.
type rule struct {
	CFAOff int32
	RBPOff int16
	CFA    cfaKind
	Flags  uint8
}

// rowTable holds a binary's rows in 6 bytes each, instead of the 16 of a
// row: the start of each as a 32-bit offset from the first, and the index
// of its rule among the distinct ones. A table of n rows with r distinct
// rules costs 6n + 8r bytes.
type rowTable struct {
	base  uint64
	pcs   []uint32 // sorted; row i covers [base+pcs[i], base+pcs[i+1])
	rule  []uint16 // index into rules
	rules []rule
}

// compactRows builds the rowTable of rows (sorted by PC, as buildRows
// gives them). It fails where the rows span 4 GiB of addresses or more,
// or hold more than 65,536 distinct rules: no binary we measured comes
// near either.
func compactRows(rows []row) (rowTable, error) {
	if len(rows) == 0 {
		return rowTable{}, nil
	}
	t := rowTable{
		base: rows[0].PC,
		pcs:  make([]uint32, len(rows)),
		rule: make([]uint16, len(rows)),
	}
	if span := rows[len(rows)-1].PC - t.base; span > math.MaxUint32 {
		return rowTable{}, fmt.Errorf("its call-frame information spans %d bytes of addresses, over the 4 GiB a table holds", span)
	}
	index := make(map[rule]uint16)
	for i, r := range rows {
		key := r.rule
		n, ok := index[key]
		if !ok {
			if len(t.rules) > math.MaxUint16 {
				return rowTable{}, fmt.Errorf("its call-frame information has over %d distinct rules, more than a table holds", math.MaxUint16+1)
			}
			n = uint16(len(t.rules))
			index[key] = n
			t.rules = append(t.rules, key)
		}
		t.pcs[i] = uint32(r.PC - t.base)
		t.rule[i] = n
	}
	t.rules = append(make([]rule, 0, len(t.rules)), t.rules...) // exact length
	return t, nil
}

// lookup finds the row covering pc.
func (t *rowTable) lookup(pc uint64) (row, bool) {
	if len(t.pcs) == 0 || pc < t.base || pc-t.base > math.MaxUint32 {
		return row{}, false
	}
	off := uint32(pc - t.base)
	i := sort.Search(len(t.pcs), func(i int) bool { return t.pcs[i] > off })
	if i == 0 {
		return row{}, false
	}
	rw := row{PC: t.base + uint64(t.pcs[i-1]), rule: t.rules[t.rule[i-1]]}
	return rw, rw.CFA != cfaNone
}

// len is the number of rows.
func (t *rowTable) len() int { return len(t.pcs) }

// size is the table's memory cost in bytes.
func (t *rowTable) size() int { return cap(t.pcs)*4 + cap(t.rule)*2 + cap(t.rules)*8 }
