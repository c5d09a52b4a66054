package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/leakwatch/leakwatch/pkg/procstat"
	"github.com/leakwatch/leakwatch/pkg/profile"
	"github.com/leakwatch/leakwatch/pkg/tiering"
	"github.com/leakwatch/leakwatch/pkg/view"
)

// Profile implements view.Profiles.
func (a *Agent) Profile(ctx context.Context, id, kind string, window time.Duration) ([]byte, error) {
	if a.prof == nil {
		return nil, fmt.Errorf("%w: profiles need the tracer", view.ErrNotFound)
	}
	memcg, err := strconv.ParseUint(id, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("container %q: %w", id, view.ErrNotFound)
	}
	a.mu.RLock()
	e, ok := a.entries[memcg]
	var meta profile.Meta
	if ok {
		meta = profile.Meta{Container: e.c.Container, Cgroup: e.c.Cgroup, Now: time.Now(), FaultSampleBytes: a.cfg.FaultSampleBytes}
		if e.c.Pod != "" {
			meta.Container = e.c.Namespace + "/" + e.c.Pod + "/" + e.c.Container
		}
	}
	a.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("container %q: %w", id, view.ErrNotFound)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var res profile.Resolver
	if a.sym != nil {
		res = a.sym
	}
	if profile.Type(kind) == profile.Inuse {
		if a.tiers != nil {
			// The inuse view needs the full tier: asking for it escalates
			// (or extends the hold) in auto mode.
			st := a.tiers.Request(meta.Now, meta.Container)
			since, on := coverage(st)
			if !on {
				why := "the tracer runs in the faults tier (--tracing=faults)"
				if st.LastError != "" {
					why = "escalating to the full tier failed: " + st.LastError
				}
				return nil, fmt.Errorf("%w: %s; type=faults works", view.ErrNoInuseView, why)
			}
			meta.InuseSince = since
			// A window reaching back before the coverage began would
			// count as released what the tracer forgot at the change.
			if window > 0 && !meta.InuseSince.IsZero() && meta.Now.Add(-window).Before(meta.InuseSince) {
				window = max(meta.Now.Sub(meta.InuseSince).Truncate(time.Second), time.Second)
			}
		}
		if window == 0 && a.tracer != nil {
			meta.Resident = a.residentBytes(ctx, memcg)
		}
	}
	p, err := a.prof.Build(memcg, profile.Type(kind), window, res, meta)
	if errors.Is(err, profile.ErrWindow) {
		return nil, fmt.Errorf("%w: %w", view.ErrBadRequest, err)
	}
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := p.Write(&buf); err != nil { // gzip-compressed, as pprof reads it
		return nil, fmt.Errorf("encoding profile: %w", err)
	}
	return buf.Bytes(), nil
}

// inuseCoverage says whether the tracer traces mappings now and, in the
// auto mode, since when (zero: since the tracer started).
func (a *Agent) inuseCoverage() (time.Time, bool) {
	if a.tiers == nil {
		return time.Time{}, true
	}
	return coverage(a.tiers.State())
}

func coverage(st tiering.State) (time.Time, bool) {
	if st.Tier != tiering.TierFull {
		return time.Time{}, false
	}
	if st.Mode != tiering.ModeAuto {
		return time.Time{}, true
	}
	return st.InuseSince, true
}

// Tracing implements view.Tracing.
func (a *Agent) Tracing() tiering.State {
	if a.tiers == nil {
		return tiering.State{}
	}
	return a.tiers.State()
}

// MaxProfileWindow implements view.Profiles.
func (a *Agent) MaxProfileWindow() time.Duration { return a.cfg.Profile.Horizon }

// procInfo names a process when the profile store first sees it, and has
// the symbolizer record its memory map while it is alive. A process that
// exited since the tracer announced it is named from the announcement, so
// that its captured map is found again.
func (a *Agent) procInfo(pid uint32) (string, uint64, bool) {
	root := a.procRoot()
	start, ok := ProcStartTime(root, pid)
	if !ok {
		if m, ok := a.recent.get(pid); ok {
			return m.comm, m.start, true
		}
		return "", 0, false
	}
	comm, _ := os.ReadFile(filepath.Join(root, strconv.FormatUint(uint64(pid), 10), "comm"))
	if a.sym != nil {
		_ = a.sym.Capture(pid, start)
	}
	return strings.TrimSpace(string(comm)), start, true
}

// procMeta is what the agent learned of a process when it was announced.
type procMeta struct {
	start uint64
	comm  string
}

// recentProcs remembers the last maxRecent announced processes; a pid
// announced again replaces its entry.
type recentProcs struct {
	mu    sync.Mutex
	m     map[uint32]procMeta
	order []uint32
}

const maxRecent = 8192

func (r *recentProcs) add(pid uint32, m procMeta) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = make(map[uint32]procMeta)
	}
	if _, ok := r.m[pid]; !ok {
		r.order = append(r.order, pid)
	}
	r.m[pid] = m
	for len(r.order) > maxRecent {
		delete(r.m, r.order[0])
		r.order = r.order[1:]
	}
}

func (r *recentProcs) get(pid uint32) (procMeta, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m, ok := r.m[pid]
	return m, ok
}

func (a *Agent) procRoot() string {
	if a.tracer != nil {
		return a.tracer.ProcRoot()
	}
	return "/proc"
}

// ProcStartTime reads a process's start time, which with the pid
// identifies the process, in nanoseconds since boot: field 22 of
// /proc/PID/stat counts clock ticks (USER_HZ, 100 on Linux), converted so
// that it compares with the kernel's nanosecond task start times.
func ProcStartTime(root string, pid uint32) (uint64, bool) {
	b, err := os.ReadFile(filepath.Join(root, strconv.FormatUint(uint64(pid), 10), "stat"))
	if err != nil {
		return 0, false
	}
	return parseStatStartTime(b)
}

// parseStatStartTime reads field 22 of a /proc/PID/stat line, in ns.
func parseStatStartTime(b []byte) (uint64, bool) {
	v, err := procstat.StartTimeNs(b)
	return v, err == nil
}
