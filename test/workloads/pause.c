// pause: a pod sandbox's process for the CRI tests' own sandbox image. It
// sleeps until SIGTERM or SIGINT, then exits 0. Built static: the image holds
// nothing else.
#include <signal.h>
#include <unistd.h>

static void done(int sig)
{
	(void)sig;
	_exit(0);
}

int main(void)
{
	signal(SIGTERM, done);
	signal(SIGINT, done);
	for (;;)
		pause();
}
