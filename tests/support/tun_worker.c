// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
// The forwarded-traffic test's two ends (tests/host/forward_test.ts), run inside network namespaces:
//
//   tun_worker send UID IFNAME SRC DST DPORT COUNT
//     opens /dev/net/tun, drops to UID (gid too, no supplementary groups), attaches to the persistent tun device IFNAME that
//     UID owns, and writes COUNT UDP datagrams SRC:40000 -> DST:DPORT (IPv4 or IPv6, as the addresses are)
//     into it, as a user's VPN client would: the host routes them on. Prints "sent N".
//   tun_worker capture IFNAME DPORT MS
//     counts the UDP packets to DPORT seen on IFNAME's wire (AF_PACKET) for MS milliseconds after it
//     prints "ready". Prints the count.
//   tun_worker make IFNAME UID
//     makes the persistent tun device IFNAME owned by UID (where `ip tuntap` is missing: busybox in the VM).
//   tun_worker drain IFNAME DPORT MS
//     attaches to the persistent tun device IFNAME and, for MS milliseconds after it prints "ready", counts
//     the UDP packets to DPORT the host sends out of it (what its far end would receive). Prints the count.
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <netinet/ip.h>
#include <netinet/ip6.h>
#include <netinet/udp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int fail(const char *what)
{
	fprintf(stderr, "tun_worker: %s: %s\n", what, strerror(errno));
	return 1;
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
	return (unsigned short)~sum;
}

static const char PAYLOAD[] = "forwarded";

/* One UDP datagram with its IP header into `packet`; returns its length, 0 for addresses of no family. */
static size_t build(unsigned char *packet, const char *src, const char *dst, int dport)
{
	struct udphdr udp = { .source = htons(40000), .dest = htons(dport),
			      .len = htons(sizeof(udp) + sizeof(PAYLOAD)) };
	struct iphdr ip = { .version = 4, .ihl = 5, .ttl = 64, .protocol = IPPROTO_UDP };
	if (inet_pton(AF_INET, src, &ip.saddr) == 1 && inet_pton(AF_INET, dst, &ip.daddr) == 1) {
		ip.tot_len = htons(sizeof(ip) + sizeof(udp) + sizeof(PAYLOAD));
		ip.check = checksum(&ip, sizeof(ip));
		memcpy(packet, &ip, sizeof(ip));
		memcpy(packet + sizeof(ip), &udp, sizeof(udp));
		memcpy(packet + sizeof(ip) + sizeof(udp), PAYLOAD, sizeof(PAYLOAD));
		return sizeof(ip) + sizeof(udp) + sizeof(PAYLOAD);
	}
	struct ip6_hdr ip6 = { .ip6_flow = htonl(6 << 28), .ip6_plen = udp.len, .ip6_nxt = IPPROTO_UDP,
			       .ip6_hlim = 64 };
	if (inet_pton(AF_INET6, src, &ip6.ip6_src) != 1 || inet_pton(AF_INET6, dst, &ip6.ip6_dst) != 1)
		return 0;
	/* The UDP checksum is left 0: the router forwards without reading it, the capture counts headers. */
	memcpy(packet, &ip6, sizeof(ip6));
	memcpy(packet + sizeof(ip6), &udp, sizeof(udp));
	memcpy(packet + sizeof(ip6) + sizeof(udp), PAYLOAD, sizeof(PAYLOAD));
	return sizeof(ip6) + sizeof(udp) + sizeof(PAYLOAD);
}

static int send_into_tun(uid_t uid, const char *ifname, const char *src, const char *dst, int dport, int count)
{
	/*
	 * Opened before dropping privileges: /dev/net/tun is 0666 on Debian, but a host may have made it
	 * 0600, and opening it grants nothing; TUNSETIFF, as the user, is what the tun's owner decides.
	 */
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return fail("open /dev/net/tun");
	if (setgroups(0, NULL) || setgid(uid) || setuid(uid))
		return fail("dropping to the user");
	struct ifreq ifr = { .ifr_flags = IFF_TUN | IFF_NO_PI };
	strncpy(ifr.ifr_name, ifname, IFNAMSIZ - 1);
	if (ioctl(fd, TUNSETIFF, &ifr))
		return fail("TUNSETIFF");
	unsigned char packet[128];
	size_t len = build(packet, src, dst, dport);
	if (!len) {
		fprintf(stderr, "tun_worker: %s and %s are not two addresses of one family\n", src, dst);
		return 1;
	}
	int sent = 0;
	for (int i = 0; i < count; i++) {
		if (write(fd, packet, len) == (ssize_t)len)
			sent++;
		usleep(1000);
	}
	printf("sent %d\n", sent);
	return 0;
}

static long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Whether a frame's network-layer packet is UDP to `dport`. */
static int udp_to(const unsigned char *packet, ssize_t len, unsigned short protocol, int dport)
{
	size_t l4;
	if (protocol == ETH_P_IP && len >= (ssize_t)sizeof(struct iphdr)) {
		const struct iphdr *ip = (const void *)packet;
		if (ip->protocol != IPPROTO_UDP)
			return 0;
		l4 = ip->ihl * 4;
	} else if (protocol == ETH_P_IPV6 && len >= (ssize_t)sizeof(struct ip6_hdr)) {
		if (((const struct ip6_hdr *)packet)->ip6_nxt != IPPROTO_UDP)
			return 0;
		l4 = sizeof(struct ip6_hdr);
	} else {
		return 0;
	}
	if (len < (ssize_t)(l4 + sizeof(struct udphdr)))
		return 0;
	return ntohs(((const struct udphdr *)(packet + l4))->dest) == dport;
}

static int capture(const char *ifname, int dport, int ms)
{
	int fd = socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, htons(ETH_P_ALL));
	if (fd < 0)
		return fail("socket(AF_PACKET)");
	struct sockaddr_ll where = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL),
				     .sll_ifindex = (int)if_nametoindex(ifname) };
	if (!where.sll_ifindex || bind(fd, (struct sockaddr *)&where, sizeof(where)))
		return fail("bind to the interface");
	printf("ready\n");
	fflush(stdout);
	int seen = 0;
	long end = now_ms() + ms;
	for (long left = ms; left > 0; left = end - now_ms()) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, (int)left) <= 0)
			continue;
		unsigned char packet[2048];
		struct sockaddr_ll from;
		socklen_t size = sizeof(from);
		ssize_t n = recvfrom(fd, packet, sizeof(packet), 0, (struct sockaddr *)&from, &size);
		if (n > 0 && from.sll_pkttype != PACKET_OUTGOING && udp_to(packet, n, ntohs(from.sll_protocol), dport))
			seen++;
	}
	printf("%d\n", seen);
	return 0;
}

static int open_tun(const char *ifname, struct ifreq *ifr)
{
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -1;
	*ifr = (struct ifreq){ .ifr_flags = IFF_TUN | IFF_NO_PI };
	strncpy(ifr->ifr_name, ifname, IFNAMSIZ - 1);
	if (ioctl(fd, TUNSETIFF, ifr)) {
		close(fd);
		return -1;
	}
	return fd;
}

static int make_tun(const char *ifname, uid_t uid)
{
	struct ifreq ifr;
	int fd = open_tun(ifname, &ifr);
	if (fd < 0)
		return fail("TUNSETIFF");
	if (ioctl(fd, TUNSETOWNER, (unsigned long)uid) || ioctl(fd, TUNSETPERSIST, 1UL))
		return fail("TUNSETOWNER/TUNSETPERSIST");
	close(fd);
	return 0;
}

static int drain(const char *ifname, int dport, int ms)
{
	struct ifreq ifr;
	int fd = open_tun(ifname, &ifr);
	if (fd < 0)
		return fail("TUNSETIFF");
	printf("ready\n");
	fflush(stdout);
	int seen = 0;
	long end = now_ms() + ms;
	for (long left = ms; left > 0; left = end - now_ms()) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, (int)left) <= 0)
			continue;
		unsigned char packet[2048];
		ssize_t n = read(fd, packet, sizeof(packet));
		if (n > 0 && udp_to(packet, n, (packet[0] >> 4) == 6 ? ETH_P_IPV6 : ETH_P_IP, dport))
			seen++;
	}
	printf("%d\n", seen);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 8 && !strcmp(argv[1], "send"))
		return send_into_tun((uid_t)atoi(argv[2]), argv[3], argv[4], argv[5], atoi(argv[6]), atoi(argv[7]));
	if (argc == 5 && !strcmp(argv[1], "capture"))
		return capture(argv[2], atoi(argv[3]), atoi(argv[4]));
	if (argc == 4 && !strcmp(argv[1], "make"))
		return make_tun(argv[2], (uid_t)atoi(argv[3]));
	if (argc == 5 && !strcmp(argv[1], "drain"))
		return drain(argv[2], atoi(argv[3]), atoi(argv[4]));
	fprintf(stderr, "usage: tun_worker send UID IFNAME SRC DST DPORT COUNT | capture IFNAME DPORT MS | "
			"make IFNAME UID | drain IFNAME DPORT MS\n");
	return 2;
}
