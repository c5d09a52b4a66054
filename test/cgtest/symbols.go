package cgtest

import (
	"bufio"
	"debug/elf"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
)

// FuncNames names the frames of a live process's stack that fall in its main
// executable, from the ELF symbol table; other frames are "?". It is the
// tests' independent check of what the tracer recorded, not leakwatch's
// symbolizer.
func FuncNames(pid int, exe string, ips []uint64) ([]string, error) {
	f, err := elf.Open(exe)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	syms, err := f.Symbols()
	if err != nil {
		return nil, err
	}
	sort.Slice(syms, func(i, j int) bool { return syms[i].Value < syms[j].Value })

	// Load bias of the executable: its first mapping's start minus the
	// offset-0 segment's virtual address (0 for non-PIE).
	bias, err := loadBias(pid, exe, f)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(ips))
	for i, ip := range ips {
		names[i] = "?"
		addr := ip - bias
		j := sort.Search(len(syms), func(k int) bool { return syms[k].Value > addr }) - 1
		if j >= 0 && elf.ST_TYPE(syms[j].Info) == elf.STT_FUNC && addr < syms[j].Value+max(syms[j].Size, 1) {
			names[i] = syms[j].Name
		}
	}
	return names, nil
}

func loadBias(pid int, exe string, f *elf.File) (uint64, error) {
	if f.Type != elf.ET_DYN {
		return 0, nil
	}
	maps, err := os.Open(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return 0, err
	}
	defer maps.Close()
	target, err := os.Stat(exe)
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(maps)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[2] != "00000000" {
			continue
		}
		st, err := os.Stat(fields[5])
		if err != nil || !os.SameFile(st, target) {
			continue
		}
		start, err := strconv.ParseUint(strings.SplitN(fields[0], "-", 2)[0], 16, 64)
		if err != nil {
			return 0, err
		}
		var firstVaddr uint64
		for _, p := range f.Progs {
			if p.Type == elf.PT_LOAD {
				firstVaddr = p.Vaddr &^ (p.Align - 1)
				break
			}
		}
		return start - firstVaddr, nil
	}
	return 0, fmt.Errorf("%s is not mapped in pid %d", exe, pid)
}
