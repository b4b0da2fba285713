/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Forwarded traffic (network.egress.forwarded), included at the end of aegis.bpf.c.
 *
 * aegis_forward is a tc egress program (a tcx link, Linux 6.6+) on every interface of the host but lo. It
 * judges only packets the host forwards: those that came in on an interface (skb_iif set: a tun device of
 * an unprivileged user, a tunnel root set up, a veth) and are leaving by another. A packet of a local
 * socket has no input interface (skb_iif 0), and was judged by the cgroup hooks: it returns at once. The
 * destination, protocol and port are matched against the egress CIDR rules (no scope or users entry
 * applies: a forwarded packet has no task), dropped in enforce, passed and reported in audit.
 *
 * Why tc egress and not XDP with bpf_fib_lookup on ingress: the interface a forwarded packet enters by
 * may be one an unprivileged user made a moment ago (a tun device), and XDP would have to be attached to
 * it before its first packet; the interfaces a packet leaves by are the host's own, and tc egress sees the
 * routing decision already taken (and a tunnel's inner packet on the tunnel device).
 *
 * Event fields: ifindex = the interface the packet leaves by, dev = the one it came in on.
 */

#define TC_ACT_UNSPEC_ (-1) /* with tcx: TCX_NEXT, the next program or the packet's way */
#define TC_ACT_SHOT_ 2
#define BPF_HDR_START_NET_ 1

/* The destination key, port and source of a forwarded packet, read from its network header on. */
static __always_inline int parse_forwarded(struct __sk_buff *skb, const struct aegis_state *s,
					   struct packet_dest *d, __u32 *saddr)
{
	__u32 l4;
	__u8 protocol;
	int fragment = 0;
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;
		if (bpf_skb_load_bytes_relative(skb, 0, &ip, sizeof(ip), BPF_HDR_START_NET_))
			return 0;
		d->key.space = AEGIS_FAMILY_IPV4;
		__builtin_memcpy(d->key.addr, &ip.daddr, 4);
		saddr[0] = ip.saddr;
		protocol = ip.protocol;
		fragment = (ip.frag_off & bpf_htons(IP_OFFSET_MASK)) != 0;
		l4 = ip.ihl * 4;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6;
		if (bpf_skb_load_bytes_relative(skb, 0, &ip6, sizeof(ip6), BPF_HDR_START_NET_))
			return 0;
		__u32 daddr[4];
		__builtin_memcpy(daddr, &ip6.daddr, 16);
		__builtin_memcpy(saddr, &ip6.saddr, 16);
		d->has_alt = set_addr6(s, &d->key, daddr, &d->alt);
		protocol = ip6.nexthdr;
		l4 = sizeof(ip6);
		for (int i = 0; i < MAX_IPV6_EXT_HEADERS; i++) {
			if (protocol == IPPROTO_HOPOPTS_ || protocol == IPPROTO_ROUTING_ || protocol == IPPROTO_DSTOPTS_) {
				struct ipv6_opt_hdr opt;
				if (bpf_skb_load_bytes_relative(skb, l4 & 0xffff, &opt, sizeof(opt), BPF_HDR_START_NET_))
					break;
				protocol = opt.nexthdr;
				l4 += (opt.hdrlen + 1) * 8;
			} else if (protocol == IPPROTO_FRAGMENT_) {
				struct frag_hdr frag;
				if (bpf_skb_load_bytes_relative(skb, l4 & 0xffff, &frag, sizeof(frag), BPF_HDR_START_NET_))
					break;
				protocol = frag.nexthdr;
				fragment = (frag.frag_off & bpf_htons(0xfff8)) != 0;
				l4 += sizeof(frag);
			} else {
				break;
			}
		}
	} else {
		return 0;
	}
	d->key.protocol = protocol;
	d->alt.protocol = protocol;
	/* A non-first fragment or a header cut before its ports: matched by the rules without ports. */
	if (!fragment && carries_ports(protocol)) {
		__u16 ports[2];
		if (!bpf_skb_load_bytes_relative(skb, l4 & 0xffff, ports, sizeof(ports), BPF_HDR_START_NET_)) {
			d->dport_be = ports[1];
			saddr[4] = ports[0];
		}
	}
	return 1;
}

SEC("tc")
int aegis_forward(struct __sk_buff *skb)
{
	/* Sent by a local socket: the cgroup hooks judged it. */
	if (!skb->ingress_ifindex)
		return TC_ACT_UNSPEC_;
	struct aegis_state s;
	if (!load_state(&s) || !exact_rule(&s, AEGIS_RULE_FORWARDED, 0, 0))
		return TC_ACT_UNSPEC_;
	struct packet_dest d = {};
	__u32 source[5] = {}; /* the source address, then the source port in the low half of [4] */
	if (!parse_forwarded(skb, &s, &d, source))
		return TC_ACT_UNSPEC_;
	__u32 rule_id = egress_deny_id(&s, &d.key, &d.alt, d.has_alt, d.dport_be, 0);
	if (!rule_id)
		return TC_ACT_UNSPEC_;
	__u32 mode = effective_mode(&s);
	/* Rate limited by source address (its last word for IPv6), as ingress is. */
	__u32 who = skb->protocol == bpf_htons(ETH_P_IP) ? source[0] : source[3];
	struct aegis_event *e = record(&s, AEGIS_HOOK_FORWARD, mode, rule_id, who, 0);
	if (e) {
		e->family = d.key.space & 0xff;
		e->protocol = d.key.protocol;
		__builtin_memcpy(e->daddr, d.key.addr, 16);
		e->dport = bpf_ntohs(d.dport_be);
		/* The source as sent: an IPv4 address in the first 4 bytes. */
		__builtin_memcpy(e->saddr, source, 16);
		e->sport = bpf_ntohs((__u16)source[4]);
		e->ifindex = skb->ifindex;
		e->dev = skb->ingress_ifindex;
		bpf_ringbuf_submit(e, 0);
	}
	return mode == AEGIS_MODE_ENFORCE ? TC_ACT_SHOT_ : TC_ACT_UNSPEC_;
}
