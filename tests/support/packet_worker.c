/*
 * The packet worker of tests/host/packet_egress_test.ts, built by tests/support/packet_worker.ts. Run as
 * root with the path of a cgroup v2 directory:
 *
 *   packet_worker CGROUP_DIR
 *
 * It moves itself into a private network namespace (worker_netns.h: only `lo`, every address routed
 * through it, so no packet leaves the machine), lets every group open ping sockets there
 * (net.ipv4.ping_group_range is per namespace), joins the cgroup, prints "ready" and reads one case a line:
 *
 *   KIND ADDR PORT UID              KIND: ping (ICMP or ICMPv6 datagram socket, by ADDR's family),
 *                                   raw-icmp, raw-udp, hdrincl (IPPROTO_RAW: the test writes the IPv4
 *                                   header), raw6 (raw ICMPv6), udplite-connect, packet (AF_PACKET socket),
 *                                   sctp-connect, sctp-connectx (one-to-one), sctp-connectx-second (the
 *                                   destination second after 127.0.0.1), sctp-sendto (one-to-many),
 *                                   xdp (AF_XDP socket), sock-packet (socket(AF_INET, SOCK_PACKET)),
 *                                   udplite-bind, sctp-bind, sctp-bindx (a bind to ADDR:PORT; the bindx
 *                                   form is the setsockopt behind sctp_bindx)
 *
 * Each case runs in a fresh child with real and effective uid UID (and gid UID), sends one packet to ADDR
 * (and PORT where the protocol has ports) and waits up to WAIT_MS for proof of delivery: the echo reply for
 * ICMP, the datagram itself on a socket bound to ADDR:PORT otherwise (for SCTP: the association coming up,
 * or the message arriving at a one-to-many listener). It prints
 *
 *   PID STAGE ERRNO DELIVERED       STAGE: s (socket() failed), o (sent; ERRNO of the send, 0 on success),
 *                                   x (setup failed); DELIVERED: 1 when the proof arrived, else 0
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/if_ether.h>
#include <net/if.h>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/ip_icmp.h>
#include <netinet/udp.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef IPPROTO_UDPLITE
#define IPPROTO_UDPLITE 136
#endif

#define WAIT_MS 300
#define SOL_SCTP_ 132
#define SCTP_SOCKOPT_CONNECTX_ 110
#define SCTP_SOCKOPT_BINDX_ADD_ 100
#define AF_XDP_ 44
#define SOCK_PACKET_ 10
#define ECHO_ID 0x4145

static void die(const char *what)
{
	fprintf(stderr, "packet_worker: %s: %s\n", what, strerror(errno));
	exit(100);
}

#include "worker_netns.h"

static void write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY);
	if (fd < 0)
		die(path);
	if (write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		die(path);
	close(fd);
}

static unsigned short checksum(const void *data, size_t len)
{
	const unsigned short *words = data;
	unsigned long sum = 0;
	for (; len > 1; len -= 2)
		sum += *words++;
	if (len)
		sum += *(const unsigned char *)words;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return ~sum;
}

/* Whether `fd` becomes readable within WAIT_MS and a read gives something accepted by `match`. */
static int arrives(int fd, int (*match)(const unsigned char *, ssize_t))
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	for (int waited = 0; waited < WAIT_MS; waited += 10) {
		if (poll(&pfd, 1, 10) > 0) {
			unsigned char buf[2048];
			ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
			if (n > 0 && (!match || match(buf, n)))
				return 1;
		}
	}
	return 0;
}

/* An echo reply with our id, behind an IPv4 header (raw ICMP sockets get the header). */
static int ipv4_echo_reply(const unsigned char *buf, ssize_t n)
{
	if (n < 20 || n < (buf[0] & 0xf) * 4 + 8)
		return 0;
	const struct icmphdr *icmp = (const void *)(buf + (buf[0] & 0xf) * 4);
	return icmp->type == ICMP_ECHOREPLY && ntohs(icmp->un.echo.id) == ECHO_ID;
}

static int ipv6_echo_reply(const unsigned char *buf, ssize_t n)
{
	return n >= 8 && buf[0] == ICMP6_ECHO_REPLY;
}

/* A UDP or UDP-Lite socket bound to the destination, which the datagram proves delivery to. */
static int receiver(int protocol, const struct sockaddr *to, socklen_t len)
{
	int fd = socket(to->sa_family, SOCK_DGRAM, protocol);
	if (fd < 0 || bind(fd, to, len))
		return -1;
	return fd;
}

static int send_result(ssize_t sent)
{
	return sent < 0 ? errno : 0;
}

/* A one-to-one or one-to-many SCTP listener on the destination, or -1 (no SCTP in this kernel: setup fails). */
static int sctp_listener(int type, const struct sockaddr *to, socklen_t len)
{
	int fd = socket(to->sa_family, type, IPPROTO_SCTP);
	if (fd < 0 || bind(fd, to, len) || listen(fd, 8))
		return -1;
	return fd;
}

/* Whether a non-blocking connect on `fd` completes within WAIT_MS. */
static int connects(int fd)
{
	struct pollfd pfd = { .fd = fd, .events = POLLOUT };
	if (poll(&pfd, 1, WAIT_MS) <= 0)
		return 0;
	int error = 0;
	socklen_t size = sizeof(error);
	return getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &size) == 0 && error == 0;
}

/* SCTP: connect, connectx (the setsockopt behind sctp_connectx) or a one-to-many sendto to a new peer. */
static int sctp_case(const char *how, const struct sockaddr_storage *ss, socklen_t len, int *err, int *socket_failed)
{
	const struct sockaddr *to = (const struct sockaddr *)ss;
	int many = strcmp(how, "sendto") == 0;
	int listener = sctp_listener(many ? SOCK_SEQPACKET : SOCK_STREAM, to, len);
	if (listener < 0)
		return -1;
	int fd = socket(ss->ss_family, (many ? SOCK_SEQPACKET : SOCK_STREAM) | SOCK_NONBLOCK, IPPROTO_SCTP);
	if (fd < 0) {
		*socket_failed = 1;
		*err = errno;
		return 0;
	}
	int rc;
	if (many) {
		*err = send_result(sendto(fd, "x", 1, 0, to, len));
		return arrives(listener, 0);
	}
	if (strcmp(how, "connect") == 0)
		rc = connect(fd, to, len);
	else if (strcmp(how, "connectx") == 0)
		rc = setsockopt(fd, SOL_SCTP_, SCTP_SOCKOPT_CONNECTX_, to, len) < 0 ? -1 : 0;
	else if (strcmp(how, "connectx-second") == 0 && ss->ss_family == AF_INET) {
		/* Two peer addresses packed: 127.0.0.1 first, the destination second. */
		struct sockaddr_in pair[2];
		memcpy(&pair[1], ss, sizeof(pair[1]));
		memcpy(&pair[0], ss, sizeof(pair[0]));
		pair[0].sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		rc = setsockopt(fd, SOL_SCTP_, SCTP_SOCKOPT_CONNECTX_, pair, sizeof(pair)) < 0 ? -1 : 0;
	}
	else
		return -1;
	*err = rc < 0 && errno != EINPROGRESS ? errno : 0;
	return *err == 0 && connects(fd);
}

/* Runs one case; writes the send's errno to *err and returns whether delivery was proven (-1: setup failed). */
static int run_case(const char *kind, const struct sockaddr_storage *ss, socklen_t len, int port, int *err,
		    int *socket_failed)
{
	const struct sockaddr *to = (const struct sockaddr *)ss;
	int v6 = ss->ss_family == AF_INET6;
	unsigned char packet[64];
	memset(packet, 0, sizeof(packet));
	int fd, proof = -1;
	*socket_failed = 0;
	if (strcmp(kind, "ping") == 0 || strcmp(kind, "raw-icmp") == 0 || strcmp(kind, "raw6") == 0) {
		int raw = strcmp(kind, "ping") != 0;
		fd = socket(ss->ss_family, raw ? SOCK_RAW : SOCK_DGRAM, v6 ? IPPROTO_ICMPV6 : IPPROTO_ICMP);
		if (fd < 0)
			goto socket_failed;
		struct icmphdr *icmp = (struct icmphdr *)packet;
		icmp->type = v6 ? ICMP6_ECHO_REQUEST : ICMP_ECHO;
		icmp->un.echo.id = htons(ECHO_ID);
		icmp->un.echo.sequence = htons(1);
		if (!v6)
			icmp->checksum = checksum(packet, 16);
		*err = send_result(sendto(fd, packet, 16, 0, to, len));
		/* A ping socket gets its replies alone (ICMP header first); a raw one every ICMP message. */
		return arrives(fd, !raw ? 0 : v6 ? ipv6_echo_reply : ipv4_echo_reply);
	}
	if (strcmp(kind, "raw-udp") == 0 || strcmp(kind, "hdrincl") == 0 || strcmp(kind, "udplite-connect") == 0) {
		int lite = strcmp(kind, "udplite-connect") == 0;
		proof = receiver(lite ? IPPROTO_UDPLITE : IPPROTO_UDP, to, len);
		if (proof < 0)
			return -1;
		if (lite) {
			fd = socket(ss->ss_family, SOCK_DGRAM, IPPROTO_UDPLITE);
			if (fd < 0)
				goto socket_failed;
			if (connect(fd, to, len))
				*err = errno;
			else
				*err = send_result(send(fd, "x", 1, 0));
			return arrives(proof, 0);
		}
		int hdrincl = strcmp(kind, "hdrincl") == 0;
		if (v6)
			return -1;
		fd = socket(AF_INET, SOCK_RAW, hdrincl ? IPPROTO_RAW : IPPROTO_UDP);
		if (fd < 0)
			goto socket_failed;
		const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
		unsigned char *payload = packet;
		if (hdrincl) {
			struct iphdr *ip = (struct iphdr *)packet;
			ip->version = 4;
			ip->ihl = 5;
			ip->ttl = 64;
			ip->protocol = IPPROTO_UDP;
			ip->tot_len = htons(20 + 9);
			ip->saddr = htonl(INADDR_LOOPBACK);
			ip->daddr = sin->sin_addr.s_addr;
			payload += 20;
		}
		struct udphdr *udp = (struct udphdr *)payload;
		udp->source = htons(40000);
		udp->dest = htons(port);
		udp->len = htons(9);
		payload[8] = 'x';
		*err = send_result(sendto(fd, packet, (hdrincl ? 20 : 0) + 9, 0, to, len));
		return arrives(proof, 0);
	}
	if (strcmp(kind, "udplite-bind") == 0 || strcmp(kind, "sctp-bind") == 0 || strcmp(kind, "sctp-bindx") == 0) {
		int sctp = strncmp(kind, "sctp-", 5) == 0;
		fd = socket(ss->ss_family, sctp ? SOCK_STREAM : SOCK_DGRAM, sctp ? IPPROTO_SCTP : IPPROTO_UDPLITE);
		if (fd < 0)
			goto socket_failed;
		if (strcmp(kind, "sctp-bindx") == 0)
			*err = setsockopt(fd, SOL_SCTP_, SCTP_SOCKOPT_BINDX_ADD_, to, len) < 0 ? errno : 0;
		else
			*err = bind(fd, to, len) < 0 ? errno : 0;
		return 0;
	}
	if (strncmp(kind, "sctp-", 5) == 0)
		return sctp_case(kind + 5, ss, len, err, socket_failed);
	if (strcmp(kind, "packet") == 0 || strcmp(kind, "xdp") == 0 || strcmp(kind, "sock-packet") == 0) {
		if (strcmp(kind, "xdp") == 0)
			fd = socket(AF_XDP_, SOCK_RAW, 0);
		else if (strcmp(kind, "sock-packet") == 0)
			fd = socket(AF_INET, SOCK_PACKET_, htons(ETH_P_ALL));
		else
			fd = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
		if (fd < 0)
			goto socket_failed;
		*err = 0;
		return 0;
	}
	return -1;
socket_failed:
	*socket_failed = 1;
	*err = errno;
	return 0;
}

static int child(const char *kind, const char *addr, int port, unsigned uid)
{
	if (setgroups(0, NULL) || setresgid(uid, uid, uid) || setresuid(uid, uid, uid))
		return 127;
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	socklen_t len;
	if (strchr(addr, ':')) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = strcmp(kind, "udplite-connect") == 0 || strstr(kind, "bind") ? htons(port) : 0;
		if (inet_pton(AF_INET6, addr, &sin6->sin6_addr) != 1)
			return 126;
		len = sizeof(*sin6);
	} else {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
		sin->sin_family = AF_INET;
		/* IPv4 raw sockets ignore the port; the receiver binds to it. */
		sin->sin_port = strcmp(kind, "ping") == 0 ? 0 : htons(port);
		if (inet_pton(AF_INET, addr, &sin->sin_addr) != 1)
			return 126;
		len = sizeof(*sin);
	}
	int err = 0, socket_failed = 0;
	int delivered = run_case(kind, &ss, len, port, &err, &socket_failed);
	if (delivered < 0)
		return 125;
	/* Exit status: bit 7 delivered, bit 6 socket() failed, bits 0-5 the errno (all fit: EPERM, EACCES...). */
	return (delivered ? 0x80 : 0) | (socket_failed ? 0x40 : 0) | (err & 0x3f);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: packet_worker CGROUP_DIR\n");
		return 2;
	}
	private_netns();
	write_file("/proc/sys/net/ipv4/ping_group_range", "0 2147483647");
	char path[4096];
	snprintf(path, sizeof(path), "%s/cgroup.procs", argv[1]);
	char pid[32];
	snprintf(pid, sizeof(pid), "%d", getpid());
	write_file(path, pid);
	printf("ready\n");
	fflush(stdout);
	char line[512];
	while (fgets(line, sizeof(line), stdin)) {
		char kind[32], addr[128];
		int port;
		unsigned uid;
		if (sscanf(line, " %31s %127s %d %u", kind, addr, &port, &uid) != 4) {
			fprintf(stderr, "packet_worker: bad line: %s", line);
			return 2;
		}
		pid_t child_pid = fork();
		if (child_pid < 0)
			die("fork");
		if (child_pid == 0)
			_exit(child(kind, addr, port, uid));
		int status;
		if (waitpid(child_pid, &status, 0) != child_pid)
			die("waitpid");
		int code = WEXITSTATUS(status);
		if (!WIFEXITED(status) || (code >= 125 && code <= 127))
			printf("%d x %d 0\n", child_pid, WIFEXITED(status) ? code : -1);
		else
			printf("%d %c %d %d\n", child_pid, code & 0x40 ? 's' : 'o', code & 0x3f, code >> 7);
		fflush(stdout);
	}
	return 0;
}
