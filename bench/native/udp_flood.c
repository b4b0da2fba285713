/*
 * The traffic generator of bench/suites/ingress.ts: small UDP datagrams (60-byte frames) sent with sendmmsg
 * in batches of 64, from one thread pinned to a CPU, for a fixed time. The receive side of a veth runs in
 * the sender's softirq on the same CPU, so the rate is sender-bound and differences between filters are
 * their per-packet cost. Packets the veth could not hand to its peer (tx_dropped of DEV) are not counted.
 *
 *   udp_flood DEST PORT MILLISECONDS CPU DEV
 *
 * Prints packets per second handed to the receive side.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define PAYLOAD 18 /* 14 Ethernet + 20 IPv4 + 8 UDP + 18 = 60 bytes, the shortest frame */

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static long long tx_dropped(const char *dev)
{
	char path[128];
	snprintf(path, sizeof(path), "/sys/class/net/%s/statistics/tx_dropped", dev);
	FILE *f = fopen(path, "r");
	long long value = -1;
	if (!f || fscanf(f, "%lld", &value) != 1)
		value = -1;
	if (f)
		fclose(f);
	return value;
}

int main(int argc, char **argv)
{
	if (argc != 6) {
		fprintf(stderr, "usage: udp_flood DEST PORT MILLISECONDS CPU DEV\n");
		return 2;
	}
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[2])) };
	if (inet_pton(AF_INET, argv[1], &addr.sin_addr) != 1) {
		fprintf(stderr, "bad address %s\n", argv[1]);
		return 2;
	}
	double seconds = atof(argv[3]) / 1000;
	cpu_set_t cpus;
	CPU_ZERO(&cpus);
	CPU_SET(atoi(argv[4]), &cpus);
	if (sched_setaffinity(0, sizeof(cpus), &cpus)) {
		perror("sched_setaffinity");
		return 1;
	}
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	/* Not connected: a connected socket would fail on the ICMP errors an unfiltered receiver sends back. */
	if (fd < 0) {
		perror("socket");
		return 1;
	}
	static char payload[PAYLOAD];
	struct iovec iov = { .iov_base = payload, .iov_len = sizeof(payload) };
	struct mmsghdr msgs[BATCH];
	memset(msgs, 0, sizeof(msgs));
	for (int i = 0; i < BATCH; i++) {
		msgs[i].msg_hdr.msg_iov = &iov;
		msgs[i].msg_hdr.msg_iovlen = 1;
		msgs[i].msg_hdr.msg_name = &addr;
		msgs[i].msg_hdr.msg_namelen = sizeof(addr);
	}
	long long dropped = tx_dropped(argv[5]);
	if (dropped < 0) {
		fprintf(stderr, "cannot read tx_dropped of %s\n", argv[5]);
		return 1;
	}
	long long sent = 0;
	double start = now_s(), end = start + seconds, t = start;
	while (t < end) {
		for (int i = 0; i < 16; i++) {
			int n = sendmmsg(fd, msgs, BATCH, 0);
			if (n < 0) {
				perror("sendmmsg");
				return 1;
			}
			sent += n;
		}
		t = now_s();
	}
	long long lost = tx_dropped(argv[5]) - dropped;
	printf("%.0f\n", (sent - lost) / (t - start));
	fprintf(stderr, "sent %lld, veth dropped %lld\n", sent, lost);
	return 0;
}
