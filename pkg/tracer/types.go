package tracer

import (
	"errors"
	"time"
)

// Process identifies a process across pid reuse: its tgid and the kernel's
// start time of its leader (nanoseconds since boot, CLOCK_MONOTONIC).
type Process struct {
	PID       uint32
	StartTime uint64
}

// CgroupCounters are cumulative counters of one memory cgroup since the
// tracer started, plus the bytes its processes have mapped right now.
// Mappings sampled by size (Config.MmapSampleBytes) count in the mmap and
// munmap figures and in MappedBytes for the mappings they stand for.
type CgroupCounters struct {
	MmapCalls      uint64
	MmapBytes      uint64
	MunmapCalls    uint64
	MunmapBytes    uint64
	BrkGrowBytes   uint64
	BrkShrinkBytes uint64
	MremapCalls    uint64
	FaultSamples   uint64 // sampled page faults, anonymous and file-backed
	FaultBytes     uint64 // estimated anonymous bytes faulted in
	FileFaultBytes uint64 // estimated file-backed (page cache) bytes faulted in
	// Reserved (PROT_NONE) private anonymous memory made accessible by
	// mprotect, and tracked memory made PROT_NONE again.
	MprotectGrowBytes   uint64
	MprotectShrinkBytes uint64

	// Outstanding bytes right now, from the live mappings.
	MappedBytes uint64 // private anonymous mmap, and reservations committed by mprotect
	BrkBytes    uint64 // heap grown by brk and not given back
}

// Kind says what a tracked range of memory came from.
type Kind uint8

const (
	KindMmap Kind = 1
	KindBrk  Kind = 2
	// KindMprotect is a reservation (PROT_NONE) made accessible: glibc's
	// thread arenas, VM heaps that reserve and then commit.
	KindMprotect Kind = 3
)

func (k Kind) String() string {
	switch k {
	case KindMmap:
		return "mmap"
	case KindBrk:
		return "brk"
	case KindMprotect:
		return "mprotect"
	}
	return "unknown"
}

// Allocation is what one process holds right now from one allocating stack.
type Allocation struct {
	Memcg   uint64
	PID     uint32
	StackID uint64 // 0: stack unknown (see DropStacksFull, DropStackError)
	Kind    Kind
	// Bytes and Count are estimates where mappings were sampled by size
	// (Config.MmapSampleBytes): a sampled mapping counts for the mappings
	// it stands for. Mappings at least that long are counted exactly.
	Bytes  uint64
	Count  uint64 // ranges, sampled ones weighed
	Oldest time.Duration
}

// FaultSample is the cumulative sampled page-fault weight of one stack of one
// process, since that process was first sampled. The split between
// anonymous and file-backed bytes comes from a subsample of the samples, so
// Bytes can move down slightly between snapshots as the split is refined.
type FaultSample struct {
	Memcg uint64
	PID   uint32
	// ExecID tells the images a process ran apart (the low bits of the
	// kernel's self_exec_id, which each exec increments): what it faulted
	// before an exec went with the old image's memory.
	ExecID    uint32
	StackID   uint64
	Bytes     uint64 // estimated anonymous bytes: samples x period x page size x anonymous share
	FileBytes uint64 // estimated file-backed bytes (page cache)
	Samples   uint64
}

// Stack is a user stack as the kernel walked it.
type Stack struct {
	// Frames are instruction pointers from the frame-pointer walk or the
	// unwinding of a stack copy, innermost first; after the first, each is
	// a return address.
	Frames []uint64
	// LeafReturn is the word at the user stack pointer when the stack was
	// taken, or 0. When the innermost function is frameless (a libc syscall
	// wrapper, memset), it is the return address into the caller, which the
	// frame-pointer walk skips; otherwise it is data. Only a symbolizer that
	// knows the process's executable mappings can tell, so it is a hint.
	LeafReturn uint64
	// Truncated says the stack was unwound from a copied window that ended
	// before its outermost frame: a true prefix, callers missing.
	Truncated bool
}

// MapUsage is how full one kernel map is.
type MapUsage struct {
	Name     string
	Entries  int
	Capacity int
}

// Snapshot is one consistent-enough read of every kernel map. Counters are
// cumulative; Allocations and Faults are complete lists.
type Snapshot struct {
	Taken       time.Time
	Cgroups     map[uint64]CgroupCounters
	Allocations []Allocation
	Faults      []FaultSample
	// Stacks holds every stack referenced above that an earlier snapshot did
	// not hand out, so a consumer caches each once.
	Stacks map[uint64]Stack
	Drops  map[DropReason]uint64
	Maps   []MapUsage
	// Exited lists the processes whose mappings this snapshot leaves out
	// because they exited (not exec'd): their memory went with them, it
	// was not released, whether or not their exit event was consumed.
	Exited []uint32
	// StackCopies counts stack copies by what became of them, cumulative.
	StackCopies map[CopyResult]uint64
	// UnwindTables is the unwinder's table cache, when it reports one.
	UnwindTables UnwindTables
}

// UnwindTables is what a StackUnwinder's tables hold and refused.
type UnwindTables struct {
	Bytes   uint64 // held now
	Refused uint64 // binaries whose table was too large, cumulative
}

// TableReporter is a StackUnwinder that reports its tables; the tracer puts
// the report in each snapshot.
type TableReporter interface {
	Tables() UnwindTables
}

// DropReason names what the kernel side had to drop, one counter each.
type DropReason string

// Drop reasons, in the order of the kernel's enum drop_reason.
const (
	DropPendingFull      DropReason = "pending_full"
	DropMappingsFull     DropReason = "mappings_full"
	DropEndsFull         DropReason = "mapping_ends_full"
	DropStacksFull       DropReason = "stacks_full"
	DropStackError       DropReason = "stack_error"
	DropFaultsFull       DropReason = "faults_full"
	DropCgroupsFull      DropReason = "cgroups_full"
	DropEventsFull       DropReason = "events_full"
	DropProcsFull        DropReason = "procs_full"
	DropUnmapUnresolved  DropReason = "unmap_unresolved"
	DropVMABusy          DropReason = "vma_busy"          // mprotect: VMA not found, neither locked nor locklessly
	DropEventsUnconsumed DropReason = "events_unconsumed" // user space: Events() reader too slow
)

var kernelDropReasons = [...]DropReason{
	DropPendingFull, DropMappingsFull, DropEndsFull, DropStacksFull, DropStackError,
	DropFaultsFull, DropCgroupsFull, DropEventsFull, DropProcsFull, DropUnmapUnresolved,
	DropVMABusy,
}

// EventType says what an Event reports.
type EventType uint8

const (
	EventOOMKill EventType = 1
	EventExit    EventType = 2
	EventExec    EventType = 3
	// EventTracked: a process got tracked state for the first time; read
	// what is needed of it (its memory map) now, while it runs.
	EventTracked EventType = 4
)

// OOMKind tells a memory cgroup's OOM from the node's; the kernel side reads
// it from the allocating task's kernel stack.
type OOMKind uint8

const (
	// OOMUnknown: the kernel's text addresses were hidden (kallsyms).
	OOMUnknown OOMKind = 0
	// OOMMemcg: a memory cgroup's limit fired.
	OOMMemcg OOMKind = 1
	// OOMGlobal: the node ran out of memory.
	OOMGlobal OOMKind = 2
)

func (k OOMKind) String() string {
	switch k {
	case OOMMemcg:
		return "memcg"
	case OOMGlobal:
		return "global"
	}
	return "unknown"
}

// TriggerFoundBy says how the kernel side found an OOM's memory cgroup.
type TriggerFoundBy uint8

const (
	FoundNone TriggerFoundBy = 0
	// FoundOOMLock: cgroup v1, the highest ancestor holding oom_lock.
	FoundOOMLock TriggerFoundBy = 1
	// FoundLimit: the lowest ancestor whose usage was at its max.
	FoundLimit TriggerFoundBy = 2
)

func (f TriggerFoundBy) String() string {
	switch f {
	case FoundOOMLock:
		return "oom_lock"
	case FoundLimit:
		return "limit"
	}
	return "none"
}

func (t EventType) String() string {
	switch t {
	case EventOOMKill:
		return "oom_kill"
	case EventExit:
		return "exit"
	case EventExec:
		return "exec"
	case EventTracked:
		return "tracked"
	}
	return "unknown"
}

// Event is an OOM kill, the exit or exec of a process that had tracked
// state, or the first tracked state of a process. For an OOM kill, PID is the victim thread and Process its process.
type Event struct {
	Type    EventType
	Time    time.Time // wall clock, converted from the kernel's monotonic stamp
	PID     uint32
	Process Process
	Memcg   uint64
	Comm    string
	// ExecID is the process's image, as FaultSample.ExecID.
	ExecID uint32

	// OOM kills only: the memory cgroup whose limit fired, read in the
	// kernel at the kill (0 when the node ran out or it was not found),
	// how it was found, which OOM it was, and the victim's memory from its
	// mm at the kill.
	TriggerMemcg   uint64
	TriggerFoundBy TriggerFoundBy
	OOMKind        OOMKind
	TotalVMBytes   uint64
	AnonRSSBytes   uint64
	FileRSSBytes   uint64
	ShmemRSSBytes  uint64
}

// Features says which parts of the tracer run on this host.
type Features struct {
	FaultSampling bool   // page-fault sampling through the perf software event
	FaultNote     string // why not, when FaultSampling is false
	// Mappings says the mapping system calls are traced (the inuse view);
	// MappingsNote says why not.
	Mappings     bool
	MappingsNote string
	Kernel       string
}

// StackCopy is a sampled event's user registers and a window of its user
// stack, for unwinding in user space. Window holds secrets (whatever the
// program had on its stack): it lives only until the unwinder returns and
// is reused for the next record, so it must not be kept, logged or copied.
type StackCopy struct {
	Process
	Memcg  uint64
	ExecID uint32
	// Fault says the copy is a fault sample's, Weight its bytes; else it is
	// a tracked mapping's.
	Fault  bool
	Weight uint64
	// IP, SP and BP are the user registers at the event; Window is the
	// stack's bytes from SP.
	IP, SP, BP uint64
	Window     []byte
	// FPStackID is the frame-pointer stack of the same event.
	FPStackID uint64
}

// StackUnwinder unwinds stack copies into a Stack (Frames and Truncated;
// no LeafReturn). An error keeps the event's frame-pointer stack;
// ErrGoStack says that is by design.
type StackUnwinder interface {
	Unwind(c *StackCopy) (Stack, error)
}

// ErrGoStack is a StackUnwinder's answer for a stack that starts in Go
// code: the frame-pointer walk, which follows Go's stack switches, is
// the one to keep.
var ErrGoStack = errors.New("a Go stack: frame pointers")

// CopyResult says what became of a stack copy the tracer wanted.
type CopyResult string

const (
	CopyMade       CopyResult = "copied"      // sent to user space
	CopyOverBudget CopyResult = "over_budget" // the copies-per-second budget was spent
	CopyRingFull   CopyResult = "ring_full"   // the stack copy ring buffer was full
	CopyUnreadable CopyResult = "unreadable"  // the stack could not be read at all
	// In user space, of the copies made:
	CopyQueueFull  CopyResult = "queue_full"  // read off the ring while the unwinder was behind: frame pointers
	CopyUnwound    CopyResult = "unwound"     // unwound: the event carries that stack
	CopyFellBack   CopyResult = "fell_back"   // not unwound: the frame-pointer stack stays
	CopyGo         CopyResult = "go"          // Go code: its frame-pointer stack stays, by design
	CopyOverLimits CopyResult = "over_limits" // the unwound-stack tables were full: frame pointers
	CopyTruncated  CopyResult = "truncated"   // of the unwound, those deeper than the window: callers missing
)

var kernelCopyResults = [...]CopyResult{CopyMade, CopyOverBudget, CopyRingFull, CopyUnreadable}
