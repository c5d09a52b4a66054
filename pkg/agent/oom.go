package agent

import (
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/pprof/profile"

	"github.com/leakwatch/leakwatch/pkg/cgroups"
	"github.com/leakwatch/leakwatch/pkg/containers"
	prof "github.com/leakwatch/leakwatch/pkg/profile"
	"github.com/leakwatch/leakwatch/pkg/tracer"
	"github.com/leakwatch/leakwatch/pkg/view"
)

const (
	// maxOOMKills bounds the kills kept with their profiles.
	maxOOMKills = 64
	// oomWindow is how far before a kill its retained profile looks.
	oomWindow = 5 * time.Minute
	// oomTopStacks is how many stacks an OOM record lists as text.
	oomTopStacks = 5
)

// oomRecord is a kill with its retained profiles.
type oomRecord struct {
	kill   view.OOMKill
	inuse  []byte
	faults []byte
}

// recordOOMKill builds the forensic record of one kill: who, which limit
// fired, the memory at the kill, and the profiles of the growth before it
// (built now, while the data is still here).
func (a *Agent) recordOOMKill(ev tracer.Event) {
	k := view.OOMKill{
		Time: ev.Time, ID: strconv.FormatUint(ev.Memcg, 10), PID: ev.Process.PID, Comm: ev.Comm,
		AnonRSSBytes: ev.AnonRSSBytes, FileRSSBytes: ev.FileRSSBytes,
		ShmemRSSBytes: ev.ShmemRSSBytes, TotalVMBytes: ev.TotalVMBytes,
	}
	a.mu.RLock()
	if e, ok := a.entries[ev.Memcg]; ok {
		c := e.c
		k.Cgroup, k.ContainerID, k.PodUID = c.Cgroup, c.ContainerID, c.PodUID
		k.Namespace, k.Pod, k.Container = c.Namespace, c.Pod, c.Container
	}
	a.mu.RUnlock()
	if k.Cgroup == "" {
		// A cgroup made since the last scan is not in the index yet.
		if _, ok := a.hier.Lookup(ev.Memcg); !ok {
			_, _ = a.hier.Scan()
		}
		if g, ok := a.hier.Lookup(ev.Memcg); ok {
			k.Cgroup = g.Path
			id := containers.Parse(g.Path)
			k.ContainerID, k.PodUID, k.Container = id.ContainerID, id.PodUID, id.Name
		}
	}
	if k.Cgroup != "" {
		if st, err := a.hier.ReadMemory(k.Cgroup); err == nil {
			k.Memory = memoryView(st)
		}
		trigger := k.Cgroup
		if g, ok := a.hier.Lookup(ev.TriggerMemcg); ok {
			trigger = g.Path
		}
		k.Trigger, k.TriggerCgroup = a.whichLimit(commonAncestor(k.Cgroup, trigger))
		if k.Trigger == "container" && k.TriggerCgroup != k.Cgroup {
			k.Trigger = "ancestor"
		}
	} else {
		k.Trigger = "unknown"
	}

	rec := oomRecord{}
	if a.prof != nil {
		// The store holds what the last collection saw; a fast leak can
		// fill the limit between two collections, so read the kernel's
		// maps now, before the victim's mappings are swept.
		if a.tracer != nil {
			if ts, err := a.tracer.Snapshot(); err == nil {
				a.prof.Update(time.Now(), ts, a.procInfo)
			}
		}
		meta := prof.Meta{Container: k.Container, Cgroup: k.Cgroup, Now: ev.Time, FaultSampleBytes: a.cfg.FaultSampleBytes}
		window := min(oomWindow, a.cfg.Profile.Horizon)
		var res prof.Resolver
		if a.sym != nil {
			res = a.sym
		}
		if p, err := a.prof.Build(ev.Memcg, prof.Inuse, window, res, meta); err == nil {
			k.TopStacks = topStacks(p, oomTopStacks)
			rec.inuse = encode(p)
		}
		if p, err := a.prof.Build(ev.Memcg, prof.Faults, window, res, meta); err == nil {
			rec.faults = encode(p)
		}
	}

	a.oomMu.Lock()
	a.oomSeq++
	k.Seq = a.oomSeq
	if rec.inuse != nil {
		k.ProfileURL = "/api/v1/oomkills/" + strconv.FormatUint(k.Seq, 10) + "/profile"
	}
	rec.kill = k
	a.oomKills = append(a.oomKills, rec)
	if len(a.oomKills) > maxOOMKills {
		a.oomKills = append(a.oomKills[:0], a.oomKills[len(a.oomKills)-maxOOMKills:]...)
	}
	a.oomMu.Unlock()

	a.log.Warn("OOM kill", "seq", k.Seq, "cgroup", k.Cgroup, "namespace", k.Namespace, "pod", k.Pod,
		"container", k.Container, "pid", k.PID, "comm", k.Comm, "trigger", k.Trigger,
		"trigger_cgroup", k.TriggerCgroup, "anon_rss_bytes", k.AnonRSSBytes)
}

// whichLimit finds, from cgroup up to the root, the closest cgroup whose
// usage is at its own limit: that limit fired. None at its limit means the
// node ran out. Usage is read a moment after the kill, so "at" allows 2% or
// 8 MiB of slack.
func (a *Agent) whichLimit(cgroup string) (trigger, path string) {
	for p := cgroup; ; p = filepath.Dir(p) {
		st, err := a.hier.ReadMemory(p)
		if err == nil && st.Limit > 0 {
			slack := max(st.Limit/50, 8<<20)
			if st.Usage+slack >= st.Limit {
				return "container", p
			}
		}
		if p == "/" {
			return "node", ""
		}
	}
}

// commonAncestor is the deepest cgroup path above (or equal to) both.
func commonAncestor(a, b string) string {
	as, bs := strings.Split(a, "/"), strings.Split(b, "/")
	n := 0
	for n < len(as) && n < len(bs) && as[n] == bs[n] {
		n++
	}
	if p := strings.Join(as[:n], "/"); p != "" {
		return p
	}
	return "/"
}

func memoryView(st cgroups.MemoryStats) view.Memory {
	return view.Memory{
		Usage: st.Usage, Anon: st.Anon, File: st.File, Kernel: st.Kernel, Shmem: st.Shmem,
		WorkingSet: st.WorkingSet, LeakSignal: st.LeakSignal(), Limit: st.EffectiveLimit,
		PageFaults: st.PageFaults, MajorFaults: st.MajorPageFaults,
	}
}

func encode(p *profile.Profile) []byte {
	var b strings.Builder
	if err := p.Write(&b); err != nil {
		return nil
	}
	return []byte(b.String())
}

// topStacks renders the samples with the most bytes as short text:
// the bytes, then up to four functions from the innermost out.
func topStacks(p *profile.Profile, n int) []string {
	// The bytes of the last sample type, the default as pprof has it: a
	// growth profile leads with what was released.
	vi := len(p.SampleType) - 1
	samples := append([]*profile.Sample(nil), p.Sample...)
	sort.Slice(samples, func(i, j int) bool { return samples[i].Value[vi] > samples[j].Value[vi] })
	var out []string
	for _, s := range samples {
		if len(out) == n || s.Value[vi] <= 0 {
			break
		}
		var fns []string
		for _, l := range s.Location {
			if len(fns) == 4 {
				break
			}
			name := fmt.Sprintf("0x%x", l.Address)
			if len(l.Line) > 0 {
				name = l.Line[len(l.Line)-1].Function.Name
			}
			fns = append(fns, name)
		}
		out = append(out, fmt.Sprintf("%s %s", mib(s.Value[vi]), strings.Join(fns, " < ")))
	}
	return out
}

func mib(b int64) string { return fmt.Sprintf("%.1fMiB", float64(b)/(1<<20)) }

// OOMProfile implements view.Profiles.
func (a *Agent) OOMProfile(seq uint64, kind string) ([]byte, error) {
	a.oomMu.Lock()
	defer a.oomMu.Unlock()
	for _, r := range a.oomKills {
		if r.kill.Seq != seq {
			continue
		}
		data := r.inuse
		if kind == "faults" {
			data = r.faults
		}
		if data == nil {
			return nil, fmt.Errorf("OOM kill %d has no %s profile: %w", seq, kind, view.ErrNotFound)
		}
		return data, nil
	}
	return nil, fmt.Errorf("OOM kill %d: %w (only the last %d are kept)", seq, view.ErrNotFound, maxOOMKills)
}

// oomKillsView copies the kills for a snapshot.
func (a *Agent) oomKillsView() []view.OOMKill {
	a.oomMu.Lock()
	defer a.oomMu.Unlock()
	out := make([]view.OOMKill, len(a.oomKills))
	for i, r := range a.oomKills {
		out[i] = r.kill
	}
	return out
}
