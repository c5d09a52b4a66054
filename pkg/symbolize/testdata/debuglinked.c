/* A process whose function of interest is static: a stripped build keeps
 * no name for it (.dynsym holds exported symbols only), its debug file
 * does. It prints the function's address, then waits until stdin closes. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

__attribute__((noinline)) static int hidden_helper(int n)
{
	__asm__ volatile("" ::: "memory");
	return n * 3 + 1;
}

#ifdef OTHER_BUILD
/* Another build: other code, so another build id, and another address for
 * hidden_helper. */
__attribute__((noinline)) int other_build(int n)
{
	return n * 7;
}
#endif

int main(int argc, char **argv)
{
	char buf[64];
	(void)argv;
	printf("hidden_helper %p\n", (void *)hidden_helper);
	printf("value %d\n", hidden_helper(argc));
	printf("malloc %p\n", (void *)malloc);
	fflush(stdout);
	while (read(0, buf, sizeof buf) > 0) {
	}
	return 0;
}
