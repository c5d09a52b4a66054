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
//   nop, exit
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

volatile long sink;

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

static long arena_kib;

static void *arena_thread(void *arg)
{
	(void)arg;
	sink += level1(1, arena_kib);
	return NULL;
}

int main(void)
{
	char line[256];
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
		} else if (strncmp(line, "exit", 4) == 0) {
			return 0;
		}
		printf("ok\n");
	}
	return 0;
}
