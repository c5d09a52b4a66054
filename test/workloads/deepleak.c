// deepleak: leaks through six noinline levels, for unwinding tests. Built by
// the tests with whatever compiler and flags they check (gcc -O2 omits frame
// pointers). Commands on stdin, one answer line each:
//
//   mmap N    level1..level6, then mmap N KiB and touch it; "ok"
//   malloc N  level1..level6, then N KiB in 4,000-byte mallocs, touched
//             (glibc's brk heap); "ok"
//   arena N   a new thread runs level1..level6, then N KiB in 4,000-byte
//             mallocs, touched (the thread's own arena, grown by mprotect);
//             "ok" once it is done
//   deep D N  recurse() D times, then mmap N KiB and touch it (a stack
//             deeper than any copied window); "ok"
//   signal N  raise SIGUSR1, whose handler leaks N KiB through level1;
//             "ok" once it returned
//   dlopen L N  dlopen library L and call its lib_leak(N) (N KiB mmap'd
//             and touched); "ok"
//   mmapexit N  mmap N KiB through level1, touch it, and exit at once
//   oom       leak 1 MiB at a time through level1 until the kernel kills it
//   nop, exit
//
// Without stdin, as a container runs it: "deepleak auto N" leaks N KiB a
// second through level1..level6 by mmap, for ever; "deepleak oom" leaks 1 MiB
// at a time, with no pause, until the kernel kills it.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

volatile long sink;

#ifdef FRESH
/* Built with -DFRESH=1, the binary has other contents and build id. */
const char fresh[] = "fresh";
#endif

__attribute__((noinline)) static long grow(int kind, long kib)
{
	if (kind == 0) {
		char *p = mmap(NULL, kib << 10, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			       -1, 0);
		if (p == MAP_FAILED)
			return -1;
		memset(p, 1, kib << 10);
		return 0;
	}
	for (long done = 0; done < kib << 10; done += 4000) {
		char *p = malloc(4000);
		if (!p)
			return -1;
		memset(p, 1, 4000);
		sink += (long)p;
	}
	return 0;
}

/* Each level uses its callee's result, so no call becomes a tail jump that
 * would leave its caller's frame out of the stack. */
__attribute__((noinline)) long level6(int kind, long kib)
{
	long r = grow(kind, kib);
	sink += r;
	return r + 1;
}
__attribute__((noinline)) long level5(int kind, long kib)
{
	long r = level6(kind, kib);
	sink += r;
	return r + 1;
}
__attribute__((noinline)) long level4(int kind, long kib)
{
	long r = level5(kind, kib);
	sink += r;
	return r + 1;
}
__attribute__((noinline)) long level3(int kind, long kib)
{
	long r = level4(kind, kib);
	sink += r;
	return r + 1;
}
__attribute__((noinline)) long level2(int kind, long kib)
{
	long r = level3(kind, kib);
	sink += r;
	return r + 1;
}
__attribute__((noinline)) long level1(int kind, long kib)
{
	long r = level2(kind, kib);
	sink += r;
	return r + 1;
}

/* Each frame holds a buffer, so that D frames take D * 512 bytes at least. */
__attribute__((noinline)) long recurse(long depth, long kib)
{
	volatile char pad[512];
	pad[0] = (char)depth;
	if (depth <= 0)
		return grow(0, kib) + pad[0];
	long r = recurse(depth - 1, kib);
	sink += r + pad[0];
	return r + 1;
}

static volatile long signal_kib;

static void on_signal(int sig)
{
	(void)sig;
	sink += level1(0, signal_kib);
}

static long arena_kib;

static void *arena_thread(void *arg)
{
	(void)arg;
	sink += level1(1, arena_kib);
	return NULL;
}

int main(int argc, char **argv)
{
	char line[256], lib[201];
	long m = 0;
	if (argc == 3 && strcmp(argv[1], "auto") == 0) {
		for (long kib = atol(argv[2]);; sleep(1))
			sink += level1(0, kib);
	}
	if (argc == 2 && strcmp(argv[1], "oom") == 0) {
		for (;;)
			sink += level1(0, 1024);
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	while (fgets(line, sizeof line, stdin)) {
		long n = 0;
		if (sscanf(line, "mmap %ld", &n) == 1) {
			sink += level1(0, n);
		} else if (sscanf(line, "malloc %ld", &n) == 1) {
			sink += level1(1, n);
		} else if (sscanf(line, "arena %ld", &n) == 1) {
			pthread_t th;
			arena_kib = n;
			if (pthread_create(&th, NULL, arena_thread, NULL) ||
			    pthread_join(th, NULL)) {
				printf("error thread\n");
				continue;
			}
		} else if (sscanf(line, "deep %ld %ld", &n, &m) == 2) {
			sink += recurse(n, m);
		} else if (sscanf(line, "signal %ld", &n) == 1) {
			signal_kib = n;
			signal(SIGUSR1, on_signal);
			raise(SIGUSR1);
		} else if (sscanf(line, "dlopen %200s %ld", lib, &n) == 2) {
			void *h = dlopen(lib, RTLD_NOW);
			long (*leak)(long) = h ? (long (*)(long))dlsym(h, "lib_leak") : NULL;
			if (!leak) {
				printf("error %s\n", dlerror());
				continue;
			}
			sink += leak(n);
		} else if (sscanf(line, "mmapexit %ld", &n) == 1) {
			sink += level1(0, n);
			_exit(0);
		} else if (strncmp(line, "oom", 3) == 0) {
			for (;;)
				sink += level1(0, 1024);
		} else if (strncmp(line, "exit", 4) == 0) {
			return 0;
		}
		printf("ok\n");
	}
	return 0;
}
