/* A process for SkippedCaller's tests: it calls a frameless function of its
 * own directly and libc's getppid() through its PLT, prints the functions
 * and the return addresses of those calls, then waits until its stdin
 * closes. Built with frame pointers, so main pushes rbp. */
#include <stdio.h>
#include <unistd.h>

/* Frameless: nothing pushed before its ret. */
__asm__(".text\n.globl own_leaf\n.type own_leaf,@function\nown_leaf:\n\tret\n.size own_leaf,.-own_leaf\n");
/* Pushes a register first: from pushed_body on, the word at the stack
 * pointer is that register, not the return address. */
__asm__(".text\n.globl pushing\n.type pushing,@function\npushing:\n\tpush %rbx\n"
	".globl pushed_body\npushed_body:\n\tpop %rbx\n\tret\n.size pushing,.-pushing\n");
void own_leaf(void);
extern char direct_ret[], plt_ret[], pushing[], pushed_body[], pushing_ret[];

__attribute__((noinline)) void calls(void)
{
	__asm__ volatile("call own_leaf\n.globl direct_ret\ndirect_ret:\n"
			 "call getppid@PLT\n.globl plt_ret\nplt_ret:\n"
			 "call pushing\n.globl pushing_ret\npushing_ret:\n"
			 ::: "rax", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11", "memory");
}

int main(void)
{
	char buf[64];
	calls();
	printf("own_leaf %p\n", (void *)own_leaf);
	printf("getppid %p\n", (void *)getppid);
	printf("direct_ret %p\n", (void *)direct_ret);
	printf("plt_ret %p\n", (void *)plt_ret);
	printf("pushing %p\n", (void *)pushing);
	printf("pushed_body %p\n", (void *)pushed_body);
	printf("pushing_ret %p\n", (void *)pushing_ret);
	fflush(stdout);
	while (read(0, buf, sizeof buf) > 0) {
	}
	return 0;
}
