// memwork: a workload driven line by line on stdin, so a test can move it
// into a cgroup first and then ask for exactly the memory operations it
// wants to observe. Built with -fno-omit-frame-pointer so that user stacks
// walk through its functions. Each command answers one line on stdout.
//
//   map N        mmap N KiB private anonymous (not touched); prints "ok ADDR"
//   unmap A N    munmap N KiB at address A (hex, as printed)
//   remap A O N  mremap A from O KiB to N KiB (may move); prints "ok NEWADDR"
//   brk N        grow the heap by N KiB (negative: shrink); prints "ok"
//   touch N      mmap N KiB and touch every page in touch_pages(); "ok ADDR"
//   readfile N   map a memfd of N KiB (shared memory: file-backed) and read
//                every page in read_pages(); "ok ADDR"
//   leak N M     leak_step(): touch N KiB in new mappings, M times; "ok"
//   free         unmap everything touch and leak mapped (a GC cycle's end)
//   arenas N K   N threads at once each leak K KiB in arena_leak(): small
//                mallocs, touched, which glibc serves from the thread's own
//                arena (reserved PROT_NONE, grown by mprotect); "ok"
//   reserve R C T  mmap R KiB PROT_NONE, commit its first C KiB with mprotect
//                in 1 MiB slices in commit_slices(), touch the first T KiB;
//                "ok ADDR" (a VM's heap: reserve, then commit)
//   decommit A N mprotect N KiB at A back to PROT_NONE
//   flip N K     map K KiB and flip it N times read-execute, then read-write
//                again, as a JIT flips its code; "ok ADDR"
//   thread N     touch N KiB (as touch) in a thread whose stack is a mapping
//                of its own (256 KiB) right below a readable page of
//                another; "ok END", END the stack mapping's end
//   oom          touch memory until the kernel kills the process
//   exec         exec memwork afresh (same pid, new image), which answers
//                "ok" once started
//   nop          do nothing; answers once start-up is over
//   exit         exit 0
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static long page;

/* Regions touch and leak mapped, so that free can give them back. */
#define MAX_REGIONS 65536
static struct {
	void *p;
	size_t len;
} regions[MAX_REGIONS];
static int nregions;

static void remember(void *p, size_t len)
{
	if (nregions < MAX_REGIONS) {
		regions[nregions].p = p;
		regions[nregions].len = len;
		nregions++;
	}
}

__attribute__((noinline)) void *map_anon(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p != MAP_FAILED)
		madvise(p, len, MADV_NOHUGEPAGE);
	return p;
}

__attribute__((noinline)) void touch_pages(volatile char *p, size_t len)
{
	for (size_t i = 0; i < len; i += page)
		p[i] = 1;
}

/* read_pages faults in file-backed memory: a memfd, shared, read only. */
__attribute__((noinline)) long read_pages(volatile const char *p, size_t len)
{
	long sum = 0;
	for (size_t i = 0; i < len; i += page)
		sum += p[i];
	return sum;
}

static void *map_memfd(size_t len)
{
	int fd = memfd_create("memwork", 0);
	if (fd < 0)
		return MAP_FAILED;
	void *p = MAP_FAILED;
	if (ftruncate(fd, (off_t)len) == 0)
		p = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	return p;
}

/* leak_step maps and touches memory itself, so that it is the innermost
 * frame (after libc's mmap wrapper) of both the allocation and the faults. */
__attribute__((noinline)) void leak_step(size_t len)
{
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return;
	madvise(p, len, MADV_NOHUGEPAGE);
	for (size_t i = 0; i < len; i += page)
		((volatile char *)p)[i] = 1;
	remember(p, len);
}

/* arena_leak mallocs blocks below the mmap threshold, so glibc serves them
 * from the calling thread's arena, and touches them. */
__attribute__((noinline)) void arena_leak(size_t kib)
{
	const size_t block = 4000;
	for (size_t done = 0; done < kib << 10; done += block) {
		char *p = malloc(block);
		if (!p)
			return;
		memset(p, 1, block);
	}
}

static void *touch_thread(void *arg)
{
	size_t len = (size_t)arg;
	char *p = map_anon(len);
	if (p != MAP_FAILED) {
		touch_pages(p, len);
		remember(p, len); /* the main thread waits in pthread_join */
	}
	return NULL;
}

/* touch_on_own_stack runs touch in a thread whose stack ends where a
 * readable mapping begins, so that a stack read past the stack's end
 * succeeds instead of faulting; returns the stack's end or NULL. */
static char *touch_on_own_stack(size_t kib)
{
	const size_t stack = 256 << 10;
	char *m =
	    mmap(NULL, stack + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return NULL;
	m[stack] = 1; /* present, then read-only: a mapping of its own */
	pthread_attr_t attr;
	pthread_t t;
	if (mprotect(m + stack, page, PROT_READ) || pthread_attr_init(&attr) ||
	    pthread_attr_setstack(&attr, m, stack) ||
	    pthread_create(&t, &attr, touch_thread, (void *)(kib << 10)) || pthread_join(t, NULL))
		return NULL;
	return m + stack;
}

static pthread_barrier_t arenas_done;

static void *arena_thread(void *arg)
{
	arena_leak((size_t)arg);
	/* Alive until every thread has leaked, so no two share an arena. */
	pthread_barrier_wait(&arenas_done);
	return NULL;
}

static int run_arenas(int n, size_t kib)
{
	pthread_t th[64];
	if (n < 1 || n > 64)
		return -1;
	pthread_barrier_init(&arenas_done, NULL, (unsigned)n);
	int started = 0;
	for (; started < n; started++)
		if (pthread_create(&th[started], NULL, arena_thread, (void *)kib))
			break;
	for (int i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&arenas_done);
	return started == n ? 0 : -1;
}

/* commit_slices makes a reservation accessible 1 MiB at a time, as a VM
 * commits its heap. */
__attribute__((noinline)) int commit_slices(char *p, size_t len)
{
	const size_t slice = 1 << 20;
	for (size_t off = 0; off < len; off += slice) {
		size_t n = len - off < slice ? len - off : slice;
		if (mprotect(p + off, n, PROT_READ | PROT_WRITE))
			return -1;
	}
	return 0;
}

__attribute__((noinline)) void oom_forever(void)
{
	for (;;) {
		char *p = map_anon(1 << 20);
		if (p == MAP_FAILED)
			continue;
		touch_pages(p, 1 << 20);
	}
}

int main(int argc, char **argv)
{
	page = sysconf(_SC_PAGESIZE);
	/* One arena per thread for the arenas command (glibc's default stops
	 * at 8 per core). */
	mallopt(M_ARENA_MAX, 128);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc > 1 && !strcmp(argv[1], "execd"))
		printf("ok\n");
	char line[256];
	while (fgets(line, sizeof(line), stdin)) {
		char cmd[16] = {0};
		long long a = 0, b = 0, c = 0;
		sscanf(line, "%15s", cmd);
		if (!strcmp(cmd, "map")) {
			sscanf(line, "%*s %lld", &a);
			void *p = map_anon((size_t)a << 10);
			printf(p == MAP_FAILED ? "err mmap\n" : "ok %lx\n", (unsigned long)p);
		} else if (!strcmp(cmd, "unmap")) {
			sscanf(line, "%*s %llx %lld", &a, &b);
			printf(munmap((void *)a, (size_t)b << 10) ? "err munmap\n" : "ok\n");
		} else if (!strcmp(cmd, "remap")) {
			sscanf(line, "%*s %llx %lld %lld", &a, &b, &c);
			void *p =
			    mremap((void *)a, (size_t)b << 10, (size_t)c << 10, MREMAP_MAYMOVE);
			printf(p == MAP_FAILED ? "err mremap\n" : "ok %lx\n", (unsigned long)p);
		} else if (!strcmp(cmd, "brk")) {
			sscanf(line, "%*s %lld", &a);
			void *p = sbrk((intptr_t)a << 10);
			printf(p == (void *)-1 ? "err sbrk\n" : "ok\n");
		} else if (!strcmp(cmd, "touch")) {
			sscanf(line, "%*s %lld", &a);
			char *p = map_anon((size_t)a << 10);
			if (p == MAP_FAILED) {
				printf("err mmap\n");
				continue;
			}
			touch_pages(p, (size_t)a << 10);
			remember(p, (size_t)a << 10);
			printf("ok %lx\n", (unsigned long)p);
		} else if (!strcmp(cmd, "readfile")) {
			sscanf(line, "%*s %lld", &a);
			char *p = map_memfd((size_t)a << 10);
			if (p == MAP_FAILED) {
				printf("err memfd\n");
				continue;
			}
			read_pages(p, (size_t)a << 10);
			printf("ok %lx\n", (unsigned long)p);
		} else if (!strcmp(cmd, "leak")) {
			sscanf(line, "%*s %lld %lld", &a, &b);
			for (long long i = 0; i < b; i++)
				leak_step((size_t)a << 10);
			printf("ok\n");
		} else if (!strcmp(cmd, "arenas")) {
			sscanf(line, "%*s %lld %lld", &a, &b);
			printf(run_arenas((int)a, (size_t)b) ? "err arenas\n" : "ok\n");
		} else if (!strcmp(cmd, "reserve")) {
			sscanf(line, "%*s %lld %lld %lld", &a, &b, &c);
			char *p = mmap(NULL, (size_t)a << 10, PROT_NONE,
				       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
			if (p == MAP_FAILED) {
				printf("err mmap\n");
				continue;
			}
			madvise(p, (size_t)a << 10, MADV_NOHUGEPAGE);
			if (commit_slices(p, (size_t)b << 10)) {
				printf("err mprotect\n");
				continue;
			}
			touch_pages(p, (size_t)c << 10);
			printf("ok %lx\n", (unsigned long)p);
		} else if (!strcmp(cmd, "flip")) {
			sscanf(line, "%*s %lld %lld", &a, &b);
			char *p = map_anon((size_t)b << 10);
			int err = p == MAP_FAILED;
			for (long long i = 0; i < a && !err; i++)
				err = mprotect(p, (size_t)b << 10, PROT_READ | PROT_EXEC) ||
				      mprotect(p, (size_t)b << 10, PROT_READ | PROT_WRITE);
			printf(err ? "err flip\n" : "ok %lx\n", (unsigned long)p);
		} else if (!strcmp(cmd, "decommit")) {
			sscanf(line, "%*s %llx %lld", &a, &b);
			printf(mprotect((void *)a, (size_t)b << 10, PROT_NONE) ? "err mprotect\n"
									       : "ok\n");
		} else if (!strcmp(cmd, "oom")) {
			oom_forever();
		} else if (!strcmp(cmd, "free")) {
			for (int i = 0; i < nregions; i++)
				munmap(regions[i].p, regions[i].len);
			nregions = 0;
			printf("ok\n");
		} else if (!strcmp(cmd, "thread")) {
			sscanf(line, "%*s %lld", &a);
			char *end = touch_on_own_stack((size_t)a);
			printf(end ? "ok %lx\n" : "err thread\n", (unsigned long)end);
		} else if (!strcmp(cmd, "exec")) {
			fflush(stdout);
			execl("/proc/self/exe", "memwork", "execd", (char *)NULL);
			printf("err exec\n");
		} else if (!strcmp(cmd, "nop")) {
			printf("ok\n");
		} else if (!strcmp(cmd, "exit")) {
			return 0;
		} else {
			printf("err unknown command\n");
		}
	}
	return 0;
}
