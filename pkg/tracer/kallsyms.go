package tracer

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
)

// memcgOOMFuncs run only when a memory cgroup's limit fires: the kernel side
// looks for them on the allocating task's kernel stack to tell such an OOM
// from the node's. mem_cgroup_out_of_memory may be inlined into
// try_charge_memcg on some builds, hence both.
var memcgOOMFuncs = [2]string{"mem_cgroup_out_of_memory", "try_charge_memcg"}

// memcgOOMText reads the text ranges [start, end) of memcgOOMFuncs from
// kallsyms, laid out as the kernel side's memcg_oom_text.
func memcgOOMText(path string) ([4]uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return [4]uint64{}, fmt.Errorf("reading kernel symbols: %w", err)
	}
	defer f.Close()
	return parseMemcgOOMText(f)
}

// parseMemcgOOMText finds the functions' addresses; each ends where the next
// symbol above it starts. kallsyms shows every address as 0 to a reader
// without the right to see them.
func parseMemcgOOMText(r io.Reader) ([4]uint64, error) {
	var out [4]uint64
	var addrs []uint64
	var starts [len(memcgOOMFuncs)]uint64
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		// "ffffffff816adc00 t mem_cgroup_out_of_memory [module]"
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 {
			continue
		}
		addr, err := strconv.ParseUint(fields[0], 16, 64)
		if err != nil || addr == 0 {
			continue
		}
		addrs = append(addrs, addr)
		if t := fields[1]; t != "t" && t != "T" {
			continue
		}
		for i, name := range memcgOOMFuncs {
			if fields[2] == name && starts[i] == 0 {
				starts[i] = addr
			}
		}
	}
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("reading kernel symbols: %w", err)
	}
	slices.Sort(addrs)
	found := 0
	for _, start := range starts {
		if start == 0 {
			continue
		}
		j, _ := slices.BinarySearch(addrs, start+1)
		if j == len(addrs) {
			continue
		}
		out[2*found], out[2*found+1] = start, addrs[j]
		found++
	}
	if found == 0 {
		return out, errors.New("no memory cgroup OOM function in kernel symbols (addresses hidden?)")
	}
	return out, nil
}
