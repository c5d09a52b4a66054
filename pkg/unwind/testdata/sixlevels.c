// sixlevels allocates through six noinline levels for the given seconds,
// keeping at most 1024 blocks alive (about 32 MiB), so that perf samples
// land in malloc, memset and page faults below level6 -> ... -> main.
// Built with -DWITH_SIGNAL, a SIGPROF handler fills a 4 MiB buffer 8 times on
// each timer tick, so samples also land in a handler above the kernel's signal
// frame.
#include <stdlib.h>
#include <string.h>
#include <time.h>
static volatile unsigned long sink;
#ifdef WITH_SIGNAL
#include <signal.h>
#include <sys/time.h>
static char scratch[1 << 22];
__attribute__((noinline)) void in_handler(void) {
	for (int i = 0; i < 8; i++) { memset(scratch, i, sizeof scratch); sink += scratch[7]; }
}
static void on_prof(int sig) { (void)sig; in_handler(); }
#endif
__attribute__((noinline)) void *level6(size_t n) { char *p = malloc(n); if (p) memset(p, 1, n); return p; }
__attribute__((noinline)) void *level5(size_t n) { void *p = level6(n + 1); sink += (unsigned long)p; return p; }
__attribute__((noinline)) void *level4(size_t n) { void *p = level5(n + 1); sink += (unsigned long)p; return p; }
__attribute__((noinline)) void *level3(size_t n) { void *p = level4(n + 1); sink += (unsigned long)p; return p; }
__attribute__((noinline)) void *level2(size_t n) { void *p = level3(n + 1); sink += (unsigned long)p; return p; }
__attribute__((noinline)) void *level1(size_t n) { void *p = level2(n + 1); sink += (unsigned long)p; return p; }
int main(int argc, char **argv) {
	double secs = argc > 1 ? atof(argv[1]) : 1.0;
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
#ifdef WITH_SIGNAL
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_prof;
	sigaction(SIGPROF, &sa, 0);
	struct itimerval it = {{0, 200}, {0, 200}};
	setitimer(ITIMER_PROF, &it, 0);
#endif
	static void *keep[1024];
	for (unsigned long i = 0;; i++) {
		void *p = level1(64 + (i % 4096) * 16);
		free(keep[i % 1024]);
		keep[i % 1024] = p;
		if ((i & 1023) == 0) {
			clock_gettime(CLOCK_MONOTONIC, &b);
			if ((b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9 > secs) break;
		}
	}
	return 0;
}
