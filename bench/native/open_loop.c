// open(PATH, O_RDONLY) + close in a loop; prints nanoseconds per iteration. The file guard's hooks run on
// every open (lsm/file_open, or the audit fallback's sys_exit_openat tracepoint).
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: open_loop PATH ITERATIONS\n");
		return 2;
	}
	long iterations = atol(argv[2]);
	struct timespec start, end;
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (long i = 0; i < iterations; i++) {
		int fd = open(argv[1], O_RDONLY);
		if (fd < 0) {
			perror(argv[1]);
			return 1;
		}
		close(fd);
	}
	clock_gettime(CLOCK_MONOTONIC, &end);
	double ns = (end.tv_sec - start.tv_sec) * 1e9 + (end.tv_nsec - start.tv_nsec);
	printf("%.1f\n", ns / iterations);
	return 0;
}
