package unwind

import (
	"bufio"
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// VDSOPath is how /proc/PID/maps and perf name the vDSO mapping.
const VDSOPath = "[vdso]"

// atSysinfoEHDR is the auxv key of the vDSO's address.
const atSysinfoEHDR = 33

// ownVDSO reads this process's vDSO image. The vDSO is the kernel's, the
// same in every 64-bit process of the node, so one copy serves them all;
// calls like clock_gettime leave samples there.
func ownVDSO() (*elf.File, error) {
	auxv, err := os.ReadFile("/proc/self/auxv")
	if err != nil {
		return nil, fmt.Errorf("reading auxv: %w", err)
	}
	var base uint64
	for i := 0; i+16 <= len(auxv); i += 16 {
		if binary.LittleEndian.Uint64(auxv[i:]) == atSysinfoEHDR {
			base = binary.LittleEndian.Uint64(auxv[i+8:])
		}
	}
	if base == 0 {
		return nil, errors.New("no vdso in auxv")
	}
	size, err := mappingSize("/proc/self/maps", base)
	if err != nil {
		return nil, err
	}
	mem, err := os.Open("/proc/self/mem")
	if err != nil {
		return nil, fmt.Errorf("opening own memory: %w", err)
	}
	defer mem.Close()
	img := make([]byte, size)
	if _, err := mem.ReadAt(img, int64(base)); err != nil {
		return nil, fmt.Errorf("reading vdso: %w", err)
	}
	return elf.NewFile(bytes.NewReader(img))
}

// mappingSize finds the length of the mapping that starts at addr.
func mappingSize(maps string, addr uint64) (uint64, error) {
	f, err := os.Open(maps)
	if err != nil {
		return 0, fmt.Errorf("reading maps: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rng, _, _ := strings.Cut(sc.Text(), " ")
		lo, hi, ok := strings.Cut(rng, "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 == nil && err2 == nil && start == addr && end > start && end-start <= 1<<20 {
			return end - start, nil
		}
	}
	return 0, fmt.Errorf("no mapping at %#x", addr)
}
