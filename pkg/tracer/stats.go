package tracer

import (
	"fmt"
	"io"
	"reflect"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// ProgramStat is the kernel's run-time accounting of one program. The kernel
// counts only while statistics are enabled (EnableStats or the sysctl
// kernel.bpf_stats_enabled), since counting costs a little on every run.
type ProgramStat struct {
	Name     string
	RunCount uint64
	RunTime  time.Duration
}

// EnableStats turns the kernel's BPF run-time accounting on until the
// returned closer is closed.
func EnableStats() (io.Closer, error) {
	c, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		return nil, fmt.Errorf("enabling BPF statistics: %w", err)
	}
	return c, nil
}

func (t *Tracer) programs() []struct {
	name string
	prog *ebpf.Program
} {
	o := &t.objs.leakwatchPrograms
	return []struct {
		name string
		prog *ebpf.Program
	}{
		{leakwatchProgHandleSysEnterMmap, o.HandleSysEnterMmap},
		{leakwatchProgHandleSysExitMmap, o.HandleSysExitMmap},
		{leakwatchProgHandleSysEnterMunmap, o.HandleSysEnterMunmap},
		{leakwatchProgHandleSysEnterMremap, o.HandleSysEnterMremap},
		{leakwatchProgHandleSysExitMremap, o.HandleSysExitMremap},
		{leakwatchProgHandleSysEnterBrk, o.HandleSysEnterBrk},
		{leakwatchProgHandleSysExitBrk, o.HandleSysExitBrk},
		{leakwatchProgHandleSysEnterMprotect, o.HandleSysEnterMprotect},
		{leakwatchProgHandleSysExitMprotect, o.HandleSysExitMprotect},
		{leakwatchProgHandlePageFault, o.HandlePageFault},
		{leakwatchProgHandleMarkVictim, o.HandleMarkVictim},
		{leakwatchProgHandleSchedProcessExit, o.HandleSchedProcessExit},
		{leakwatchProgHandleSchedProcessExec, o.HandleSchedProcessExec},
		{leakwatchProgHandleCgroupMkdir, o.HandleCgroupMkdir},
	}
}

// ProgramStats returns each program's run count and total run time.
func (t *Tracer) ProgramStats() ([]ProgramStat, error) {
	var out []ProgramStat
	for _, p := range t.programs() {
		st, err := p.prog.Stats()
		if err != nil {
			return nil, fmt.Errorf("reading stats of %s: %w", p.name, err)
		}
		out = append(out, ProgramStat{Name: p.name, RunCount: st.RunCount, RunTime: st.Runtime})
	}
	return out, nil
}

// mapMemoryEvery is how long MapMemory's figure is reused: reading it
// costs a /proc fdinfo read per map (about 5 ms a collection, a sixth of a
// collection's CPU with 100 containers), and it moves only with the one
// map that is not preallocated.
const mapMemoryEvery = time.Minute

// MapMemory is the kernel memory of the tracer's maps, by the kernel's own
// memlock accounting, read again at most once every mapMemoryEvery.
func (t *Tracer) MapMemory() (uint64, error) {
	t.mapMem.Lock()
	defer t.mapMem.Unlock()
	if !t.mapMem.at.IsZero() && time.Since(t.mapMem.at) < mapMemoryEvery {
		return t.mapMem.bytes, nil
	}
	total, err := t.readMapMemory()
	if err != nil {
		return 0, err
	}
	t.mapMem.bytes, t.mapMem.at = total, time.Now()
	return total, nil
}

func (t *Tracer) readMapMemory() (uint64, error) {
	var total uint64
	for _, m := range t.allMaps() {
		info, err := m.Info()
		if err != nil {
			return 0, fmt.Errorf("reading map info: %w", err)
		}
		if n, ok := info.Memlock(); ok {
			total += n
		}
	}
	return total, nil
}

// allMaps lists every map of the loaded objects, so that a map added to
// the BPF side is counted without a list here to keep in step (one was:
// the stack-copy ring, its scratch buffers and budget went uncounted).
func (t *Tracer) allMaps() []*ebpf.Map {
	v := reflect.ValueOf(&t.objs.leakwatchMaps).Elem()
	var out []*ebpf.Map
	for i := range v.NumField() {
		if m, ok := v.Field(i).Interface().(*ebpf.Map); ok && m != nil {
			out = append(out, m)
		}
	}
	return out
}
