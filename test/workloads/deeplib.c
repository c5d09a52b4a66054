// deeplib: a library that deepleak loads with dlopen, for unwinding tests:
// lib_leak(N) maps and touches N KiB two levels down.
#include <string.h>
#include <sys/mman.h>

volatile long lib_sink;

__attribute__((noinline)) static long lib_level2(long kib)
{
	char *p = mmap(NULL, kib << 10, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -1;
	memset(p, 1, kib << 10);
	return 0;
}

__attribute__((noinline)) long lib_level1(long kib)
{
	long r = lib_level2(kib);
	lib_sink += r;
	return r + 1;
}

long lib_leak(long kib)
{
	long r = lib_level1(kib);
	lib_sink += r;
	return r + 1;
}
