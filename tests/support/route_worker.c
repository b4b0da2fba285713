/*
 * The route worker of tests/host/route_test.ts, built by tests/support/route_worker.ts. Run as root:
 *
 *   route_worker CGROUP_DIR SENDER_NETNS RECEIVER_NETNS RECEIVER_DEV
 *
 * It opens a capture (an AF_PACKET socket) on RECEIVER_DEV inside RECEIVER_NETNS, then moves into
 * SENDER_NETNS and the cgroup, prints "ready" and reads one case a line. With SENDER_NETNS "private" it
 * moves into a private namespace of its own instead (worker_netns.h: every address routed through `lo`)
 * and captures on RECEIVER_DEV there (RECEIVER_NETNS is ignored):
 *
 *   HOW KIND PROTO DEST PORT HOPS UID
 *
 *   HOW    sockopt (setsockopt, then a plain sendto or connect), cmsg (sendmsg with ancillary data) or
 *          clear (no route: setsockopt clears the route option, sets IP_TOS or IPV6_TCLASS and a
 *          SO_RCVBUF whose buffer is longer than a page, each of which must succeed, then sends)
 *   KIND   srh (IPv6 segment routing header, type 4), rthdr2 (IPv6 type 2 routing header),
 *          lsrr, ssrr (IPv4 source route options)
 *   PROTO  udp or tcp (a non-blocking connect: the SYN carries the route)
 *   DEST   the address the socket calls judge; PORT its port
 *   HOPS   the addresses the route names first, comma-separated, in the order the packet visits them
 *   UID    real and effective uid (and gid) of the child that runs the case
 *
 * Each case runs in a fresh child. The worker then watches the capture for WAIT_MS and prints
 *
 *   PID OPT_ERRNO SEND_ERRNO WIRE
 *
 * OPT_ERRNO: errno of the setsockopt (0: it succeeded, or cmsg); SEND_ERRNO: of the sendto, sendmsg or
 * connect (EINPROGRESS counts as 0); WIRE: 1 when a packet to the route's first hop with PORT as its
 * destination port arrived on RECEIVER_DEV (the packet went where the route sent it), else 0. A line
 * "PID x CODE" says the child could not set the case up.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define WAIT_MS 300
#define MAX_HOPS 8
#define IPV6_RTHDR_ 57
#define IPOPT_LSRR_ 0x83
#define IPOPT_SSRR_ 0x89

static void die(const char *what)
{
	fprintf(stderr, "route_worker: %s: %s\n", what, strerror(errno));
	exit(100);
}

#include "worker_netns.h"

static void enter_netns(const char *path)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0 || setns(fd, CLONE_NEWNET))
		die(path);
	close(fd);
}

static void join_cgroup(const char *dir)
{
	char path[4096], pid[32];
	snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
	snprintf(pid, sizeof(pid), "%d", getpid());
	int fd = open(path, O_WRONLY);
	if (fd < 0 || write(fd, pid, strlen(pid)) != (ssize_t)strlen(pid))
		die(path);
	close(fd);
}

/* A cooked capture of every packet the receiver's device gets (the IP packet, no link header). */
static int open_capture(const char *dev)
{
	int fd = socket(AF_PACKET, SOCK_DGRAM | SOCK_NONBLOCK, htons(ETH_P_ALL));
	if (fd < 0)
		die("capture socket");
	struct sockaddr_ll ll = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL) };
	ll.sll_ifindex = if_nametoindex(dev);
	if (!ll.sll_ifindex || bind(fd, (struct sockaddr *)&ll, sizeof(ll)))
		die(dev);
	return fd;
}

/* The destination port of a captured IP packet whose header destination is `hop` (16 bytes, or 4), or -1. */
static int port_to(const unsigned char *p, ssize_t n, const unsigned char *hop, int v6)
{
	if (!v6) {
		if (n < 20 || p[0] >> 4 != 4 || memcmp(p + 16, hop, 4))
			return -1;
		int l4 = (p[0] & 0xf) * 4;
		return n >= l4 + 4 ? p[l4 + 2] << 8 | p[l4 + 3] : -1;
	}
	if (n < 40 || p[0] >> 4 != 6 || memcmp(p + 24, hop, 16))
		return -1;
	int next = p[6], l4 = 40;
	for (int i = 0; i < 4 && (next == 0 || next == 43 || next == 60); i++) {
		if (n < l4 + 2)
			return -1;
		next = p[l4];
		l4 += (p[l4 + 1] + 1) * 8;
	}
	if (next != IPPROTO_TCP && next != IPPROTO_UDP)
		return -1;
	return n >= l4 + 4 ? p[l4 + 2] << 8 | p[l4 + 3] : -1;
}

/* Whether the capture gets, within WAIT_MS, a packet to `hop` for `port`. */
static int on_wire(int capture, const unsigned char *hop, int v6, int port)
{
	struct pollfd pfd = { .fd = capture, .events = POLLIN };
	for (int waited = 0; waited < WAIT_MS; waited += 10) {
		if (poll(&pfd, 1, 10) <= 0)
			continue;
		unsigned char buf[2048];
		struct sockaddr_ll from;
		socklen_t size = sizeof(from);
		ssize_t n;
		while ((n = recvfrom(capture, buf, sizeof(buf), 0, (struct sockaddr *)&from, &size)) > 0) {
			if (from.sll_pkttype != PACKET_OUTGOING && port_to(buf, n, hop, v6) == port)
				return 1;
			size = sizeof(from);
		}
	}
	return 0;
}

static void drain(int capture)
{
	unsigned char buf[2048];
	while (recv(capture, buf, sizeof(buf), MSG_DONTWAIT) > 0)
		;
}

/* The route as the kernel takes it from setsockopt or a cmsg; returns its length, 0 on bad input. */
static size_t build_route(const char *kind, unsigned char hops[][16], int count, unsigned char *out)
{
	if (!strcmp(kind, "srh")) {
		/* segments[0] is the final destination (the kernel puts DEST there), the first hop is last. */
		int segments = count + 1;
		memset(out, 0, 8 + 16 * segments);
		out[1] = 2 * segments; /* hdrlen, in 8-byte units after the first 8 */
		out[2] = 4;            /* type: segment routing */
		out[3] = segments - 1; /* segments_left: the first hop */
		out[4] = segments - 1; /* last_entry */
		for (int i = 0; i < count; i++)
			memcpy(out + 8 + 16 * (segments - 1 - i), hops[i], 16);
		return 8 + 16 * segments;
	}
	if (!strcmp(kind, "rthdr2")) {
		memset(out, 0, 24);
		out[1] = 2; /* one address */
		out[2] = 2; /* type 2 (mobile IPv6): accepted in ancillary data without privilege */
		out[3] = 1;
		memcpy(out + 8, hops[0], 16);
		return 24;
	}
	if (!strcmp(kind, "lsrr") || !strcmp(kind, "ssrr")) {
		/* NOP, then the option: the kernel takes the first address as the first hop and appends DEST. */
		out[0] = 1;
		out[1] = !strcmp(kind, "lsrr") ? IPOPT_LSRR_ : IPOPT_SSRR_;
		out[2] = 3 + 4 * (count + 1);
		out[3] = 4;
		for (int i = 0; i < count; i++)
			memcpy(out + 4 + 4 * i, hops[i], 4);
		memset(out + 4 + 4 * count, 0, 4);
		return 4 + 4 * (count + 1);
	}
	return 0;
}

struct outcome {
	int opt_errno;
	int send_errno;
};

static int run_case(const char *how, const char *kind, int tcp, const struct sockaddr_storage *to, socklen_t len,
		    unsigned char hops[][16], int count, struct outcome *out)
{
	int v6 = to->ss_family == AF_INET6;
	unsigned char route[256];
	size_t size = build_route(kind, hops, count, route);
	if (!size)
		return -1;
	int fd = socket(to->ss_family, (tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -1;
	int level = v6 ? IPPROTO_IPV6 : IPPROTO_IP;
	int name = v6 ? IPV6_RTHDR_ : IP_OPTIONS;
	if (!strcmp(how, "clear")) {
		static char big[8192];
		int tos = 0x10;
		*(int *)big = 65536;
		if (setsockopt(fd, level, name, NULL, 0) ||
		    setsockopt(fd, level, v6 ? IPV6_TCLASS : IP_TOS, &tos, sizeof(tos)) ||
		    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, big, sizeof(big)))
			out->opt_errno = errno;
	} else if (!strcmp(how, "sockopt")) {
		if (setsockopt(fd, level, name, route, size))
			out->opt_errno = errno;
	}
	if (!strcmp(how, "sockopt") || !strcmp(how, "clear")) {
		int rc = tcp ? connect(fd, (const struct sockaddr *)to, len)
			     : sendto(fd, "x", 1, 0, (const struct sockaddr *)to, len);
		out->send_errno = rc < 0 && errno != EINPROGRESS ? errno : 0;
		return 0;
	}
	if (strcmp(how, "cmsg") || tcp)
		return -1;
	union {
		struct cmsghdr align;
		unsigned char bytes[CMSG_SPACE(256)];
	} control;
	memset(&control, 0, sizeof(control));
	struct iovec iov = { .iov_base = "x", .iov_len = 1 };
	struct msghdr msg = { .msg_name = (void *)to, .msg_namelen = len, .msg_iov = &iov, .msg_iovlen = 1,
			      .msg_control = control.bytes, .msg_controllen = CMSG_SPACE(size) };
	struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
	cmsg->cmsg_level = level;
	cmsg->cmsg_type = v6 ? IPV6_RTHDR_ : IP_RETOPTS;
	cmsg->cmsg_len = CMSG_LEN(size);
	memcpy(CMSG_DATA(cmsg), route, size);
	out->send_errno = sendmsg(fd, &msg, 0) < 0 ? errno : 0;
	return 0;
}

static int child(int result_fd, const char *how, const char *kind, const char *proto, const char *dest, int port,
		 char *hop_list, unsigned uid)
{
	if (setgroups(0, NULL) || setresgid(uid, uid, uid) || setresuid(uid, uid, uid))
		return 127;
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	socklen_t len;
	int v6 = strchr(dest, ':') != NULL;
	if (v6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		if (inet_pton(AF_INET6, dest, &sin6->sin6_addr) != 1)
			return 126;
		len = sizeof(*sin6);
	} else {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		if (inet_pton(AF_INET, dest, &sin->sin_addr) != 1)
			return 126;
		len = sizeof(*sin);
	}
	unsigned char hops[MAX_HOPS][16];
	int count = 0;
	for (char *hop = strtok(hop_list, ","); hop && count < MAX_HOPS; hop = strtok(NULL, ","), count++) {
		if (inet_pton(v6 ? AF_INET6 : AF_INET, hop, hops[count]) != 1)
			return 126;
	}
	struct outcome out = { 0, 0 };
	if (!count || run_case(how, kind, !strcmp(proto, "tcp"), &ss, len, hops, count, &out))
		return 125;
	if (write(result_fd, &out, sizeof(out)) != sizeof(out))
		return 124;
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: route_worker CGROUP_DIR SENDER_NETNS RECEIVER_NETNS RECEIVER_DEV\n");
		return 2;
	}
	int capture;
	if (!strcmp(argv[2], "private")) {
		private_netns();
		capture = open_capture(argv[4]);
	} else {
		enter_netns(argv[3]);
		capture = open_capture(argv[4]);
		enter_netns(argv[2]);
	}
	join_cgroup(argv[1]);
	printf("ready\n");
	fflush(stdout);
	char line[1024];
	while (fgets(line, sizeof(line), stdin)) {
		char how[16], kind[16], proto[8], dest[64], hop_list[512];
		int port;
		unsigned uid;
		if (sscanf(line, " %15s %15s %7s %63s %d %511s %u", how, kind, proto, dest, &port, hop_list, &uid) != 7) {
			fprintf(stderr, "route_worker: bad line: %s", line);
			return 2;
		}
		int v6 = strchr(dest, ':') != NULL;
		unsigned char first[16];
		char first_text[64];
		snprintf(first_text, sizeof(first_text), "%.*s", (int)strcspn(hop_list, ","), hop_list);
		if (inet_pton(v6 ? AF_INET6 : AF_INET, first_text, first) != 1) {
			fprintf(stderr, "route_worker: bad hop: %s\n", first_text);
			return 2;
		}
		int pipefd[2];
		if (pipe(pipefd))
			die("pipe");
		drain(capture);
		pid_t child_pid = fork();
		if (child_pid < 0)
			die("fork");
		if (child_pid == 0) {
			close(pipefd[0]);
			_exit(child(pipefd[1], how, kind, proto, dest, port, hop_list, uid));
		}
		close(pipefd[1]);
		struct outcome out;
		ssize_t got = read(pipefd[0], &out, sizeof(out));
		close(pipefd[0]);
		int wire = on_wire(capture, first, v6, port);
		int status;
		if (waitpid(child_pid, &status, 0) != child_pid)
			die("waitpid");
		if (!WIFEXITED(status) || WEXITSTATUS(status) || got != sizeof(out))
			printf("%d x %d\n", child_pid, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
		else
			printf("%d %d %d %d\n", child_pid, out.opt_errno, out.send_errno, wire);
		fflush(stdout);
	}
	return 0;
}
