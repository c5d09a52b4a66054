// loops: the micro-workloads of leakwatch's benchmarks. Each runs one loop
// for a number of iterations and prints the mean nanoseconds per iteration,
// measured with CLOCK_MONOTONIC around the loop only.
//
//   loops faults MIB ROUNDS  first touch of MIB fresh anonymous MiB, 4 KiB pages
//                            (THP off for it), unmapped and mapped again ROUNDS times;
//                            per iteration = one page fault
//   loops tfaults MIB ROUNDS as faults, in a thread other than the main one (a
//                            thread's stack, as most of a server's work runs on)
//   loops mmap N             N mmap+munmap pairs of 16 KiB; per iteration = one pair
//   loops malloc N           N malloc+free pairs of sizes 16..4096 B
//   loops getpid N           N getpid() system calls (the control)
//   loops hold KIB           wait for a line on stdin (the caller moves the process
//                            into its cgroup meanwhile), map and touch KIB anonymous
//                            KiB, print "ready", then sleep until stdin closes
//   loops stacks N           as hold, but map N 512 KiB regions (untouched), each from a distinct
//                            call path (N < 65536), and keep them
//   loops tick N             wake once a second for N seconds and do nothing else: what
//                            the machine charges a nearly idle process (the footprint's
//                            reference for the agent's CPU)
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

__attribute__((noinline)) static void touch(volatile char *p, size_t len, long page)
{
	for (size_t i = 0; i < len; i += page)
		p[i] = 1;
}

/* The path to each mapping of `stacks` spells its number in binary: bit d
 * picks path0 or path1 at depth d, so every number has its own user stack. */
static volatile long sink;
#define STACK_BITS 16
__attribute__((noinline)) static void *path0(unsigned n, int d);
__attribute__((noinline)) static void *path1(unsigned n, int d);

/* 512 KiB, the agent's default --mmap-sample-bytes, so that every mapping
 * is tracked with its stack; untouched, so it costs no memory. */
#define STACKS_REGION (512 << 10)

__attribute__((noinline)) static void *leaf(void)
{
	void *p =
	    mmap(NULL, STACKS_REGION, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	sink += (long)p;
	return p;
}

static void *step(unsigned n, int d)
{
	if (d == 0)
		return leaf();
	return ((n >> (d - 1)) & 1) ? path1(n, d - 1) : path0(n, d - 1);
}

__attribute__((noinline)) static void *path0(unsigned n, int d)
{
	void *p = step(n, d);
	sink++; /* no tail call: keep this frame on the stack */
	return p;
}

__attribute__((noinline)) static void *path1(unsigned n, int d)
{
	void *p = step(n, d);
	sink--;
	return p;
}

/* wait_line reads stdin up to a newline; it returns 0 at end of file. */
static int wait_line(void)
{
	char c;
	while (read(0, &c, 1) == 1)
		if (c == '\n')
			return 1;
	return 0;
}

static int hold(long n, int stacks)
{
	if (!wait_line())
		return 1;
	if (stacks) {
		for (long i = 0; i < n; i++)
			if (path0((unsigned)i, STACK_BITS) == MAP_FAILED) {
				perror("mmap");
				return 1;
			}
	} else {
		size_t len = (size_t)n << 10;
		char *p =
		    mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED) {
			perror("mmap");
			return 1;
		}
		memset(p, 1, len);
	}
	printf("ready\n");
	fflush(stdout);
	while (wait_line())
		;
	return 0;
}

/* fault_rounds touches MIB fresh MiB ROUNDS times; returns the ns spent
 * touching and sets *iters to the faults taken. */
struct fault_job {
	long mib, rounds, page, iters;
	double elapsed;
	int err;
};

static void *fault_rounds(void *arg)
{
	struct fault_job *j = arg;
	size_t len = (size_t)j->mib << 20;
	for (long r = 0; r < j->rounds; r++) {
		char *p =
		    mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED) {
			perror("mmap");
			j->err = 1;
			return NULL;
		}
		madvise(p, len, MADV_NOHUGEPAGE);
		double start = now_ns();
		touch(p, len, j->page);
		j->elapsed += now_ns() - start;
		j->iters += len / j->page;
		munmap(p, len);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(
		    stderr,
		    "usage: loops faults|tfaults|mmap|malloc|getpid|hold|stacks|tick N [ROUNDS]\n");
		return 2;
	}
	long page = sysconf(_SC_PAGESIZE);
	long n = atol(argv[2]);
	double start, elapsed;
	long iters = n;

	if (!strcmp(argv[1], "faults") || !strcmp(argv[1], "tfaults")) {
		struct fault_job j = {
		    .mib = n, .rounds = argc > 3 ? atol(argv[3]) : 1, .page = page};
		if (argv[1][0] == 't') {
			pthread_t t;
			if (pthread_create(&t, NULL, fault_rounds, &j) || pthread_join(t, NULL)) {
				fprintf(stderr, "loops: no thread\n");
				return 1;
			}
		} else {
			fault_rounds(&j);
		}
		if (j.err)
			return 1;
		elapsed = j.elapsed;
		iters = j.iters;
	} else if (!strcmp(argv[1], "mmap")) {
		start = now_ns();
		for (long i = 0; i < n; i++) {
			void *p = mmap(NULL, 16384, PROT_READ | PROT_WRITE,
				       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			if (p == MAP_FAILED) {
				perror("mmap");
				return 1;
			}
			munmap(p, 16384);
		}
		elapsed = now_ns() - start;
	} else if (!strcmp(argv[1], "malloc")) {
		void *keep[64] = {0};
		start = now_ns();
		for (long i = 0; i < n; i++) {
			int slot = i & 63;
			free(keep[slot]);
			keep[slot] = malloc(16 + (i * 2654435761u) % 4080);
		}
		elapsed = now_ns() - start;
		for (int i = 0; i < 64; i++)
			free(keep[i]);
	} else if (!strcmp(argv[1], "hold")) {
		return hold(n, 0);
	} else if (!strcmp(argv[1], "stacks")) {
		if (n < 1 || n >= 1L << STACK_BITS) {
			fprintf(stderr, "stacks: N must be 1..%ld\n", (1L << STACK_BITS) - 1);
			return 2;
		}
		return hold(n, 1);
	} else if (!strcmp(argv[1], "tick")) {
		for (long i = 0; i < n; i++)
			sleep(1);
		return 0;
	} else if (!strcmp(argv[1], "getpid")) {
		start = now_ns();
		for (long i = 0; i < n; i++)
			syscall(SYS_getpid);
		elapsed = now_ns() - start;
	} else {
		fprintf(stderr, "unknown loop %s\n", argv[1]);
		return 2;
	}
	printf("%.3f\n", elapsed / iters);
	return 0;
}
