/*
 * write_pace RATE SECONDS: write(2)s of one byte to /dev/null at RATE per second (0: as fast as it can) for
 * SECONDS, paced against CLOCK_MONOTONIC in batches of 64; prints "WRITES ELAPSED_NS". Run in the cgroup the
 * event_flood fixture watches, each write becomes that many ring buffer records (bench/suites/events.ts).
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: write_pace RATE SECONDS\n");
		return 2;
	}
	double rate = atof(argv[1]);
	long long duration = (long long)(atof(argv[2]) * 1e9);
	int fd = open("/dev/null", O_WRONLY);
	if (fd < 0) {
		perror("open /dev/null");
		return 1;
	}
	char byte = 0;
	long long writes = 0;
	long long start = now_ns(), elapsed = 0;
	while ((elapsed = now_ns() - start) < duration) {
		if (rate > 0 && writes >= (long long)(rate * elapsed / 1e9)) {
			struct timespec pause = { 0, 20000 };
			nanosleep(&pause, 0);
			continue;
		}
		for (int i = 0; i < 64; i++) {
			if (write(fd, &byte, 1) != 1) {
				perror("write");
				return 1;
			}
		}
		writes += 64;
	}
	printf("%lld %lld\n", writes, elapsed);
	return 0;
}
