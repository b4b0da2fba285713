/*
 * The MPTCP peers of tests/host/mptcp_test.ts, built by tests/support/mptcp_peer.ts. Run as root:
 *
 *   mptcp_peer SERVER_NS CLIENT_NS CGROUP_DIR UID ADDR ANNOUNCED PORT
 *
 * SERVER_NS and CLIENT_NS are network namespace files (/run/netns/NAME). The server side (this process,
 * in SERVER_NS) listens for MPTCP on PORT and watches the receiving interface (veth-srv) with an AF_PACKET
 * socket. A client (a child in CLIENT_NS, in CGROUP_DIR, with uid and gid UID) connects with MPTCP to
 * ADDR:PORT and sends a little data; the server's path manager then announces ANNOUNCED (ADD_ADDR, `ip
 * mptcp endpoint ... signal`), and the client's kernel opens a subflow to it from a kernel worker.
 * After WAIT_MS the server prints one line:
 *
 *   CLIENT_PID SYNS BYTES
 *
 * SYNS: TCP SYNs to ANNOUNCED seen on the receiving veth (the subflow's attempts); BYTES: what the
 * server read on the connection (the first subflow works either way).
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
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef IPPROTO_MPTCP
#define IPPROTO_MPTCP 262
#endif
#define WAIT_MS 800

static void die(const char *what)
{
	fprintf(stderr, "mptcp_peer: %s: %s\n", what, strerror(errno));
	exit(100);
}

static void enter_netns(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || setns(fd, CLONE_NEWNET))
		die(path);
	close(fd);
}

static long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct sockaddr_in address(const char *text, int port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port) };
	if (inet_pton(AF_INET, text, &sin.sin_addr) != 1) {
		fprintf(stderr, "mptcp_peer: bad address %s\n", text);
		exit(2);
	}
	return sin;
}

/* The client: in its namespace, cgroup and uid, an MPTCP connection to ADDR:PORT that stays open. */
static int client(const char *ns, const char *cgroup, unsigned uid, struct sockaddr_in to)
{
	enter_netns(ns);
	char path[4096], pid[32];
	snprintf(path, sizeof(path), "%s/cgroup.procs", cgroup);
	snprintf(pid, sizeof(pid), "%d", getpid());
	int fd = open(path, O_WRONLY);
	if (fd < 0 || write(fd, pid, strlen(pid)) < 0)
		die(path);
	close(fd);
	if (setgroups(0, NULL) || setresgid(uid, uid, uid) || setresuid(uid, uid, uid))
		die("setresuid");
	int sock = socket(AF_INET, SOCK_STREAM, IPPROTO_MPTCP);
	if (sock < 0)
		die("socket(IPPROTO_MPTCP)");
	if (connect(sock, (struct sockaddr *)&to, sizeof(to)))
		die("connect");
	if (write(sock, "hello", 5) != 5)
		die("write");
	/* Stay connected while the path manager adds the announced subflow. */
	usleep(WAIT_MS * 1000);
	close(sock);
	return 0;
}

/* Whether an IPv4 frame is a TCP SYN (no ACK) to `announced`. */
static int syn_to(const unsigned char *frame, ssize_t n, in_addr_t announced)
{
	const struct iphdr *ip = (const void *)frame;
	if (n < (ssize_t)sizeof(*ip) || ip->version != 4 || ip->protocol != IPPROTO_TCP || ip->daddr != announced)
		return 0;
	if (n < ip->ihl * 4 + (ssize_t)sizeof(struct tcphdr))
		return 0;
	const struct tcphdr *tcp = (const void *)(frame + ip->ihl * 4);
	return tcp->syn && !tcp->ack;
}

int main(int argc, char **argv)
{
	if (argc != 8) {
		fprintf(stderr, "usage: mptcp_peer SERVER_NS CLIENT_NS CGROUP_DIR UID ADDR ANNOUNCED PORT\n");
		return 2;
	}
	int port = atoi(argv[7]);
	struct sockaddr_in to = address(argv[5], port);
	in_addr_t announced = address(argv[6], 0).sin_addr.s_addr;
	enter_netns(argv[1]);
	int capture = socket(AF_PACKET, SOCK_DGRAM, htons(ETH_P_IP));
	if (capture < 0)
		die("socket(AF_PACKET)");
	struct sockaddr_ll ll = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_IP),
				  .sll_ifindex = if_nametoindex("veth-srv") };
	if (!ll.sll_ifindex || bind(capture, (struct sockaddr *)&ll, sizeof(ll)))
		die("bind veth-srv");
	int listener = socket(AF_INET, SOCK_STREAM, IPPROTO_MPTCP);
	struct sockaddr_in any = { .sin_family = AF_INET, .sin_port = htons(port) };
	int one = 1;
	if (listener < 0 || setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(listener, (struct sockaddr *)&any, sizeof(any)) || listen(listener, 4))
		die("listen");
	pid_t child = fork();
	if (child < 0)
		die("fork");
	if (child == 0)
		_exit(client(argv[2], argv[3], (unsigned)atoi(argv[4]), to));
	int syns = 0, bytes = 0, conn = -1;
	struct pollfd fds[3] = { { .fd = capture, .events = POLLIN }, { .fd = listener, .events = POLLIN },
				 { .fd = -1, .events = POLLIN } };
	for (long end = now_ms() + WAIT_MS + 300; now_ms() < end;) {
		if (poll(fds, 3, 20) <= 0)
			continue;
		unsigned char buf[2048];
		if (fds[0].revents & POLLIN) {
			ssize_t n = recv(capture, buf, sizeof(buf), MSG_DONTWAIT);
			if (n > 0 && syn_to(buf, n, announced))
				syns++;
		}
		if ((fds[1].revents & POLLIN) && conn < 0) {
			conn = accept(listener, 0, 0);
			fds[2].fd = conn;
		}
		if (conn >= 0 && (fds[2].revents & POLLIN)) {
			ssize_t n = recv(conn, buf, sizeof(buf), MSG_DONTWAIT);
			if (n > 0)
				bytes += n;
		}
	}
	int status;
	if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "mptcp_peer: client failed (status %d)\n", status);
		return 1;
	}
	printf("%d %d %d\n", child, syns, bytes);
	return 0;
}
