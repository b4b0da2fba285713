/*
 * TCP throughput through loopback for bench/suites/connect.ts: a receiver (a forked child, in the same
 * cgroup) reads until EOF what the sender writes in 64 KiB chunks. Prints the nanoseconds from connect
 * to the receiver's EOF.
 *
 *   tcp_stream BYTES
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
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
	if (argc != 2)
		return 2;
	long long total = atoll(argv[1]);
	int listener = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(addr);
	if (listener < 0 || bind(listener, (struct sockaddr *)&addr, len) || listen(listener, 1) ||
	    getsockname(listener, (struct sockaddr *)&addr, &len)) {
		perror("listener");
		return 1;
	}
	pid_t child = fork();
	if (child == 0) {
		int fd = accept(listener, NULL, NULL);
		static char buf[1 << 16];
		while (fd >= 0 && read(fd, buf, sizeof(buf)) > 0)
			;
		_exit(fd < 0);
	}
	close(listener);
	static char chunk[1 << 16];
	memset(chunk, 'x', sizeof(chunk));
	long long start = now_ns();
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&addr, len)) {
		perror("connect");
		return 1;
	}
	for (long long sent = 0; sent < total;) {
		ssize_t n = write(fd, chunk, sizeof(chunk));
		if (n <= 0) {
			perror("write");
			return 1;
		}
		sent += n;
	}
	close(fd);
	int status;
	waitpid(child, &status, 0);
	if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		fprintf(stderr, "receiver failed\n");
		return 1;
	}
	printf("%lld\n", now_ns() - start);
	return 0;
}
