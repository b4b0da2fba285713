// socket + connect + close in a loop against 127.0.0.1:PORT; prints nanoseconds per iteration.
//   tcp: the port is closed, so each connect is refused at once (no TIME_WAIT build-up);
//   udp: connect only sets the default destination: the cheapest path through cgroup/connect4.
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: connect_loop tcp|udp PORT ITERATIONS\n");
		return 2;
	}
	int type = argv[1][0] == 'u' ? SOCK_DGRAM : SOCK_STREAM;
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[2])) };
	inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
	long iterations = atol(argv[3]);
	struct timespec start, end;
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (long i = 0; i < iterations; i++) {
		int fd = socket(AF_INET, type, 0);
		if (fd < 0) {
			perror("socket");
			return 1;
		}
		connect(fd, (struct sockaddr *)&addr, sizeof(addr));
		close(fd);
	}
	clock_gettime(CLOCK_MONOTONIC, &end);
	double ns = (end.tv_sec - start.tv_sec) * 1e9 + (end.tv_nsec - start.tv_nsec);
	printf("%.1f\n", ns / iterations);
	return 0;
}
