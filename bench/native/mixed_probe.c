// The mixed-state probe of the policy suite: watches the decisions of cgroup/connect4 while a policy apply
// runs, and counts every moment they belong to neither the old nor the new policy wholly.
//
//   mixed_probe CGROUP_DIR OLD NEW ADDR...
//
// Joins CGROUP_DIR (the policy's scope) and a network namespace of its own (no routes: a connect that is
// not denied fails with ENETUNREACH and sends nothing), prints "ready", then loops until SIGTERM. Each
// iteration connects one UDP socket to ADDR[0], ADDR[1], ..., ADDR[n-1] and ADDR[0] again, and reads each
// decision as D (EPERM: denied) or A (anything else). OLD and NEW spell the decisions of the old and new
// policy, one letter per address; ADDR[0] must decide differently in them. An iteration whose two reads of
// ADDR[0] differ straddled the flip and proves nothing (counted apart); any other iteration must read OLD
// (before NEW was ever read) or NEW; anything else is a mixed state, and its duration is added up.
// On SIGTERM (once it has read the new policy, or after a million more iterations) prints one JSON object:
// iterations, old, new, straddled, mixed, regressed, mixed_ns.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

static long long now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static char decide(int fd, const struct sockaddr_in *addr)
{
	return connect(fd, (const struct sockaddr *)addr, sizeof(*addr)) < 0 && errno == EPERM ? 'D' : 'A';
}

int main(int argc, char **argv)
{
	if (argc < 5) {
		fprintf(stderr, "usage: mixed_probe CGROUP_DIR OLD NEW ADDR...\n");
		return 2;
	}
	int n = argc - 4;
	const char *old = argv[2], *new = argv[3];
	if ((int)strlen(old) != n || (int)strlen(new) != n || old[0] == new[0]) {
		fprintf(stderr, "mixed_probe: OLD and NEW need one letter per address, and differ at the first\n");
		return 2;
	}
	char procs[4096];
	snprintf(procs, sizeof(procs), "%s/cgroup.procs", argv[1]);
	int cg = open(procs, O_WRONLY);
	if (cg < 0 || dprintf(cg, "%d\n", getpid()) < 0) {
		perror("mixed_probe: joining the cgroup");
		return 1;
	}
	close(cg);
	if (unshare(CLONE_NEWNET) < 0) {
		perror("mixed_probe: unshare(CLONE_NEWNET)");
		return 1;
	}
	struct sockaddr_in *addrs = calloc(n, sizeof(*addrs));
	for (int i = 0; i < n; i++) {
		addrs[i].sin_family = AF_INET;
		addrs[i].sin_port = htons(9);
		if (inet_pton(AF_INET, argv[4 + i], &addrs[i].sin_addr) != 1) {
			fprintf(stderr, "mixed_probe: not an IPv4 address: %s\n", argv[4 + i]);
			return 2;
		}
	}
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (fd < 0) {
		perror("mixed_probe: socket");
		return 1;
	}
	struct sigaction sa = { .sa_handler = on_term };
	sigaction(SIGTERM, &sa, NULL);
	printf("ready\n");
	fflush(stdout);

	char *seen = calloc(n + 1, 1);
	long long iterations = 0, olds = 0, news = 0, straddled = 0, mixed = 0, regressed = 0, mixed_ns = 0;
	// After SIGTERM (the apply has ended) it goes on until it has read the new policy once: a probe starved of
	// the CPU during a short apply may not have run since the flip.
	long long after_stop = 0;
	while (!stop || (news == 0 && after_stop++ < 1000000)) {
		long long started = now_ns();
		for (int i = 0; i < n; i++) seen[i] = decide(fd, &addrs[i]);
		char again = decide(fd, &addrs[0]);
		iterations++;
		if (again != seen[0]) {
			straddled++;
		} else if (memcmp(seen, new, n) == 0) {
			news++;
		} else if (memcmp(seen, old, n) == 0 && news == 0) {
			olds++;
		} else {
			if (memcmp(seen, old, n) == 0) regressed++;
			else mixed++;
			mixed_ns += now_ns() - started;
		}
	}
	printf("{\"iterations\":%lld,\"old\":%lld,\"new\":%lld,\"straddled\":%lld,\"mixed\":%lld,"
	       "\"regressed\":%lld,\"mixed_ns\":%lld}\n",
	       iterations, olds, news, straddled, mixed, regressed, mixed_ns);
	return 0;
}
