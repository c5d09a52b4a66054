// SPDX-License-Identifier: (MIT OR GPL-2.0)
/*
 * leakwatch's kernel side: where each memory cgroup's memory comes from.
 *
 * Hooks
 *   syscalls:sys_{enter,exit}_{mmap,munmap,mremap,brk}: private anonymous
 *     mappings and heap growth, remembered by (tgid, start) with their length,
 *     memory cgroup and allocating user stack until unmapped, moved or the
 *     process exits or execs (user space sweeps those on the events below).
 *     Mappings shorter than mmap_sample_bytes are sampled by size at entry,
 *     so a loop of small mappings mostly runs two short programs.
 *   syscalls:sys_{enter,exit}_mprotect: reserved (PROT_NONE) private
 *     anonymous memory made accessible is tracked like an mmap from the
 *     stack that committed it; tracked memory made PROT_NONE is untracked.
 *   perf software event page-faults (a perf_event program, sampled every
 *     fault_sample_period faults per CPU by the kernel's perf counter, so an
 *     unsampled fault runs no BPF at all): user stack and byte weight of
 *     faults on anonymous memory.
 *   tp_btf/mark_victim: OOM kills, sent at once through the ring buffer,
 *     with the memory cgroup whose limit fired, read at the kill.
 *   sched:sched_process_exit / sched_process_exec: processes whose tracked
 *     state must go; only those that have some are reported.
 *
 * Maps and what each drops when full (every drop is counted in drops[]):
 *   live_mappings / mapping_ends: new mappings are not tracked.
 *   stack_traces: bytes are kept under stack 0 (unknown).
 *   fault_samples, cgroup_counters: the sample / counter update is lost.
 *   events: the event is lost; user space's periodic sweep still cleans up.
 *   stack_mappings (LRU): evicts the thread least recently copied, which is
 *     looked up again at its next copy.
 *
 * Every key holding a process is the tgid plus, where needed, a timestamp, so
 * that user space can tell a reused pid from the process that had it.
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "leakwatch.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

/* Set by the loader before load. */
volatile const __u64 page_size = 4096;
/* Private anonymous mappings shorter than this are tracked with probability
 * len / mmap_sample_bytes (see struct mapping's sampled_len); 0 tracks every
 * one. At most 1 GiB, so a sampled length fits 32 bits. */
volatile const __u64 mmap_sample_bytes = 0;
/* Exit and exec events wake the reader only once this much is queued; the
 * reader also drains the ring buffer on a timer. OOM kills and new tracked
 * processes wake it at once (forced: the kernel's adaptive wake-up would not
 * fire while lazy events before them are unread). */
volatile const __u64 ringbuf_wakeup_bytes = 0;

/* Stack copies (see struct stack_copy_header): bytes of user stack copied
 * per sampled event (0: none, frame pointers only), and a per-CPU budget: at
 * most one copy per copy_interval_ns on average, with bursts of up to
 * copy_burst_ns worth. stack_wakeup_bytes is the queued size that wakes the
 * reader (it also drains on a timer). */
volatile const __u64 stack_copy_bytes = 0;
volatile const __u64 copy_interval_ns = 0;
volatile const __u64 copy_burst_ns = 0;
volatile const __u64 stack_wakeup_bytes = 0;

/* Text ranges [start, end) of kernel functions that run only when a memory
 * cgroup's limit fires (mem_cgroup_out_of_memory, try_charge_memcg), set by
 * the loader from /proc/kallsyms; all zero when kallsyms hides addresses.
 * An OOM kill whose allocating task has one of them on its kernel stack is a
 * memory cgroup's, else the node's. */
volatile const __u64 memcg_oom_text[4] = {};

/* Set once tracked_procs overflowed: a process may then hold mappings without
 * an entry there, so munmap can no longer skip processes without one. */
volatile __u32 procs_overflowed = 0;

#define MAP_SHARED	 0x01
#define MAP_PRIVATE	 0x02
#define MAP_TYPE	 0x0f
#define MAP_FIXED	 0x10
#define MAP_ANONYMOUS	 0x20
#define PROT_NONE	 0x0
#define PROT_READ	 0x1
#define PROT_WRITE	 0x2
#define VM_READ		 0x1
#define VM_WRITE	 0x2
#define VM_EXEC		 0x4
#define VM_SHARED	 0x8
#define MREMAP_DONTUNMAP 4
#define MAX_ERRNO	 4095
#define EBUSY		 16

/* The first FAULT_CHECK_FIRST samples of a fault key and one in
 * FAULT_CHECK_EVERY after them have their VMA looked up to tell anonymous
 * memory from page cache: bpf_find_vma costs about 20 us per call in this
 * program (measured: 0.90 us per sample without lookups, 2.18 us with one in
 * 16). A stack faults on one kind of memory nearly always, so a few early
 * checks settle it. FAULT_CHECK_EVERY must be a power of two. */
#define FAULT_CHECK_FIRST 4
#define FAULT_CHECK_EVERY 64

/* How many tracked ranges one unmap may touch. An unmap spanning more is
 * counted as DROP_UNMAP_UNRESOLVED and left to the exit sweep. */
#define MAX_UNMAP_STEPS 16

/* Arguments stashed at syscall entry for the exit handler. */
struct pending {
	__u64 args[4];
	__u64 vma_start;   /* start of the VMA holding args[0] at entry, or 0 */
	__u32 sampled_len; /* mmap: see struct mapping */
	__u32 untracked;   /* mmap: sampled out; only what MAP_FIXED replaces counts */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64); /* pid_tgid */
	__type(value, struct pending);
} pending_calls SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct mapping_key);
	__type(value, struct mapping);
} live_mappings SEC(".maps");

/* (tgid, end) -> start, so that an unmap of a mapping's tail finds it. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct mapping_key);
	__type(value, __u64);
} mapping_ends SEC(".maps");

/* Stacks by a 64-bit hash of their frames. Unlike a STACK_TRACE map, an entry
 * is never replaced by another stack: user space deletes the ones no longer
 * referenced (see pkg/tracer's stack GC). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct stack_trace);
} stack_traces SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct stack_trace);
} stack_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct fault_key);
	__type(value, struct fault_value);
} fault_samples SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 8192);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64); /* memory cgroup id */
	__type(value, struct counters);
} cgroup_counters SEC(".maps");

/* memory cgroup id -> its path, for the cgroups made while the tracer runs:
 * one made and removed between two scans (a pod killed at start-up) is
 * named still. The least recently made go first. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, struct cgroup_path);
} cgroup_paths SEC(".maps");

/* tgid -> first time it got tracked state, so exit/exec report only those. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 32768);
	__type(key, __u32);
	__type(value, __u64);
} tracked_procs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DROP_REASON_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} drops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

/* Stack copies for user space to unwind; losses counted in copy_counts. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 * 1024 * 1024);
} stack_copies SEC(".maps");

/* The record being built: its header, then the window. The window has a
 * page of slack so that a chunk's bounds are provable to the verifier. */
struct stack_copy_scratch {
	struct stack_copy_header h;
	__u8 window[STACK_COPY_MAX + 4096];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct stack_copy_scratch);
} copy_scratch SEC(".maps");

/* Per CPU: when the next copy is due (the budget), and a sequence for
 * mapping sample ids. */
struct copy_budget {
	__u64 next_ns;
	__u64 seq;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct copy_budget);
} copy_budget SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, COPY_RESULT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} copy_counts SEC(".maps");

/* Force BTF for the types user space decodes (bpf2go -type). */
const struct event *unused_event __attribute__((unused));
const enum drop_reason *unused_drop_reason __attribute__((unused));
const enum mapping_kind *unused_mapping_kind __attribute__((unused));
const enum event_type *unused_event_type __attribute__((unused));
const struct stack_copy_header *unused_stack_copy_header __attribute__((unused));
const enum stack_copy_kind *unused_stack_copy_kind __attribute__((unused));
const enum copy_result *unused_copy_result __attribute__((unused));
const struct cgroup_path *unused_cgroup_path __attribute__((unused));

/* Submit flags for an event the reader may pick up late: wake it only when
 * enough has queued that its timer might not come soon enough. */
static __always_inline __u64 lazy_wakeup(void)
{
	if (bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= ringbuf_wakeup_bytes)
		return BPF_RB_FORCE_WAKEUP;
	return BPF_RB_NO_WAKEUP;
}

static __always_inline void count_drop(__u32 reason)
{
	__u64 *v = bpf_map_lookup_elem(&drops, &reason);
	if (v)
		*v += 1;
}

/* The task's memory cgroup state (its css in the memory hierarchy), or NULL.
 * The memory subsystem's index is relocated by CO-RE, since it depends on
 * which controllers the kernel was built with. */
static __always_inline struct cgroup_subsys_state *task_memcg_css(struct task_struct *task)
{
	if (!bpf_core_enum_value_exists(enum cgroup_subsys_id, memory_cgrp_id))
		return NULL;
	int idx = bpf_core_enum_value(enum cgroup_subsys_id, memory_cgrp_id);
	if (idx < 0 || idx >= CGROUP_SUBSYS_COUNT)
		return NULL;

	struct css_set *cgroups = BPF_CORE_READ(task, cgroups);
	struct cgroup_subsys_state *css = NULL;
	void *slot = (void *)cgroups + bpf_core_field_offset(struct css_set, subsys) +
		     idx * sizeof(struct cgroup_subsys_state *);
	if (bpf_probe_read_kernel(&css, sizeof(css), slot))
		return NULL;
	return css;
}

/* The kernfs id of the task's memory cgroup: on v2 its directory's inode in
 * the unified hierarchy, on v1 and hybrid hosts the inode in the memory
 * hierarchy. */
static __always_inline __u64 task_memcg(struct task_struct *task)
{
	struct cgroup_subsys_state *css = task_memcg_css(task);
	if (!css)
		return 0;
	return BPF_CORE_READ(css, cgroup, kn, id);
}

static __always_inline struct counters *counters_for(__u64 memcg)
{
	struct counters *c = bpf_map_lookup_elem(&cgroup_counters, &memcg);
	if (c)
		return c;
	struct counters zero = {};
	if (bpf_map_update_elem(&cgroup_counters, &memcg, &zero, BPF_NOEXIST) &&
	    !bpf_map_lookup_elem(&cgroup_counters, &memcg)) {
		count_drop(DROP_CGROUPS_FULL);
		return NULL;
	}
	return bpf_map_lookup_elem(&cgroup_counters, &memcg);
}

static __always_inline void fill_task(struct event *e, struct task_struct *task)
{
	e->pid = BPF_CORE_READ(task, pid);
	e->tgid = BPF_CORE_READ(task, tgid);
	e->start_time = BPF_CORE_READ(task, group_leader, start_time);
	e->memcg = task_memcg(task);
	e->exec_id = (__u32)BPF_CORE_READ(task, self_exec_id);
	BPF_CORE_READ_STR_INTO(&e->comm, task, comm);
}

/* Remembers that a process has tracked state, and tells user space the
 * first time, so it can read the process's memory map while it still runs:
 * a short-lived process may be gone by the next collection. */
static __always_inline void mark_tracked(__u32 tgid, __u64 now)
{
	if (bpf_map_lookup_elem(&tracked_procs, &tgid))
		return;
	if (bpf_map_update_elem(&tracked_procs, &tgid, &now, BPF_NOEXIST)) {
		if (!bpf_map_lookup_elem(&tracked_procs, &tgid)) {
			count_drop(DROP_PROCS_FULL);
			procs_overflowed = 1;
		}
		return;
	}
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_drop(DROP_EVENTS_FULL);
		return;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->type = EVENT_TRACKED;
	e->ts = now;
	fill_task(e, (struct task_struct *)bpf_get_current_task());
	/* Forced: the adaptive wake-up stays silent while earlier lazy events
	 * are unread. */
	bpf_ringbuf_submit(e, BPF_RB_FORCE_WAKEUP);
}

/* Walks the user stack's frame pointers into ips, zeroing the rest; false
 * if the registers cannot be read.
 *
 * The kernel's own walk (bpf_get_stack with BPF_F_USER_STACK) reads the
 * first frame at whatever the frame-pointer register holds and ends only
 * when a read fails. Code built without frame pointers uses that register
 * for data (a length, a heap address), and every chain ends at a 0: so
 * nearly every walk ended in a user access that faulted, an exception the
 * kernel then fixes up, which on this project's VM was most of a sampled
 * fault's cost (docs/benchmarks.md, "What a sampled fault costs"). Here
 * nothing is read where no frame can be: the first frame must lie at or
 * above the stack pointer (in this stack), and no frame is read at 0 or at
 * an address that is not 8-byte aligned; otherwise what is read is what
 * the kernel would read (save for 32-bit processes, below). The number of
 * frames is left for the caller to find (the first 0), not counted here:
 * a count known exactly on every path would make the verifier walk the
 * rest of the program once per count. */
static __always_inline bool walk_user_frames(struct stack_trace *st, struct pt_regs *regs)
{
	if (!regs)
		return false;
	__u64 fp = PT_REGS_FP_CORE(regs), sp = PT_REGS_SP_CORE(regs);
	st->ips[0] = PT_REGS_IP_CORE(regs);
	/* A stack below 4 GiB is a 32-bit process's, whose frames are two
	 * 32-bit words: it gets its leaf alone. */
	bool more = fp >= sp && sp >> 32;
	for (int i = 1; i < MAX_STACK_DEPTH - 1; i++) {
		struct {
			__u64 next;
			__u64 ret;
		} frame = {};
		if (more && (!fp || (fp & 7) ||
			     bpf_probe_read_user(&frame, sizeof(frame), (void *)fp) || !frame.ret))
			more = false;
		st->ips[i] = more ? frame.ret : 0;
		fp = frame.next;
	}
	return st->ips[0] != 0;
}

/* Captures the current user stack and returns its id (a hash of its frames),
 * storing the frames on first sight. 0 means unknown. */
static __always_inline __u64 user_stack_id(void)
{
	__u32 zero = 0;
	struct stack_trace *st = bpf_map_lookup_elem(&stack_scratch, &zero);
	if (!st)
		return 0;
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	if (!walk_user_frames(st, regs)) {
		count_drop(DROP_STACK_ERROR);
		return 0;
	}
	st->leaf_return = 0;
	__u64 sp = regs ? PT_REGS_SP_CORE(regs) : 0;
	if (sp && bpf_probe_read_user(&st->leaf_return, sizeof(st->leaf_return), (void *)sp))
		st->leaf_return = 0;
	if (st->ips[1] && st->leaf_return == st->ips[1])
		st->leaf_return = 0;

	/* FNV-1a over the hint and the frames, up to the first 0. */
	__u64 h = 0xcbf29ce484222325ULL;
	h ^= st->leaf_return;
	h *= 0x100000001b3ULL;
	for (int i = 0; i < MAX_STACK_DEPTH - 1; i++) {
		if (!st->ips[i])
			break;
		h ^= st->ips[i];
		h *= 0x100000001b3ULL;
	}
	if (h == 0)
		h = 1;

	if (!bpf_map_lookup_elem(&stack_traces, &h) &&
	    bpf_map_update_elem(&stack_traces, &h, st, BPF_NOEXIST) &&
	    !bpf_map_lookup_elem(&stack_traces, &h)) {
		count_drop(DROP_STACKS_FULL);
		return 0;
	}
	return h;
}

/* A stack pointer this far below mm->start_stack is not on the main
 * thread's stack (the kernel leaves at least 128 MiB between that stack
 * and the mappings below it, where other threads' stacks are). */
#define MAIN_STACK_SPAN (64ULL << 20)

struct vma_range {
	__u64 start, end;
};

/* thread id -> the mapping its stack pointer was last found in. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct vma_range);
} stack_mappings SEC(".maps");

static long probe_vma_range(struct task_struct *task, struct vm_area_struct *vma, void *data)
{
	struct vma_range *r = data;
	r->start = BPF_CORE_READ(vma, vm_start);
	r->end = BPF_CORE_READ(vma, vm_end);
	return 0;
}

/* Where the mapping holding sp ends (0: unknown), looked up once per thread
 * and stack mapping: a thread's stack (glibc's, a Go heap arena's
 * goroutines) keeps its mapping, and a reused thread id whose stack lies
 * elsewhere misses and is looked up again. Without it a copy on a thread's
 * stack read the whole window or up to the first page that faulted, an
 * exception that costs microseconds on a VM. */
static __always_inline __u64 stack_mapping_end(struct task_struct *task, __u64 sp)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct vma_range *c = bpf_map_lookup_elem(&stack_mappings, &tid);
	if (c && c->start <= sp && sp < c->end)
		return c->end;
	struct vma_range r = {};
	if (bpf_find_vma(task, sp, probe_vma_range, &r, 0) || r.end <= sp)
		return 0;
	bpf_map_update_elem(&stack_mappings, &tid, &r, BPF_ANY);
	return r.end;
}

static __always_inline void count_copy(__u32 result)
{
	__u64 *v = bpf_map_lookup_elem(&copy_counts, &result);
	if (v)
		*v += 1;
}

/* Sends the user registers and a window of the user stack to user space,
 * within the budget. Returns the sample id the record carries (non-zero,
 * top bit set, unlike the frame-pointer stacks' hashes in practice) or 0
 * when nothing was sent: the event then keeps its frame-pointer stack. */
static __always_inline __u64 copy_stack(__u32 kind, __u64 fp_stack_id, __u64 memcg, __u64 weight,
					__u32 tgid, __u32 exec_id)
{
	if (!stack_copy_bytes || !fp_stack_id)
		return 0;
	__u32 zero = 0;
	struct copy_budget *b = bpf_map_lookup_elem(&copy_budget, &zero);
	if (!b)
		return 0;
	__u64 now = bpf_ktime_get_ns();
	if (b->next_ns > now + copy_burst_ns) {
		count_copy(COPY_OVER_BUDGET);
		return 0;
	}
	struct stack_copy_scratch *s = bpf_map_lookup_elem(&copy_scratch, &zero);
	if (!s)
		return 0;
	struct task_struct *task = bpf_get_current_task_btf();
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task);
	if (!regs)
		return 0;
	__u64 sp = PT_REGS_SP_CORE(regs);

	/* The main thread's stack ends where the process's first stack pointer
	 * stood (mm->start_stack, at argc): no frame lies above it, only argv
	 * and the environment. A copy on that stack stops there, a word past
	 * for the outermost frame, instead of reading the whole window. Any
	 * other stack ends where its mapping does. */
	__u64 want = stack_copy_bytes;
	__u64 top = BPF_CORE_READ(task, mm, start_stack);
	if (top > sp && top - sp < MAIN_STACK_SPAN) {
		if (top - sp + STACK_TOP_SLACK < want)
			want = top - sp + STACK_TOP_SLACK;
	} else {
		__u64 end = stack_mapping_end(task, sp);
		if (end > sp && end - sp < want)
			want = end - sp;
	}

	__u32 len = 0;
	for (int i = 0; i < STACK_COPY_MAX / 4096 + 1; i++) {
		if (len >= want || len >= STACK_COPY_MAX)
			break;
		__u64 addr = sp + len;
		__u64 n = 4096 - (addr & 4095);
		if (n > want - len)
			n = want - len;
		if (n == 0 || n > 4096)
			break;
		if (bpf_probe_read_user(&s->window[len & (STACK_COPY_MAX - 1)], n, (void *)addr))
			break;
		len += n;
	}
	if (len == 0 || len > STACK_COPY_MAX) {
		count_copy(COPY_UNREADABLE);
		return 0;
	}

	__u64 id = (1ULL << 63) | ((__u64)bpf_get_smp_processor_id() << 48) |
		   (b->seq++ & ((1ULL << 48) - 1));
	s->h.sample_id = id;
	s->h.fp_stack_id = fp_stack_id;
	s->h.memcg = memcg;
	s->h.start_time = BPF_CORE_READ(task, group_leader, start_time);
	s->h.ip = PT_REGS_IP_CORE(regs);
	s->h.sp = sp;
	s->h.bp = PT_REGS_FP_CORE(regs);
	s->h.weight = weight;
	s->h.tgid = tgid;
	s->h.exec_id = exec_id;
	s->h.kind = kind;
	s->h.len = len;
	__u64 flags = bpf_ringbuf_query(&stack_copies, BPF_RB_AVAIL_DATA) >= stack_wakeup_bytes
			  ? BPF_RB_FORCE_WAKEUP
			  : BPF_RB_NO_WAKEUP;
	if (bpf_ringbuf_output(&stack_copies, s, sizeof(s->h) + len, flags)) {
		count_copy(COPY_RING_FULL);
		return 0;
	}
	count_copy(COPY_MADE);
	b->next_ns = (b->next_ns > now ? b->next_ns : now) + copy_interval_ns;
	return id;
}

/* The stack id a new mapping carries: a stack copy's sample id when one was
 * sent, else the frame-pointer stack's. */
static __always_inline __u64 mapping_stack_id(__u64 fp, __u64 memcg, __u32 tgid)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u64 id = copy_stack(STACK_COPY_MAPPING, fp, memcg, 0, tgid,
			      (__u32)BPF_CORE_READ(task, self_exec_id));
	return id ? id : fp;
}

static __always_inline __u64 page_round_up(__u64 len)
{
	return (len + page_size - 1) & ~(page_size - 1);
}

static __always_inline bool is_err(long ret)
{
	return (unsigned long)ret >= (unsigned long)-MAX_ERRNO;
}

/* The bytes that bytes of mapping m stand for: more than bytes when m was
 * sampled (computed in two parts so that it cannot overflow). */
static __always_inline __u64 weigh(const struct mapping *m, __u64 bytes)
{
	__u64 sl = m->sampled_len;
	if (!sl)
		return bytes;
	return bytes / sl * mmap_sample_bytes + bytes % sl * mmap_sample_bytes / sl;
}

/* Records [start, start+len) as a live mapping. */
/* The user stack pointer at the event, or 0. */
static __always_inline __u64 user_sp(void)
{
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	return regs ? PT_REGS_SP_CORE(regs) : 0;
}

static __always_inline void track(__u32 tgid, __u64 start, __u64 len, __u64 memcg, __u64 stack_id,
				  __u64 fp_stack_id, __u32 kind, __u32 sampled_len, __u64 now)
{
	struct mapping_key key = {.tgid = tgid, .start = start};
	struct mapping m = {
	    .len = len,
	    .memcg = memcg,
	    .stack_id = stack_id,
	    .fp_stack_id = fp_stack_id,
	    .sp = user_sp(),
	    .ts = now,
	    .kind = kind,
	    .sampled_len = sampled_len,
	};
	if (bpf_map_update_elem(&live_mappings, &key, &m, BPF_ANY)) {
		count_drop(DROP_MAPPINGS_FULL);
		return;
	}
	struct mapping_key end = {.tgid = tgid, .start = start + len};
	if (bpf_map_update_elem(&mapping_ends, &end, &start, BPF_ANY))
		count_drop(DROP_ENDS_FULL);
	mark_tracked(tgid, now);
}

/* Grows the tracked range that ends at start by len when the same
 * frame-pointer stack of the same kind made it, from the same user stack
 * pointer, and it was not sampled: a leaking loop's consecutive growths of a
 * heap then cost one entry and no stack copy (the range keeps the stack
 * unwound for its first growth). The stack pointer keeps apart callers that
 * share a frame-pointer stack, as every caller of a frameless malloc does:
 * they call from other depths. Returns whether it did. */
static __always_inline bool extend_previous(__u32 tgid, __u64 start, __u64 len, __u64 memcg,
					    __u64 fp_stack_id, __u32 kind)
{
	struct mapping_key ek = {.tgid = tgid, .start = start};
	__u64 *prev_start = bpf_map_lookup_elem(&mapping_ends, &ek);
	if (!prev_start)
		return false;
	__u64 ps = *prev_start;
	struct mapping_key pk = {.tgid = tgid, .start = ps};
	struct mapping *prev = bpf_map_lookup_elem(&live_mappings, &pk);
	if (!prev || prev->kind != kind || prev->sampled_len || prev->fp_stack_id != fp_stack_id ||
	    prev->memcg != memcg || prev->sp != user_sp())
		return false;
	prev->len += len;
	bpf_map_delete_elem(&mapping_ends, &ek);
	struct mapping_key nek = {.tgid = tgid, .start = start + len};
	if (bpf_map_update_elem(&mapping_ends, &nek, &ps, BPF_ANY))
		count_drop(DROP_ENDS_FULL);
	return true;
}

/* Splits off [start, end) when it begins strictly inside a tracked mapping.
 * Neither key finds such a mapping, so the walk starts from hint, the start
 * of the VMA that held start (adjacent anonymous mappings merge into one VMA,
 * so the mapping sought may be a few steps on). Returns the bytes freed and
 * moves *start past them. */
static __always_inline __u64 split_inner(__u32 tgid, __u64 *start, __u64 end, __u64 hint)
{
	__u64 s = hint;
	for (int i = 0; i < MAX_UNMAP_STEPS; i++) {
		if (!s || s >= *start)
			return 0;
		struct mapping_key k = {.tgid = tgid, .start = s};
		struct mapping *m = bpf_map_lookup_elem(&live_mappings, &k);
		if (!m)
			return 0;
		__u64 mend = s + m->len;
		if (mend <= *start) {
			s = mend;
			continue;
		}
		/* m holds *start: keep [s, *start), and [end, mend) if any. */
		struct mapping tail = *m;
		struct mapping_key old_end = {.tgid = tgid, .start = mend};
		m->len = *start - s;
		struct mapping_key new_end = {.tgid = tgid, .start = *start};
		bpf_map_update_elem(&mapping_ends, &new_end, &s, BPF_ANY);
		__u64 freed;
		if (mend > end) {
			tail.len = mend - end;
			struct mapping_key tk = {.tgid = tgid, .start = end};
			if (bpf_map_update_elem(&live_mappings, &tk, &tail, BPF_ANY)) {
				count_drop(DROP_MAPPINGS_FULL);
				bpf_map_delete_elem(&mapping_ends, &old_end);
			} else {
				bpf_map_update_elem(&mapping_ends, &old_end, &end, BPF_ANY);
			}
			freed = end - *start;
			*start = end;
		} else {
			bpf_map_delete_elem(&mapping_ends, &old_end);
			freed = mend - *start;
			*start = mend;
		}
		return weigh(&tail, freed);
	}
	return 0;
}

/* Forgets the tracked bytes in [start, end) of process tgid: a mapping the
 * range starts inside of (from hint, see split_inner), then whole mappings,
 * heads (found by their start) and tails (found by their end), working in
 * from both sides. Returns the bytes forgotten, weighed (see weigh). */
static __always_inline __u64 untrack_range(__u32 tgid, __u64 start, __u64 end, __u64 hint)
{
	__u64 freed = split_inner(tgid, &start, end, hint);

	for (int i = 0; i < MAX_UNMAP_STEPS; i++) {
		if (start >= end)
			return freed;

		struct mapping_key k = {.tgid = tgid, .start = start};
		struct mapping *m = bpf_map_lookup_elem(&live_mappings, &k);
		if (m) {
			__u64 mend = start + m->len;
			struct mapping_key ek = {.tgid = tgid, .start = mend};
			if (mend <= end) {
				/* The whole mapping goes. */
				freed += weigh(m, m->len);
				bpf_map_delete_elem(&mapping_ends, &ek);
				bpf_map_delete_elem(&live_mappings, &k);
				start = mend;
				continue;
			}
			/* Its head goes: re-key the rest at end. */
			struct mapping rest = *m;
			rest.len = mend - end;
			struct mapping_key nk = {.tgid = tgid, .start = end};
			bpf_map_delete_elem(&live_mappings, &k);
			if (bpf_map_update_elem(&live_mappings, &nk, &rest, BPF_ANY)) {
				count_drop(DROP_MAPPINGS_FULL);
				bpf_map_delete_elem(&mapping_ends, &ek);
			} else {
				bpf_map_update_elem(&mapping_ends, &ek, &end, BPF_ANY);
			}
			return freed + weigh(&rest, end - start);
		}

		struct mapping_key ek = {.tgid = tgid, .start = end};
		__u64 *sp = bpf_map_lookup_elem(&mapping_ends, &ek);
		if (!sp)
			break;
		__u64 s = *sp;
		struct mapping_key sk = {.tgid = tgid, .start = s};
		m = bpf_map_lookup_elem(&live_mappings, &sk);
		if (!m) {
			bpf_map_delete_elem(&mapping_ends, &ek);
			break;
		}
		bpf_map_delete_elem(&mapping_ends, &ek);
		if (s >= start) {
			/* The whole mapping goes, from the back. */
			freed += weigh(m, m->len);
			bpf_map_delete_elem(&live_mappings, &sk);
			end = s;
			continue;
		}
		/* Its tail goes: [s, start) stays. */
		m->len = start - s;
		struct mapping_key nek = {.tgid = tgid, .start = start};
		bpf_map_update_elem(&mapping_ends, &nek, &s, BPF_ANY);
		return freed + weigh(m, end - start);
	}

	/* Nothing found at all is memory never tracked (file mappings, mappings
	 * older than the tracer); a range only partly found has a hole. */
	if (start < end && freed)
		count_drop(DROP_UNMAP_UNRESOLVED);
	return freed;
}

#define MAPLE_NODE_MASK	     255UL
#define MAPLE_TYPE_SHIFT     3
#define MAPLE_MAX_DEPTH	     8
#define MAPLE_RANGE64_SLOTS  16
#define MAPLE_ARANGE64_SLOTS 10

/* vma if it holds addr in mm, else NULL (a stale read of a tree changing
 * under a lockless walk). */
static __always_inline struct vm_area_struct *vma_holding(struct vm_area_struct *vma,
							  struct mm_struct *mm, __u64 addr)
{
	if (!vma || BPF_CORE_READ(vma, vm_mm) != mm)
		return NULL;
	if (addr < BPF_CORE_READ(vma, vm_start) || addr >= BPF_CORE_READ(vma, vm_end))
		return NULL;
	return vma;
}

/* Finds the VMA holding addr by walking the process's maple tree of VMAs
 * without its mmap lock, as the kernel's own lockless readers do under RCU.
 * bpf_find_vma only try-locks, and fails whenever another thread of the
 * process holds or waits for the lock: exactly when threads grow their
 * arenas at once (a fifth of four threads' arena growth was missed). A
 * node freed under the walk (dead: its parent is itself) ends it; what it
 * finds is checked to hold addr and belong to mm. NULL if nothing does. */
static __always_inline struct vm_area_struct *maple_vma(struct mm_struct *mm, __u64 addr)
{
	if (!bpf_core_type_exists(struct maple_range_64) ||
	    !bpf_core_type_exists(struct maple_arange_64))
		return NULL; /* before 6.1: an rbtree, not walked here */
	void *enode = BPF_CORE_READ(mm, mm_mt.ma_root);
	/* The root is tagged as an XArray internal entry when it is a node;
	 * otherwise it is the tree's one entry. Nodes below are plain encoded
	 * node pointers. */
	if (((__u64)enode & 3) != 2 || (__u64)enode < 4096)
		return vma_holding(enode, mm, addr);
	__u64 pivots[MAPLE_RANGE64_SLOTS - 1];
	for (int depth = 0; depth < MAPLE_MAX_DEPTH; depth++) {
		__u64 e = (__u64)enode;
		void *node = (void *)(e & ~MAPLE_NODE_MASK);
		__u32 type = (e >> MAPLE_TYPE_SHIFT) & 0xf;
		void *parent = NULL;
		bpf_probe_read_kernel(&parent, sizeof(parent), node);
		if ((void *)((__u64)parent & ~MAPLE_NODE_MASK) == node)
			return NULL; /* dead */
		__u32 nslots;
		__u64 slots_off;
		if (type == maple_arange_64) {
			nslots = MAPLE_ARANGE64_SLOTS;
			slots_off = bpf_core_field_offset(struct maple_arange_64, slot);
		} else if (type == maple_range_64 || type == maple_leaf_64) {
			nslots = MAPLE_RANGE64_SLOTS;
			slots_off = bpf_core_field_offset(struct maple_range_64, slot);
		} else {
			return NULL;
		}
		__builtin_memset(pivots, 0, sizeof(pivots));
		if (bpf_probe_read_kernel(pivots, (nslots - 1) * sizeof(__u64),
					  node +
					      bpf_core_field_offset(struct maple_range_64, pivot)))
			return NULL;
		/* The first slot whose pivot (its last index) reaches addr; past
		 * the node's data, pivots are 0 and the last slot runs to the
		 * node's end. */
		__u32 off = nslots - 1;
		for (__u32 i = 0; i < MAPLE_RANGE64_SLOTS - 1; i++) {
			if (i >= nslots - 1)
				break;
			if (pivots[i] >= addr || (i > 0 && !pivots[i])) {
				off = i;
				break;
			}
		}
		void *next = NULL;
		if (bpf_probe_read_kernel(&next, sizeof(next),
					  node + slots_off + off * sizeof(void *)))
			return NULL;
		if (type == maple_leaf_64)
			return vma_holding(next, mm, addr);
		enode = next;
	}
	return NULL;
}

static long vma_start_cb(struct task_struct *task, struct vm_area_struct *vma, void *data)
{
	*(__u64 *)data = BPF_CORE_READ(vma, vm_start);
	return 0;
}

/* Start of the VMA holding addr in the current process, 0 if none (or if
 * neither lookup could tell). Only called for ranges that may begin inside
 * a mapping. */
static __always_inline __u64 vma_start_of(__u64 addr)
{
	__u64 start = 0;
	struct task_struct *task = bpf_get_current_task_btf();
	if (bpf_find_vma(task, addr, vma_start_cb, &start, 0) == -EBUSY) {
		struct vm_area_struct *vma = maple_vma(BPF_CORE_READ(task, mm), addr);
		if (vma)
			start = BPF_CORE_READ(vma, vm_start);
	}
	return start < addr ? start : 0;
}

static __always_inline void stash_pending(struct pending *p)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (bpf_map_update_elem(&pending_calls, &id, p, BPF_ANY))
		count_drop(DROP_PENDING_FULL);
}

static __always_inline void stash(__u64 a0, __u64 a1, __u64 a2, __u64 a3, __u64 vma_start)
{
	struct pending p = {.args = {a0, a1, a2, a3}, .vma_start = vma_start};
	stash_pending(&p);
}

/* Takes the stash of this thread's syscall, if any. */
static __always_inline bool unstash(struct pending *out)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct pending *p = bpf_map_lookup_elem(&pending_calls, &id);
	if (!p)
		return false;
	*out = *p;
	bpf_map_delete_elem(&pending_calls, &id);
	return true;
}

static __always_inline __u64 current_memcg(void)
{
	return task_memcg((struct task_struct *)bpf_get_current_task());
}

SEC("tracepoint/syscalls/sys_enter_mmap")
int handle_sys_enter_mmap(struct trace_event_raw_sys_enter *ctx)
{
	/* Read every argument up front: the verifier rejects a context pointer
	 * that the compiler offset conditionally. */
	__u64 addr = ctx->args[0], len = ctx->args[1], prot = ctx->args[2], flags = ctx->args[3];
	barrier_var(prot);
	/* Only private anonymous mappings are tracked, but any MAP_FIXED mapping
	 * replaces what was there and so must be seen. */
	bool anon_private =
	    (flags & MAP_ANONYMOUS) && (flags & MAP_TYPE) == MAP_PRIVATE && prot != PROT_NONE;
	struct pending p = {.args = {addr, len, prot, flags}, .untracked = !anon_private};
	if (anon_private && mmap_sample_bytes) {
		/* Sample by size: a mapping of len bytes is tracked with
		 * probability len / mmap_sample_bytes and then stands for
		 * mmap_sample_bytes / len like it, so outstanding bytes per
		 * stack stay unbiased. */
		__u64 rlen = page_round_up(len);
		if (rlen < mmap_sample_bytes) {
			if (bpf_get_prandom_u32() % mmap_sample_bytes >= rlen)
				p.untracked = 1;
			else
				p.sampled_len = rlen;
		}
	}
	if (p.untracked && !(flags & MAP_FIXED))
		return 0;
	if (flags & MAP_FIXED)
		p.vma_start = vma_start_of(addr);
	stash_pending(&p);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_mmap")
int handle_sys_exit_mmap(struct trace_event_raw_sys_exit *ctx)
{
	struct pending p;
	if (!unstash(&p))
		return 0;
	long ret = ctx->ret;
	if (is_err(ret))
		return 0;

	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u64 start = (__u64)ret;
	__u64 len = page_round_up(p.args[1]);
	__u64 flags = p.args[3];
	__u64 memcg = current_memcg();

	if (flags & MAP_FIXED) {
		__u64 freed = untrack_range(tgid, start, start + len, p.vma_start);
		if (freed) {
			struct counters *c = counters_for(memcg);
			if (c)
				c->munmap_bytes += freed;
		}
	}
	if (p.untracked)
		return 0;

	__u64 now = bpf_ktime_get_ns();
	__u64 fp = user_stack_id();
	track(tgid, start, len, memcg, mapping_stack_id(fp, memcg, tgid), fp, MAPPING_MMAP,
	      p.sampled_len, now);
	struct counters *c = counters_for(memcg);
	if (c) {
		/* A sampled mapping stands for mmap_sample_bytes of mappings. */
		if (p.sampled_len) {
			c->mmap_calls += (mmap_sample_bytes + p.sampled_len / 2) / p.sampled_len;
			c->mmap_bytes += mmap_sample_bytes;
		} else {
			c->mmap_calls++;
			c->mmap_bytes += len;
		}
	}
	return 0;
}

/* An unmap is resolved at entry, while the VMAs it ends still exist: there
 * is no exit handler, no stash, and a process with nothing tracked costs one
 * lookup. munmap fails only on arguments checked here, on sealed mappings and
 * when a split would pass vm.max_map_count; such a failure untracks memory
 * that stays mapped. */
SEC("tracepoint/syscalls/sys_enter_munmap")
int handle_sys_enter_munmap(struct trace_event_raw_sys_enter *ctx)
{
	__u64 addr = ctx->args[0], len = ctx->args[1];
	if (!len || (addr & (page_size - 1)))
		return 0;
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	if (!procs_overflowed && !bpf_map_lookup_elem(&tracked_procs, &tgid))
		return 0;
	__u64 freed = untrack_range(tgid, addr, addr + page_round_up(len), vma_start_of(addr));
	if (!freed)
		return 0;
	struct counters *c = counters_for(current_memcg());
	if (c) {
		c->munmap_calls++;
		c->munmap_bytes += freed;
	}
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_mremap")
int handle_sys_enter_mremap(struct trace_event_raw_sys_enter *ctx)
{
	/* old address, old length, new length, flags */
	__u64 old = ctx->args[0], old_len = ctx->args[1], new_len = ctx->args[2],
	      flags = ctx->args[3];
	barrier_var(flags);
	stash(old, old_len, new_len, flags, 0);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_mremap")
int handle_sys_exit_mremap(struct trace_event_raw_sys_exit *ctx)
{
	struct pending p;
	if (!unstash(&p))
		return 0;
	long ret = ctx->ret;
	if (is_err(ret))
		return 0;

	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u64 old = p.args[0];
	__u64 old_len = page_round_up(p.args[1]);
	__u64 new_len = page_round_up(p.args[2]);
	__u64 new = (__u64)ret;

	/* Only a move or resize of a whole tracked mapping is followed: that is
	 * what realloc does. The new range keeps the allocating stack. */
	struct mapping_key k = {.tgid = tgid, .start = old};
	struct mapping *m = bpf_map_lookup_elem(&live_mappings, &k);
	if (!m || m->len != old_len || old_len == 0)
		return 0;
	struct mapping moved = *m;
	struct mapping_key ek = {.tgid = tgid, .start = old + old_len};
	bpf_map_delete_elem(&mapping_ends, &ek);
	bpf_map_delete_elem(&live_mappings, &k);
	/* MREMAP_DONTUNMAP leaves an empty mapping behind; its pages moved. */
	track(tgid, new, new_len, moved.memcg, moved.stack_id, moved.fp_stack_id, moved.kind,
	      moved.sampled_len, moved.ts);

	struct counters *c = counters_for(moved.memcg);
	if (c) {
		c->mremap_calls++;
		if (new_len > old_len)
			c->mmap_bytes += weigh(&moved, new_len - old_len);
		else
			c->munmap_bytes += weigh(&moved, old_len - new_len);
	}
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_brk")
int handle_sys_enter_brk(struct trace_event_raw_sys_enter *ctx)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u64 old = BPF_CORE_READ(task, mm, brk);
	stash(old, ctx->args[0], 0, 0, 0);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_brk")
int handle_sys_exit_brk(struct trace_event_raw_sys_exit *ctx)
{
	struct pending p;
	if (!unstash(&p))
		return 0;
	__u64 old = p.args[0];
	__u64 new = (__u64)ctx->ret;
	if (new == old || old == 0)
		return 0;

	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u64 memcg = current_memcg();

	if (new < old) {
		/* Shrink: taken back from the most recent growth first. */
		__u64 freed = untrack_range(tgid, new, old, 0);
		struct counters *c = counters_for(memcg);
		if (c)
			c->brk_shrink_bytes += freed;
		return 0;
	}

	__u64 now = bpf_ktime_get_ns();
	__u64 grow = new - old;
	__u64 fp = user_stack_id();
	struct counters *c = counters_for(memcg);
	if (c)
		c->brk_grow_bytes += grow;

	/* A leaking loop then costs one entry, not one per brk call. */
	if (!extend_previous(tgid, old, grow, memcg, fp, MAPPING_BRK))
		track(tgid, old, grow, memcg, mapping_stack_id(fp, memcg, tgid), fp, MAPPING_BRK, 0,
		      now);
	return 0;
}

/* What the VMA holding an mprotect's start was at entry. */
struct vma_reserved {
	__u64 end;
	bool reserved; /* private anonymous and PROT_NONE: reserved, not committed */
};

/* Fills r from vma: where it ends, and whether it is reserved. */
static __always_inline void read_reserved(struct vm_area_struct *vma, struct vma_reserved *r)
{
	__u64 flags = BPF_CORE_READ(vma, vm_flags);
	r->end = BPF_CORE_READ(vma, vm_end);
	r->reserved =
	    !(flags & (VM_READ | VM_WRITE | VM_EXEC | VM_SHARED)) && !BPF_CORE_READ(vma, vm_file);
}

static long vma_reserved_cb(struct task_struct *task, struct vm_area_struct *vma, void *data)
{
	read_reserved(vma, data);
	return 0;
}

/* mprotect commits reserved memory: glibc reserves each thread arena's 64
 * MiB PROT_NONE and makes it readable and writable as the arena grows, as
 * JIT runtimes and VMs do with their heaps. A range inside one reserved VMA
 * that becomes accessible is tracked like an mmap from the stack that asked
 * (sampled by size the same way); anything else (RW <-> RX flips of JIT
 * code, RELRO, ranges spanning VMAs) is left alone. A tracked range made
 * PROT_NONE again is untracked at entry, as munmap does; MADV_DONTNEED is
 * not followed, since the range stays committed and glibc reuses it without
 * another mprotect (the resident view sees what it gave back). */
SEC("tracepoint/syscalls/sys_enter_mprotect")
int handle_sys_enter_mprotect(struct trace_event_raw_sys_enter *ctx)
{
	__u64 addr = ctx->args[0], len = ctx->args[1], prot = ctx->args[2];
	barrier_var(prot);
	if (!len || (addr & (page_size - 1)))
		return 0;
	__u64 rlen = page_round_up(len);
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;

	if (prot == PROT_NONE) {
		if (!procs_overflowed && !bpf_map_lookup_elem(&tracked_procs, &tgid))
			return 0;
		__u64 freed = untrack_range(tgid, addr, addr + rlen, vma_start_of(addr));
		if (!freed)
			return 0;
		struct counters *c = counters_for(current_memcg());
		if (c)
			c->mprotect_shrink_bytes += freed;
		return 0;
	}
	if (!(prot & (PROT_READ | PROT_WRITE)))
		return 0;

	struct vma_reserved r = {};
	struct task_struct *task = bpf_get_current_task_btf();
	/* -ENOENT: nothing mapped there, and the call fails. */
	if (bpf_find_vma(task, addr, vma_reserved_cb, &r, 0) == -EBUSY) {
		struct vm_area_struct *vma = maple_vma(BPF_CORE_READ(task, mm), addr);
		if (vma)
			read_reserved(vma, &r);
		else
			count_drop(DROP_VMA_BUSY);
	}
	if (!r.reserved || r.end < addr + rlen)
		return 0;
	struct pending p = {.args = {addr, rlen, prot, 0}};
	if (mmap_sample_bytes && rlen < mmap_sample_bytes) {
		/* As for mmap: tracked with probability rlen / mmap_sample_bytes,
		 * standing for mmap_sample_bytes / rlen ranges like it. */
		if (bpf_get_prandom_u32() % mmap_sample_bytes >= rlen)
			return 0;
		p.sampled_len = rlen;
	}
	stash_pending(&p);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_mprotect")
int handle_sys_exit_mprotect(struct trace_event_raw_sys_exit *ctx)
{
	struct pending p;
	if (!unstash(&p))
		return 0;
	if (ctx->ret != 0)
		return 0;

	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u64 start = p.args[0], len = p.args[1];
	__u64 memcg = current_memcg();
	__u64 fp = user_stack_id();
	struct counters *c = counters_for(memcg);
	if (c)
		c->mprotect_grow_bytes += p.sampled_len ? mmap_sample_bytes : len;

	/* An arena grows by one range after another: a leaking loop extends
	 * the previous entry instead of adding one. A sampled range's weight
	 * is its own, so it never merges. */
	if (!p.sampled_len && extend_previous(tgid, start, len, memcg, fp, MAPPING_MPROTECT))
		return 0;
	track(tgid, start, len, memcg, mapping_stack_id(fp, memcg, tgid), fp, MAPPING_MPROTECT,
	      p.sampled_len, bpf_ktime_get_ns());
	return 0;
}

/* Reads the VMA a sampled fault hit: file-backed or anonymous. */
struct vma_probe {
	bool file;
};

static long probe_vma(struct task_struct *task, struct vm_area_struct *vma, void *data)
{
	struct vma_probe *p = data;
	p->file = BPF_CORE_READ(vma, vm_file) != NULL;
	return 0;
}

/* Whether the task is in execve, loading a new program. The faults it takes
 * there are the kernel's writes into the new image (its bss, its first stack
 * page, the ELF tables): they count for the new image's exec id, but the user
 * registers are still those of the program that called execve until the new
 * one starts, so the stack walk would give the caller's execve wrapper, an
 * address in no mapping of the new image (issue 16: a lone unnamed libc
 * address, the shell's execve+7, among an OOM victim's faults). They have no
 * user stack of their image: they count under stack 0 (not recorded). */
static __always_inline bool in_execve(struct task_struct *task)
{
	if (!bpf_core_field_exists(task->in_execve))
		return false;
	return BPF_CORE_READ_BITFIELD(task, in_execve);
}

SEC("perf_event")
int handle_page_fault(struct bpf_perf_event_data *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	if (tgid == 0)
		return 0;
	struct task_struct *task = bpf_get_current_task_btf();
	if (!BPF_CORE_READ(task, mm))
		return 0; /* kernel thread */

	__u64 memcg = task_memcg(task);
	__u64 weight = ctx->sample_period * page_size;
	struct fault_key key = {
	    .memcg = memcg,
	    .stack_id = in_execve(task) ? 0 : user_stack_id(),
	    .tgid = tgid,
	    .exec_id = (__u32)BPF_CORE_READ(task, self_exec_id),
	};
	struct fault_value *v = bpf_map_lookup_elem(&fault_samples, &key);
	if (!v) {
		struct fault_value zero = {};
		if (bpf_map_update_elem(&fault_samples, &key, &zero, BPF_NOEXIST) &&
		    !bpf_map_lookup_elem(&fault_samples, &key)) {
			count_drop(DROP_FAULTS_FULL);
			return 0;
		}
		v = bpf_map_lookup_elem(&fault_samples, &key);
		if (!v)
			return 0;
		mark_tracked(tgid, bpf_ktime_get_ns());
	}
	__sync_fetch_and_add(&v->bytes, weight);
	__u64 n = __sync_fetch_and_add(&v->samples, 1);
	/* Counted under the frame-pointer stack first: user space moves the
	 * weight to the unwound stack when it reads the copy, so the key's
	 * anonymous share and every byte stay exact whatever becomes of it. */
	copy_stack(STACK_COPY_FAULT, key.stack_id, memcg, weight, tgid, key.exec_id);

	/* Faults on file-backed memory are page cache, not something a leak
	 * holds; a subsample tells each key's share of them. A VMA that cannot
	 * be looked up (lock contended) counts as anonymous. */
	bool checked = n < FAULT_CHECK_FIRST || (n & (FAULT_CHECK_EVERY - 1)) == 0;
	struct vma_probe vp = {};
	if (checked) {
		bpf_find_vma(task, ctx->addr, probe_vma, &vp, 0);
		__sync_fetch_and_add(&v->checked, 1);
		if (vp.file)
			__sync_fetch_and_add(&v->checked_file, 1);
	}

	struct counters *c = counters_for(memcg);
	if (c) {
		c->fault_samples++;
		c->fault_bytes += weight;
		__u64 nc = v->checked, nf = v->checked_file;
		if (nf && nc)
			c->fault_file_bytes += nf >= nc ? weight : weight * nf / nc;
	}
	return 0;
}

static __always_inline __u64 mm_pages(struct mm_struct *mm, int idx)
{
	/* 6.2+: percpu_counter per counter; its count is the folded total. */
	s64 n = 0;
	if (idx == 0)
		n = BPF_CORE_READ(mm, rss_stat[0].count);
	else if (idx == 1)
		n = BPF_CORE_READ(mm, rss_stat[1].count);
	else if (idx == 3)
		n = BPF_CORE_READ(mm, rss_stat[3].count);
	return n > 0 ? (__u64)n : 0;
}

/* How far up from the victim's memory cgroup the OOM's is looked for. */
#define OOM_MAX_ANCESTORS 16
/* Kernel frames of the allocating task searched for memcg_oom_text. */
#define OOM_STACK_FRAMES 32
/* A charge fails when usage plus its pages would pass max, and the OOM
 * killer runs only for charges of at most 8 pages (PAGE_ALLOC_COSTLY_ORDER);
 * the slack also covers pages freed since. */
#define OOM_LIMIT_SLACK_PAGES 64

static __always_inline bool counter_at_max(struct page_counter *c)
{
	__u64 max = BPF_CORE_READ(c, max);
	__u64 usage = BPF_CORE_READ(c, usage.counter);
	/* An unlimited counter's max is PAGE_COUNTER_MAX, far above this. */
	return max > 0 && max < (1ULL << 52) && usage + OOM_LIMIT_SLACK_PAGES >= max;
}

/* Finds the memory cgroup whose limit fired, from the victim's up; the
 * victim is always inside it. On cgroup v1 the OOM'ing memcg and its whole
 * subtree hold oom_lock while the kill runs (mem_cgroup_oom_trylock), so the
 * highest ancestor holding it is the one. Otherwise (v2, or a kernel without
 * the field) it is the lowest ancestor whose usage is at its max: a charge
 * walks the counters from the leaf up and fails at the first one full. v1
 * also charges memsw, its memory+swap counter. */
static __always_inline __u64 oom_memcg(struct task_struct *victim, __u16 *found_by)
{
	struct cgroup_subsys_state *css = task_memcg_css(victim);
	bool v1 = css && BPF_CORE_READ(css, cgroup, root, hierarchy_id) != 0;
	__u64 locked = 0, full = 0;
	bool lock_run = true;
	for (int i = 0; i < OOM_MAX_ANCESTORS && css; i++) {
		struct mem_cgroup *m =
		    (struct mem_cgroup *)((void *)css -
					  bpf_core_field_offset(struct mem_cgroup, css));
		__u64 id = BPF_CORE_READ(css, cgroup, kn, id);
		if (bpf_core_field_exists(m->oom_lock) && lock_run) {
			if (BPF_CORE_READ(m, oom_lock))
				locked = id;
			else
				lock_run = false;
		}
		if (!full && (counter_at_max(&m->memory) || (v1 && counter_at_max(&m->memsw))))
			full = id;
		css = BPF_CORE_READ(css, parent);
	}
	if (locked) {
		*found_by = OOM_FOUND_OOM_LOCK;
		return locked;
	}
	if (full)
		*found_by = OOM_FOUND_LIMIT;
	return full;
}

/* Tells a memory cgroup's OOM from the node's by the allocating task's
 * kernel stack. */
static __always_inline __u16 oom_kind(void *ctx)
{
	if (!memcg_oom_text[0])
		return OOM_KIND_UNKNOWN;
	__u32 zero = 0;
	struct stack_trace *st = bpf_map_lookup_elem(&stack_scratch, &zero);
	if (!st)
		return OOM_KIND_UNKNOWN;
	long n = bpf_get_stack(ctx, st->ips, OOM_STACK_FRAMES * sizeof(__u64), 0);
	if (n <= 0)
		return OOM_KIND_UNKNOWN;
	for (int i = 0; i < OOM_STACK_FRAMES; i++) {
		if (i * (long)sizeof(__u64) >= n)
			break;
		__u64 ip = st->ips[i];
		if ((ip >= memcg_oom_text[0] && ip < memcg_oom_text[1]) ||
		    (ip >= memcg_oom_text[2] && ip < memcg_oom_text[3]))
			return OOM_KIND_MEMCG;
	}
	return OOM_KIND_GLOBAL;
}

SEC("tp_btf/mark_victim")
int BPF_PROG(handle_mark_victim, struct task_struct *task)
{
	/* Read before the ring buffer reservation: the stack scratch is
	 * per-CPU and this program is not interrupted on this CPU. */
	__u16 kind = oom_kind(ctx);
	__u16 found_by = OOM_FOUND_NONE;
	__u64 trigger = kind == OOM_KIND_GLOBAL ? 0 : oom_memcg(task, &found_by);

	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_drop(DROP_EVENTS_FULL);
		return 0;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->type = EVENT_OOM_KILL;
	e->ts = bpf_ktime_get_ns();
	fill_task(e, task);
	e->oom_kind = kind;
	e->oom_found_by = found_by;
	e->trigger_memcg = trigger;
	struct mm_struct *mm = BPF_CORE_READ(task, mm);
	if (mm) {
		e->total_vm_bytes = BPF_CORE_READ(mm, total_vm) * page_size;
		e->file_rss_bytes = mm_pages(mm, 0) * page_size;
		e->anon_rss_bytes = mm_pages(mm, 1) * page_size;
		e->shmem_rss_bytes = mm_pages(mm, 3) * page_size;
	}
	bpf_ringbuf_submit(e, BPF_RB_FORCE_WAKEUP);
	return 0;
}

static __always_inline void report_process(__u32 type)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	if (!bpf_map_lookup_elem(&tracked_procs, &tgid))
		return;
	bpf_map_delete_elem(&tracked_procs, &tgid);

	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_drop(DROP_EVENTS_FULL);
		return;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->type = type;
	e->ts = bpf_ktime_get_ns();
	fill_task(e, (struct task_struct *)bpf_get_current_task());
	bpf_ringbuf_submit(e, lazy_wakeup());
}

SEC("tracepoint/sched/sched_process_exit")
int handle_sched_process_exit(struct trace_event_raw_sched_process_exit *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	/* group_dead exists since 6.16; before, the leader's exit stands in. */
	bool group_dead = (__u32)id == (id >> 32);
	if (bpf_core_field_exists(ctx->group_dead))
		group_dead = ctx->group_dead;
	/* A thread's exit leaves its stash behind otherwise. */
	bpf_map_delete_elem(&pending_calls, &id);
	if (group_dead)
		report_process(EVENT_EXIT);
	return 0;
}

/* A cgroup was made: in the memory hierarchy (the one the current task's
 * memory cgroup belongs to, v1 or v2), remember its path by id. */
SEC("tracepoint/cgroup/cgroup_mkdir")
int handle_cgroup_mkdir(struct trace_event_raw_cgroup *ctx)
{
	struct cgroup_subsys_state *css =
	    task_memcg_css((struct task_struct *)bpf_get_current_task());
	if (!css || BPF_CORE_READ(css, cgroup, root, hierarchy_id) != ctx->root)
		return 0;
	struct cgroup_path v;
	__u64 id = ctx->id;
	if (bpf_probe_read_kernel_str(v.path, sizeof(v.path),
				      (void *)ctx + (ctx->__data_loc_path & 0xffff)) <= 0)
		return 0;
	bpf_map_update_elem(&cgroup_paths, &id, &v, BPF_ANY);
	return 0;
}

SEC("tracepoint/sched/sched_process_exec")
int handle_sched_process_exec(void *ctx)
{
	report_process(EVENT_EXEC);
	return 0;
}
