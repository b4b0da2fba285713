/*
 * UDP-Lite over a real interface, for tests/host/xdp_udplite_test.ts (run with `ip netns exec`):
 *
 *   udplite_probe recv PORT MS      binds [::]:PORT, prints "received" when a datagram comes within MS
 *                                   milliseconds, else "timeout"; prints "ready" once bound
 *   udplite_probe send ADDR PORT    sends one datagram to ADDR:PORT (IPv4 or IPv6), prints "sent" or errno
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef IPPROTO_UDPLITE
#define IPPROTO_UDPLITE 136
#endif

int main(int argc, char **argv)
{
	if (argc == 4 && strcmp(argv[1], "recv") == 0) {
		int fd = socket(AF_INET6, SOCK_DGRAM, IPPROTO_UDPLITE);
		struct sockaddr_in6 any = { .sin6_family = AF_INET6, .sin6_port = htons(atoi(argv[2])) };
		int off = 0;
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));
		if (fd < 0 || bind(fd, (struct sockaddr *)&any, sizeof(any))) {
			perror("bind");
			return 1;
		}
		printf("ready\n");
		fflush(stdout);
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		printf(poll(&pfd, 1, atoi(argv[3])) > 0 ? "received\n" : "timeout\n");
		return 0;
	}
	if (argc == 4 && strcmp(argv[1], "send") == 0) {
		struct sockaddr_storage ss;
		memset(&ss, 0, sizeof(ss));
		socklen_t len;
		if (strchr(argv[2], ':')) {
			struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
			sin6->sin6_family = AF_INET6;
			sin6->sin6_port = htons(atoi(argv[3]));
			inet_pton(AF_INET6, argv[2], &sin6->sin6_addr);
			len = sizeof(*sin6);
		} else {
			struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
			sin->sin_family = AF_INET;
			sin->sin_port = htons(atoi(argv[3]));
			inet_pton(AF_INET, argv[2], &sin->sin_addr);
			len = sizeof(*sin);
		}
		int fd = socket(ss.ss_family, SOCK_DGRAM, IPPROTO_UDPLITE);
		if (fd < 0 || sendto(fd, "x", 1, 0, (struct sockaddr *)&ss, len) < 0) {
			printf("%s\n", strerror(errno));
			return 1;
		}
		printf("sent\n");
		return 0;
	}
	fprintf(stderr, "usage: udplite_probe recv PORT MS | send ADDR PORT\n");
	return 2;
}
