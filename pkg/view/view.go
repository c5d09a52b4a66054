// Package view is the node's current picture as the exporters see it: every
// tracked container with its memory, verdict and identity, and the agent's own
// health. The agent loop is its only writer; metrics, the HTTP API and events
// read immutable snapshots through Source and never import the agent, so no
// cycle of imports can form. It holds plain data and no logic.
package view

import (
	"context"
	"errors"
	"time"

	"github.com/leakwatch/leakwatch/pkg/detect"
	"github.com/leakwatch/leakwatch/pkg/tiering"
)

// Source gives read access to the current view. Implementations must be safe
// for concurrent use; a Snapshot is never modified after it is returned.
type Source interface {
	// Snapshot is the view as of the last completed collection, or nil
	// before the first one.
	Snapshot() *Snapshot
	// Series returns the recent memory history of one container, oldest
	// first, and false when the id is unknown.
	Series(id string) ([]Point, bool)
}

// Snapshot is one complete, consistent view of the node.
type Snapshot struct {
	Taken      time.Time
	Containers []Container // sorted by ID
	// OOMKills are the most recent OOM kills on the node, oldest first,
	// each once (by Seq), whether or not its container is still tracked.
	OOMKills []OOMKill
	Agent    Agent
}

// What an OOM record's top stacks weigh (OOMKill.TopStacksOf): the sample
// types of the profiles.
const (
	StacksFaulted = "faulted_space"
	StacksInuse   = "inuse_space"
)

// OOMKill is the forensic record of one OOM kill.
type OOMKill struct {
	// Seq numbers kills from 1 in the order the agent saw them; the
	// retained profiles are served under it.
	Seq  uint64    `json:"seq"`
	Time time.Time `json:"time"`

	// ID, Cgroup and the names are the victim's container, as in Container.
	ID          string `json:"id"`
	Cgroup      string `json:"cgroup"`
	ContainerID string `json:"container_id"`
	PodUID      string `json:"pod_uid"`
	Namespace   string `json:"namespace"`
	Pod         string `json:"pod"`
	Container   string `json:"container"`

	PID  uint32 `json:"pid"`
	Comm string `json:"comm"`

	// Trigger says whose limit fired: "container" (the victim's own memory
	// cgroup), "ancestor" (a parent's, TriggerCgroup names it), "node" (the
	// whole machine ran out) or "unknown". The kernel side reads it at the
	// kill: the memory cgroup the OOM was invoked for.
	Trigger       string `json:"trigger"`
	TriggerCgroup string `json:"trigger_cgroup,omitempty"`

	// Memory is the victim cgroup's statistics read right after the kill.
	Memory Memory `json:"memory"`
	// The victim process's memory when it was chosen, from the kernel.
	AnonRSSBytes  uint64 `json:"anon_rss_bytes"`
	FileRSSBytes  uint64 `json:"file_rss_bytes"`
	ShmemRSSBytes uint64 `json:"shmem_rss_bytes"`
	TotalVMBytes  uint64 `json:"total_vm_bytes"`

	// TopStacks are the victim's stacks that grew most in the minutes
	// before the kill, as short text ("12.0MiB main.leak < main.loop <
	// main.main"); TopStacksOf says in what: StacksFaulted (memory touched,
	// what the cgroup was charged for) or StacksInuse (mapped, when faults
	// were not sampled).
	TopStacks   []string `json:"top_stacks"`
	TopStacksOf string   `json:"top_stacks_of,omitempty"`
	// ProfileURL is the path of the profile retained for this kill on
	// this agent (growth before the kill), when one could be built.
	ProfileURL string `json:"profile_url,omitempty"`
}

// Container is one tracked memory cgroup: a container, a pod-less service or
// any other cgroup with processes.
type Container struct {
	// ID identifies the container in the API ({id} in URLs): the memory
	// cgroup id in decimal, unique for the life of the host.
	ID      string `json:"id"`
	MemcgID uint64 `json:"memcg_id"`
	Cgroup  string `json:"cgroup"` // path in the memory hierarchy

	Kind        string `json:"kind"`    // container, service, cgroup, ...
	Runtime     string `json:"runtime"` // containerd, cri-o, docker, podman, systemd or ""
	ContainerID string `json:"container_id"`
	PodUID      string `json:"pod_uid"`
	Namespace   string `json:"namespace"`
	Pod         string `json:"pod"`
	// Container is the container's name (Kubernetes), or a short name for
	// other cgroups: the systemd unit or the last path element.
	Container string `json:"container"`
	Image     string `json:"image,omitempty"`
	// Policy is what the pod's or the container's leakwatch.io/*
	// annotations ask for (from CRI); nil without any.
	Policy *Policy `json:"policy,omitempty"`

	Memory Memory `json:"memory"`
	// MappedBytes is what the tracer sees outstanding: private anonymous
	// memory committed by the cgroup's processes (mappings, heap grown by
	// brk, reservations made accessible by mprotect), touched or not.
	MappedBytes uint64 `json:"mapped_bytes"`
	// FaultedBytes is the tracer's estimate of anonymous memory faulted in
	// since it started (cumulative).
	FaultedBytes uint64 `json:"faulted_bytes"`
	OOMKills     uint64 `json:"oom_kills"`

	Verdict Verdict `json:"verdict"`

	FirstSeen time.Time `json:"first_seen"`
	// LastSeen is the last collection that found the cgroup.
	LastSeen time.Time `json:"last_seen"`
	// Gone is set once the cgroup no longer exists (or, for a cgroup that is
	// tracked only for its processes, has none left). A gone container is
	// judged no more: its Verdict is zero, and exporters show nothing of it
	// as current. Its record, series and OOM kills are kept for the
	// retention, which runs from GoneAt.
	Gone bool `json:"gone"`
	// GoneAt is the collection that found it gone; for one that went while
	// the agent was down, LastSeen (the agent cannot know better).
	GoneAt time.Time `json:"gone_at,omitzero"`
	// WasLeaking is the verdict at the last collection that found the
	// cgroup, kept once it is gone.
	WasLeaking bool `json:"was_leaking,omitempty"`
}

// Memory is the cgroup's memory statistics at the last collection, in bytes.
type Memory struct {
	Usage      uint64 `json:"usage_bytes"`
	Anon       uint64 `json:"anon_bytes"`
	File       uint64 `json:"file_bytes"`
	Kernel     uint64 `json:"kernel_bytes"`
	Shmem      uint64 `json:"shmem_bytes"`
	WorkingSet uint64 `json:"working_set_bytes"`
	// LeakSignal is what a leak can hold: anonymous and shared memory plus
	// unreclaimable kernel memory, not page cache. The detector watches it.
	LeakSignal uint64 `json:"leak_signal_bytes"`
	// Limit is the effective limit (the lowest of the cgroup's and its
	// ancestors'); 0 when there is none.
	Limit       uint64 `json:"limit_bytes"`
	PageFaults  uint64 `json:"page_faults"`
	MajorFaults uint64 `json:"major_page_faults"`
}

// Verdict is the detector's conclusion at the last collection.
type Verdict struct {
	Leaking              bool    `json:"leaking"`
	GrowthBytesPerSecond float64 `json:"growth_bytes_per_second"`
	Confidence           float64 `json:"confidence"`
	// TimeToLimit is the projected time until Limit at the current growth;
	// negative when unknown (no limit, not leaking).
	TimeToLimit  time.Duration `json:"-"`
	LeakingSince time.Time     `json:"leaking_since,omitzero"`
	WarmingUp    bool          `json:"warming_up"`
	// Why is the detector's explanation while a tier finds growth or the
	// verdict is leaking (nil otherwise). It is the current collection's
	// only: never saved with the state.
	Why *detect.ExplanationJSON `json:"-"`
}

// Point is one sample of a container's memory history.
type Point struct {
	T          time.Time `json:"t"`
	LeakSignal uint64    `json:"leak_signal_bytes"`
	Usage      uint64    `json:"usage_bytes"`
	// Min and Max are the extremes of LeakSignal over the period the point
	// stands for (equal to it for raw points; wider for downsampled ones).
	Min uint64 `json:"min_bytes"`
	Max uint64 `json:"max_bytes"`
}

// PartMappings is the Agent.Degraded key set when the tracer does not trace
// mappings (its faults tier): there is no inuse view.
const PartMappings = "mappings"

// Agent is the agent's own health.
type Agent struct {
	Ready bool `json:"ready"`
	// NotReady says why, when Ready is false.
	NotReady string `json:"not_ready,omitempty"`
	// Degraded lists parts that do not run on this host (e.g. page-fault
	// sampling), with the reason.
	Degraded map[string]string `json:"degraded,omitempty"`
	// Tracing is the tier policy's state: mode, tier, since when, why, until
	// when, and since when the inuse view covers mappings; nil without a
	// tracer.
	Tracing *tiering.State `json:"tracing,omitempty"`

	CollectDuration time.Duration `json:"-"`
	Collections     uint64        `json:"collections"`
	// Errors counts failures by part and kind ("cgroup_gone",
	// "memory_read", "tracer_snapshot", ...), cumulative.
	Errors map[string]uint64 `json:"errors"`
	// Drops counts what the kernel side had to drop, by reason, cumulative.
	Drops map[string]uint64 `json:"drops"`
	// StackCopies counts the user stacks copied for unwinding, and the
	// copies not made, by what became of them, cumulative (see
	// tracer.CopyResult).
	StackCopies map[string]uint64 `json:"stack_copies,omitempty"`
	// UnwindTableBytes is the size of the unwinding tables held, and
	// UnwindTablesRefused counts binaries whose table was too large
	// (--unwind-table-bytes), cumulative; their frames are walked by
	// frame pointer.
	UnwindTableBytes    uint64     `json:"unwind_table_bytes"`
	UnwindTablesRefused uint64     `json:"unwind_tables_refused"`
	Maps                []MapUsage `json:"maps"`
	// MapMemoryBytes is the kernel memory of the BPF maps.
	MapMemoryBytes uint64 `json:"map_memory_bytes"`
	// Containers tracked, and how many were dropped because of the limit.
	Tracked       int    `json:"tracked"`
	OverLimit     uint64 `json:"over_limit"`
	CgroupLayout  string `json:"cgroup_layout"`
	FaultSampling bool   `json:"fault_sampling"`
	CRIAvailable  bool   `json:"cri_available"`
	// State is how the saves of the state store went; nil without one.
	State *StateSaves `json:"state,omitempty"`
}

// StateSaves is how the agent's saves of its state store went, as of the
// last collection.
type StateSaves struct {
	Path string `json:"path"`
	// LastSuccess is when the last save that reached the disk began; nil
	// before the first.
	LastSuccess *time.Time `json:"last_success,omitempty"`
	// Failures counts failed saves since the agent started.
	Failures    uint64     `json:"failures"`
	LastFailure *time.Time `json:"last_failure,omitempty"`
	LastError   string     `json:"last_error,omitempty"`
}

// MapUsage is how full one kernel map is.
type MapUsage struct {
	Name     string `json:"name"`
	Entries  int    `json:"entries"`
	Capacity int    `json:"capacity"`
}

// Tracing gives the tracing tier policy's state as of now (not of the last
// collection: a profile request can escalate); the agent implements it when
// the tracer runs.
type Tracing interface {
	Tracing() tiering.State
}

// CurrentTracing is snap's tracing state, or src's as of now when src
// implements Tracing (a profile request may have escalated since the
// collection); nil without a tracer.
func CurrentTracing(src Source, snap *Snapshot) *tiering.State {
	t, ok := src.(Tracing)
	if !ok || snap.Agent.Tracing == nil {
		return snap.Agent.Tracing
	}
	st := t.Tracing()
	return &st
}

// Profiles builds pprof profiles of containers; the agent implements it when
// the tracer runs. Exporters check for it on their Source.
type Profiles interface {
	// Profile returns a gzip-compressed pprof profile of one container:
	// kind "inuse" or "faults"; window 0 for the current state, else the
	// growth over the last window. Errors match ErrNotFound (unknown id)
	// or ErrBadRequest (kind, window), or ErrNoInuseView.
	Profile(ctx context.Context, id, kind string, window time.Duration) ([]byte, error)
	// MaxProfileWindow is the longest window Profile serves.
	MaxProfileWindow() time.Duration
	// OOMProfile returns the profile retained for one OOM kill, by Seq:
	// kind "inuse" (growth before the kill) or "faults".
	OOMProfile(seq uint64, kind string) ([]byte, error)
}

// Errors of Profiles.
var (
	ErrNotFound   = errors.New("not found")
	ErrBadRequest = errors.New("bad request")
	// ErrNoInuseView: the tracer does not trace mappings (faults tier).
	ErrNoInuseView = errors.New("no inuse view on this agent")
)

// Policy is a container's leakwatch.io/* annotations as applied: Ignore
// keeps it out of verdicts (figures and profiles stay), WarmUp lengthens
// the detector's warm-up, Sensitivity (low, normal, high) scales the
// evidence it needs. Invalid names annotations whose values were not used.
type Policy struct {
	Ignore        bool    `json:"ignore"`
	WarmUpSeconds float64 `json:"warmup_seconds"` // 0: the agent's
	Sensitivity   string  `json:"sensitivity"`
	Invalid       string  `json:"invalid,omitempty"`
}
