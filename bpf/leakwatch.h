/* Types shared by the BPF programs and the Go tracer (bpf2go generates Go
 * structs from them). Keep every field naturally aligned and padded by hand:
 * the Go side reads these bytes as they are. */
#ifndef LEAKWATCH_H
#define LEAKWATCH_H

/* Frames kept per user stack. Leaf frames matter most for attribution; 64
 * frames keep a stack entry at 512 bytes. */
#define MAX_STACK_DEPTH 64

/* What a tracked range of address space came from. */
enum mapping_kind {
	MAPPING_MMAP = 1, /* private anonymous mmap, possibly moved by mremap */
	MAPPING_BRK = 2,  /* heap growth through brk */
	/* a PROT_NONE reservation made accessible by mprotect (glibc thread
	 * arenas, JIT and VM heaps that reserve then commit) */
	MAPPING_MPROTECT = 3,
};

/* Why something was not recorded. Indexes the drops array. */
enum drop_reason {
	DROP_PENDING_FULL = 0,	   /* enter->exit argument stash full */
	DROP_MAPPINGS_FULL = 1,	   /* live_mappings full: a mapping is not tracked */
	DROP_ENDS_FULL = 2,	   /* mapping_ends full: tail unmaps of it are missed */
	DROP_STACKS_FULL = 3,	   /* stack_traces full: bytes kept, stack unknown */
	DROP_STACK_ERROR = 4,	   /* no user registers to walk the stack from */
	DROP_FAULTS_FULL = 5,	   /* fault_samples full: a sample is lost */
	DROP_CGROUPS_FULL = 6,	   /* cgroup_counters full: counters of a cgroup lost */
	DROP_EVENTS_FULL = 7,	   /* ring buffer full: an event is lost */
	DROP_PROCS_FULL = 8,	   /* tracked_procs full: exit cleanup needs the sweep */
	DROP_UNMAP_UNRESOLVED = 9, /* an unmap only partly resolved: a hole inside a mapping */
	DROP_VMA_BUSY = 10,	   /* mprotect: its VMA could not be looked up, not tracked */
	DROP_REASON_COUNT = 11,
};

/* Per memory cgroup counters (per CPU, summed in Go). Bytes are page-rounded. */
struct counters {
	__u64 mmap_calls;
	__u64 mmap_bytes;
	__u64 munmap_calls;
	__u64 munmap_bytes;
	__u64 brk_grow_bytes;
	__u64 brk_shrink_bytes;
	__u64 mremap_calls;
	__u64 fault_samples; /* sampled faults */
	__u64 fault_bytes;   /* their weight: sample period x page size */
	/* The part of fault_bytes estimated file-backed: each sample adds its
	 * weight times its fault key's file-backed share of checks so far, so
	 * keys count by their bytes, however often each was checked. */
	__u64 fault_file_bytes;
	/* Reserved (PROT_NONE) private anonymous memory made accessible, and
	 * tracked memory made PROT_NONE again. */
	__u64 mprotect_grow_bytes;
	__u64 mprotect_shrink_bytes;
};

struct mapping_key {
	__u32 tgid;
	__u32 _pad;
	__u64 start;
};

struct mapping {
	__u64 len;
	__u64 memcg;
	/* key of stack_traces, or a stack copy's sample id (user space knows
	 * its stack); 0 when unknown */
	__u64 stack_id;
	/* the frame-pointer stack's key, which consecutive growths compare */
	__u64 fp_stack_id;
	/* the user stack pointer at its creation (see extend_previous) */
	__u64 sp;
	__u64 ts;   /* bpf_ktime_get_ns() at creation */
	__u32 kind; /* enum mapping_kind */
	/* 0 when every mapping of this size is tracked. Otherwise the
	 * page-rounded length the mapping had when it was sampled, with
	 * probability sampled_len / mmap_sample_bytes: it stands for
	 * mmap_sample_bytes / sampled_len mappings like it. */
	__u32 sampled_len;
};

/* A user stack. ips come from the frame-pointer walk, innermost first.
 * leaf_return is the word at the user stack pointer, which is the caller's
 * return address when the innermost function is frameless (a libc syscall
 * wrapper, memset): the walk then skips that caller. It is kept as a hint;
 * user space inserts it as the second frame only if it is a code address
 * the walk missed, since otherwise it is just data. */
struct stack_trace {
	__u64 leaf_return;
	__u64 ips[MAX_STACK_DEPTH - 1];
};

struct fault_key {
	__u64 memcg;
	__u64 stack_id;
	__u32 tgid;
	/* Low bits of the task's self_exec_id, which each exec increments:
	 * faults before an exec went with the old image's memory. */
	__u32 exec_id;
};

/* Bytes and samples count every sample of the key; checked of them had their
 * VMA looked up (see FAULT_CHECK_FIRST/EVERY), checked_file of those were on
 * file-backed memory. User space scales bytes by the anonymous share. */
struct fault_value {
	__u64 bytes;
	__u64 samples;
	__u64 checked;
	__u64 checked_file;
};

enum event_type {
	EVENT_OOM_KILL = 1,
	EVENT_EXIT = 2,
	EVENT_EXEC = 3,
	EVENT_TRACKED = 4, /* a process got tracked state for the first time */
};

/* Which OOM an OOM kill ended, told from the allocating task's kernel stack. */
enum oom_kind {
	OOM_KIND_UNKNOWN = 0, /* the kernel's text addresses were not known */
	OOM_KIND_MEMCG = 1,   /* a memory cgroup's limit fired */
	OOM_KIND_GLOBAL = 2,  /* the node ran out */
};

/* How an OOM kill's trigger memcg was found. */
enum oom_found_by {
	OOM_FOUND_NONE = 0,
	OOM_FOUND_OOM_LOCK = 1, /* cgroup v1: the highest ancestor holding oom_lock */
	OOM_FOUND_LIMIT = 2,	/* the lowest ancestor whose usage is at its max */
};

/* One record of the events ring buffer. OOM fields are zero for others. */
/* The path of a memory cgroup, relative to its hierarchy's root, as the
 * cgroup_mkdir tracepoint gives it. A path that fills the buffer was cut. */
#define CGROUP_PATH_BYTES 256
struct cgroup_path {
	char path[CGROUP_PATH_BYTES];
};

struct event {
	__u32 type; /* enum event_type */
	__u32 pid;
	__u32 tgid;
	__u16 oom_kind;	    /* OOM: enum oom_kind */
	__u16 oom_found_by; /* OOM: enum oom_found_by */
	__u64 ts;	    /* bpf_ktime_get_ns() */
	__u64 start_time;   /* task start time (ns since boot) of the process */
	__u64 memcg;
	__u64 trigger_memcg; /* OOM: the memory cgroup whose limit fired, 0 if none */
	__u64 total_vm_bytes;
	__u64 anon_rss_bytes;
	__u64 file_rss_bytes;
	__u64 shmem_rss_bytes;
	char comm[16];
	__u32 exec_id; /* low bits of the task's self_exec_id, as in fault_key */
	__u32 _pad;
};

/* Stack copies (issue 14): at a sampled event the user registers and a
 * window of the user stack from sp go to user space, which unwinds them from
 * the binaries' call-frame information. The window is copied page by page
 * (bpf_probe_read_user zeroes all it was asked for when any byte faults),
 * and ends at the first page that cannot be read. */
#define STACK_COPY_MAX 16384
/* Bytes a copy on the main thread's stack reads past mm->start_stack. */
#define STACK_TOP_SLACK 64

enum stack_copy_kind {
	STACK_COPY_MAPPING = 1, /* a tracked mapping: sample_id is its stack_id */
	STACK_COPY_FAULT = 2,	/* a fault sample: weight moves to the unwound stack */
};

/* What became of a stack copy the tracer wanted. Indexes copy_counts. */
enum copy_result {
	COPY_MADE = 0,	      /* the record went to user space */
	COPY_OVER_BUDGET = 1, /* the per-second budget was spent: frame pointers only */
	COPY_RING_FULL = 2,   /* the stack_copies ring buffer was full: frame pointers only */
	COPY_UNREADABLE = 3,  /* no byte of the stack could be read: frame pointers only */
	COPY_RESULT_COUNT = 4,
};

struct stack_copy_header {
	__u64 sample_id;   /* mapping: the id its live_mappings entry carries */
	__u64 fp_stack_id; /* the frame-pointer stack's key in stack_traces */
	__u64 memcg;
	__u64 start_time; /* of the process (group leader), ns since boot */
	__u64 ip, sp, bp; /* user registers at the event */
	__u64 weight;	  /* fault: the sample's bytes */
	__u32 tgid;
	__u32 exec_id;
	__u32 kind; /* enum stack_copy_kind */
	__u32 len;  /* bytes of window that follow, from sp */
};

#endif
