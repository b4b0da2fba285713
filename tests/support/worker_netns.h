/*
 * The private network namespace of the test workers (sock_worker.c, packet_worker.c): `lo` up, and every
 * address routed through it (IPv6 addresses all local), so every packet a test sends comes back in on
 * `lo` and none leaves the machine. Each worker defines die() before including this.
 */
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

static void loopback_up(void)
{
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (fd < 0)
		die("socket for ioctl");
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	strcpy(ifr.ifr_name, "lo");
	if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
		die("SIOCGIFFLAGS lo");
	ifr.ifr_flags |= IFF_UP;
	if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
		die("SIOCSIFFLAGS lo");
	close(fd);
}

/* Default routes through lo (IPv4 and IPv6): every address is routed, and nothing leaves the namespace. */
static void default_routes(void)
{
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (fd < 0)
		die("socket for SIOCADDRT");
	struct rtentry rt;
	memset(&rt, 0, sizeof(rt));
	((struct sockaddr_in *)&rt.rt_dst)->sin_family = AF_INET;
	((struct sockaddr_in *)&rt.rt_genmask)->sin_family = AF_INET;
	rt.rt_flags = RTF_UP;
	rt.rt_dev = "lo";
	if (ioctl(fd, SIOCADDRT, &rt) < 0)
		die("SIOCADDRT 0.0.0.0/0 dev lo");
	close(fd);
	/* IPv6 needs a neighbour for a route through lo: make every address local instead (ioctl cannot). */
	if (system("ip -6 route add local ::/0 dev lo"))
		die("ip -6 route add local ::/0 dev lo");
}

/* Unshares the network namespace and sets it up as above. */
static void private_netns(void)
{
	if (unshare(CLONE_NEWNET))
		die("unshare(CLONE_NEWNET)");
	loopback_up();
	default_routes();
}
