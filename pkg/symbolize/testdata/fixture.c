/* A process for the symbolizer's tests: it prints the address of a known
 * function, then waits until its stdin closes. NAME is the function's name,
 * so one source builds binaries that differ. */
#include <stdio.h>
#include <unistd.h>

#ifndef NAME
#define NAME leakwatch_grow
#endif

__attribute__((noinline)) void NAME(void) { __asm__ volatile("" ::: "memory"); }

int main(void) {
	char buf[64];
	NAME();
	printf("addr %p\n", (void *)&NAME);
	fflush(stdout);
	while (read(0, buf, sizeof buf) > 0) {
	}
	return 0;
}
