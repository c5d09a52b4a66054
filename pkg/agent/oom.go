package agent

import (
	"time"

	"github.com/leakwatch/leakwatch/pkg/cgroups"
	"github.com/leakwatch/leakwatch/pkg/view"
)

// The agent's side of OOM records (pkg/oomrecord): what it knows of a
// container, and the tracer's maps folded in at a kill.

// oomNames fills in a tracked container's path and names.
func (a *Agent) oomNames(memcg uint64, k *view.OOMKill) bool {
	a.mu.RLock()
	defer a.mu.RUnlock()
	e, ok := a.entries[memcg]
	if !ok || e.c.Cgroup == "" {
		return false
	}
	c := e.c
	k.Cgroup, k.ContainerID, k.PodUID = c.Cgroup, c.ContainerID, c.PodUID
	k.Namespace, k.Pod, k.Container = c.Namespace, c.Pod, c.Container
	return true
}

func (a *Agent) readMemory(cgroup string) (view.Memory, error) {
	st, err := a.hier.ReadMemory(cgroup)
	if err != nil {
		return view.Memory{}, err
	}
	return memoryView(st), nil
}

// refreshProfiles reads the tracer's maps now and folds them into the
// profile store, in turn with the collection.
func (a *Agent) refreshProfiles() {
	if a.tracer == nil || a.prof == nil {
		return
	}
	a.foldMu.Lock()
	defer a.foldMu.Unlock()
	if ts, err := a.tracer.Snapshot(); err == nil {
		a.prof.Update(time.Now(), ts, a.procInfo)
	}
}

// OOMProfile implements view.Profiles.
func (a *Agent) OOMProfile(seq uint64, kind string) ([]byte, error) {
	return a.oom.Profile(seq, kind)
}

func memoryView(st cgroups.MemoryStats) view.Memory {
	return view.Memory{
		Usage: st.Usage, Anon: st.Anon, File: st.File, Kernel: st.Kernel, Shmem: st.Shmem,
		WorkingSet: st.WorkingSet, LeakSignal: st.LeakSignal(), Limit: st.EffectiveLimit,
		PageFaults: st.PageFaults, MajorFaults: st.MajorPageFaults,
	}
}
