/*
 * The egress hot paths for bench/suites/connect.ts, on 127.0.0.1 in the caller's network namespace. Prints
 * nanoseconds per iteration.
 *
 *   connect_loop tcp PORT ITERATIONS   socket + connect + close; PORT is closed, so each connect is refused
 *                                      at once (no TIME_WAIT build-up). Any other outcome (EPERM from a
 *                                      rule, a connection) fails: the rules must not match.
 *   connect_loop udp ITERATIONS        sendto without connect from one socket to a bound socket that never
 *                                      reads (its queue fills and the kernel drops the rest: no ICMP).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static int tcp(int port, long iterations)
{
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons(port) };
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	double start = now_ns();
	for (long i = 0; i < iterations; i++) {
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		if (fd < 0) {
			perror("socket");
			return 1;
		}
		if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0 || errno != ECONNREFUSED) {
			fprintf(stderr, "connect: %s (want: connection refused)\n", strerror(errno));
			return 1;
		}
		close(fd);
	}
	printf("%.1f\n", (now_ns() - start) / iterations);
	return 0;
}

static int udp(long iterations)
{
	struct sockaddr_in addr = { .sin_family = AF_INET };
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t len = sizeof(addr);
	int sink = socket(AF_INET, SOCK_DGRAM, 0);
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (sink < 0 || fd < 0 || bind(sink, (struct sockaddr *)&addr, len) ||
	    getsockname(sink, (struct sockaddr *)&addr, &len)) {
		perror("udp sockets");
		return 1;
	}
	char payload[32] = { 0 };
	double start = now_ns();
	for (long i = 0; i < iterations; i++) {
		if (sendto(fd, payload, sizeof(payload), 0, (struct sockaddr *)&addr, len) != sizeof(payload)) {
			fprintf(stderr, "sendto: %s\n", strerror(errno));
			return 1;
		}
	}
	printf("%.1f\n", (now_ns() - start) / iterations);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 4 && strcmp(argv[1], "tcp") == 0)
		return tcp(atoi(argv[2]), atol(argv[3]));
	if (argc == 3 && strcmp(argv[1], "udp") == 0)
		return udp(atol(argv[2]));
	fprintf(stderr, "usage: connect_loop tcp PORT ITERATIONS | udp ITERATIONS\n");
	return 2;
}
