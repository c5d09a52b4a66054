// cservice is a C service on glibc malloc shaped like a real one, for
// recording memory traces (see ../goservice for the same shape in Go): a live
// index, four worker threads (each with its own malloc arena) serving
// requests at a load that swings over a 20-minute cycle, each allocating
// short-lived buffers and filling a shared FIFO cache that then evicts (so
// blocks are freed by threads other than the one that allocated them), and
// batch bursts every 5-9 minutes that hold 48 MiB for a minute or so. With a
// leak rate > 0 the workers keep that many bytes a second between them, from
// leakAfter seconds on, and never free them.
//
//   cservice <liveMiB> <cacheMiB> <leakRate> <leakAfterSeconds>
#define _GNU_SOURCE
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MIB (1 << 20)
#define WORKERS 4
#define ENTRY (8 << 10)
#define LEAK_BLOCK 4096

static long cache_slots;
static char **cache;
static long cache_key; // keys 0..cache_key-1 were inserted; the last cache_slots are held
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static double leak_rate, leak_after;
static struct timespec start;
static volatile unsigned long sink;

static double elapsed(void) {
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - start.tv_sec) + (now.tv_nsec - start.tv_nsec) / 1e9;
}

static void *fill(size_t n, int seed) {
	unsigned char *b = malloc(n);
	if (!b) {
		perror("malloc");
		exit(1);
	}
	for (size_t i = 0; i < n; i++)
		b[i] = (unsigned char)(seed + i);
	return b;
}

static double gauss(unsigned *seed) {
	double u = (rand_r(seed) + 1.0) / (RAND_MAX + 2.0), v = rand_r(seed) / (RAND_MAX + 1.0);
	return sqrt(-2 * log(u)) * cos(2 * M_PI * v);
}

static void *worker(void *arg) {
	unsigned seed = (unsigned)(uintptr_t)arg * 7919 + (unsigned)time(NULL);
	void **burst = NULL;
	double burst_end = 0, next_burst = 300 + rand_r(&seed) % 300 + 30 * (uintptr_t)arg;
	double leak_debt = 0, last_leak = 0;
	size_t leaked = 0;
	for (;;) {
		double el = elapsed();
		double rate = 8 + 4 * sin(2 * M_PI * el / 1200) + gauss(&seed);
		rate = rate < 1 ? 1 : rate;
		rate /= WORKERS;
		// A request: temporaries of 8-160 KiB, a cache lookup and fill.
		int ntmp = 2 + rand_r(&seed) % 6;
		void *tmp[8];
		for (int i = 0; i < ntmp; i++)
			tmp[i] = fill(8192 + rand_r(&seed) % (152 << 10), i);
		for (int i = 0; i < ntmp; i++) {
			sink += ((unsigned char *)tmp[i])[0];
			free(tmp[i]);
		}
		pthread_mutex_lock(&mu);
		long k = cache_key - rand_r(&seed) % 20000;
		int hit = k >= 0 && cache_key - k <= cache_slots;
		if (!hit) {
			long slot = cache_key % cache_slots;
			free(cache[slot]); // often another thread's block
			cache[slot] = fill(ENTRY, (int)cache_key);
			cache_key++;
		}
		pthread_mutex_unlock(&mu);
		// Bursts: each worker's share of 48 MiB, held for 40-100 s.
		if (!burst && el > next_burst) {
			burst = calloc(48 / WORKERS, sizeof *burst);
			for (int i = 0; i < 48 / WORKERS; i++)
				burst[i] = fill(MIB, i);
			burst_end = el + 40 + rand_r(&seed) % 60;
		} else if (burst && el > burst_end) {
			for (int i = 0; i < 48 / WORKERS; i++)
				free(burst[i]);
			free(burst);
			burst = NULL;
			next_burst = el + 300 + rand_r(&seed) % 240;
		}
		if (leak_rate > 0 && el >= leak_after) {
			leak_debt += leak_rate / WORKERS * (el - last_leak);
			for (; leak_debt >= LEAK_BLOCK; leak_debt -= LEAK_BLOCK) {
				sink += ((unsigned char *)fill(LEAK_BLOCK, (int)leaked))[1]; // never freed
				leaked++;
			}
		}
		last_leak = el;
		usleep((useconds_t)(1e6 / rate));
	}
	return NULL;
}

int main(int argc, char **argv) {
	if (argc != 5) {
		fprintf(stderr, "usage: %s liveMiB cacheMiB leakRate leakAfterSeconds\n", argv[0]);
		return 2;
	}
	long live = atol(argv[1]);
	cache_slots = atol(argv[2]) * (long)MIB / ENTRY;
	leak_rate = atof(argv[3]);
	leak_after = atof(argv[4]);
	clock_gettime(CLOCK_MONOTONIC, &start);
	void **index = malloc(live * MIB / 2048 * sizeof *index);
	for (long i = 0; i < live * MIB / 2048; i++)
		index[i] = fill(2048, (int)i);
	cache = calloc(cache_slots, sizeof *cache);
	printf("index of %ld MiB built in %.1fs\n", live, elapsed());
	fflush(stdout);
	pthread_t t[WORKERS];
	for (uintptr_t i = 0; i < WORKERS; i++)
		pthread_create(&t[i], NULL, worker, (void *)i);
	for (;;) {
		sleep(60);
		pthread_mutex_lock(&mu);
		printf("t=%.0fs cache keys=%ld sink=%lu\n", elapsed(), cache_key, sink);
		pthread_mutex_unlock(&mu);
		fflush(stdout);
		sink += ((unsigned char *)index[rand() % (live * MIB / 2048)])[0];
	}
}
