/*
 * The socket worker of the differential test (tests/host/differential_test.ts), built by
 * tests/support/sock_worker.ts. Run as root with the path of a cgroup v2 directory:
 *
 *   sock_worker CGROUP_DIR
 *
 * It moves itself into a private network namespace where only `lo` is up, with a default route through
 * `lo` (and every IPv6 address local) so that a UDP-Lite connect succeeds and its datagram reaches the
 * packet hooks: every packet comes back in on `lo`, so none leaves the machine.
 * It joins the cgroup, prints "ready" and then reads one case a line on stdin:
 *
 *   OP PROTO ADDR PORT UID GID      OP: c (connect), s (sendto, unconnected), b (bind)
 *                                   PROTO: tcp, udp or udplite; ADDR: IPv4 or IPv6 text
 *
 * Each case runs in a fresh child (a pid of its own, so the kernel's per-pid rate limit never holds an
 * event back and every event names its case) with effective and real ids UID and GID and no
 * supplementary groups; the socket is non-blocking. For each line it prints
 *
 *   PID STAGE ERRNO                 STAGE: s (socket() failed), o (the operation; ERRNO 0 on success)
 *                                   or x (the child could not set up: bad ids or address)
 *
 * The cgroup hooks run before routing and before the privileged-port check, so EPERM is their answer.
 * UDP-Lite `c` connects and then sends one datagram (its connect never reaches the connect hooks; the
 * packet hook drops the datagram with EPERM): the errno is the connect's, else the send's.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
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

static void die(const char *what)
{
	fprintf(stderr, "sock_worker: %s: %s\n", what, strerror(errno));
	exit(100);
}

#include "worker_netns.h"

static void join_cgroup(const char *dir)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
	int fd = open(path, O_WRONLY);
	if (fd < 0)
		die("open cgroup.procs");
	char pid[32];
	int n = snprintf(pid, sizeof(pid), "%d", getpid());
	if (write(fd, pid, n) != n)
		die("write cgroup.procs");
	close(fd);
}

/* The child: one case; exits with 0, or with errno (+ 128 when socket() itself failed); 125-127: setup failed. */
static int run_case(char op, const char *proto, const char *addr, int port, unsigned uid, unsigned gid)
{
	if (setgroups(0, NULL) || setresgid(gid, gid, gid) || setresuid(uid, uid, uid))
		return 127;
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	socklen_t len;
	int family;
	if (strchr(addr, ':')) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
		sin6->sin6_family = family = AF_INET6;
		sin6->sin6_port = htons(port);
		if (inet_pton(AF_INET6, addr, &sin6->sin6_addr) != 1)
			return 126;
		len = sizeof(*sin6);
	} else {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
		sin->sin_family = family = AF_INET;
		sin->sin_port = htons(port);
		if (inet_pton(AF_INET, addr, &sin->sin_addr) != 1)
			return 126;
		len = sizeof(*sin);
	}
	int type = strcmp(proto, "tcp") == 0 ? SOCK_STREAM : SOCK_DGRAM;
	int protocol = strcmp(proto, "tcp") == 0 ? IPPROTO_TCP
		       : strcmp(proto, "udp") == 0 ? IPPROTO_UDP
						   : IPPROTO_UDPLITE;
	int fd = socket(family, type | SOCK_NONBLOCK, protocol);
	if (fd < 0)
		return 128 + (errno & 0x7f);
	int rc;
	switch (op) {
	case 'c':
		rc = connect(fd, (struct sockaddr *)&ss, len);
		if (rc == 0 && protocol == IPPROTO_UDPLITE)
			rc = send(fd, "x", 1, 0) < 0 ? -1 : 0;
		break;
	case 's':
		rc = sendto(fd, "x", 1, 0, (struct sockaddr *)&ss, len) < 0 ? -1 : 0;
		break;
	case 'b':
		rc = bind(fd, (struct sockaddr *)&ss, len);
		break;
	default:
		return 125;
	}
	return rc == 0 ? 0 : (errno & 0x7f);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: sock_worker CGROUP_DIR\n");
		return 2;
	}
	private_netns();
	join_cgroup(argv[1]);
	printf("ready\n");
	fflush(stdout);
	char line[512];
	while (fgets(line, sizeof(line), stdin)) {
		char op, proto[16], addr[128];
		int port;
		unsigned uid, gid;
		if (sscanf(line, " %c %15s %127s %d %u %u", &op, proto, addr, &port, &uid, &gid) != 6) {
			fprintf(stderr, "sock_worker: bad line: %s", line);
			return 2;
		}
		pid_t pid = fork();
		if (pid < 0)
			die("fork");
		if (pid == 0)
			_exit(run_case(op, proto, addr, port, uid, gid));
		int status;
		if (waitpid(pid, &status, 0) != pid)
			die("waitpid");
		int code = WEXITSTATUS(status);
		if (!WIFEXITED(status))
			printf("%d x signal\n", pid);
		else if (code >= 128)
			printf("%d s %d\n", pid, code - 128);
		else if (code >= 125)
			printf("%d x %d\n", pid, code);
		else
			printf("%d o %d\n", pid, code);
		fflush(stdout);
	}
	return 0;
}
