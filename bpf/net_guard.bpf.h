/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The sockets the cgroup sock_addr hooks do not see, included at the end of aegis.bpf.c:
 *
 * - aegis_skb_egress (cgroup_skb/egress): the packet backstop. Raw IP sockets, ICMP ping sockets (their
 *   sendto is not hooked), SCTP and DCCP (no sock_addr hook runs for them) and connected UDP-Lite (its
 *   connect never reaches the connect hooks) have their outgoing packets matched against the egress rules by destination,
 *   protocol and port, and dropped in enforce. TCP and UDP packets that carry a source route or a routing
 *   header are judged by every address the route names (route_guard.bpf.h); every other packet returns at
 *   once.
 * - aegis_socket_create (lsm/socket_create): AF_PACKET, AF_XDP and SOCK_PACKET sockets refused in scope
 *   when the policy asks; aegis_tp_socket (tracepoint) reports them where BPF-LSM cannot load (the cgroup
 *   sock_create hook runs for inet sockets only).
 * - aegis_socket_connect (lsm/socket_connect, SCTP sockets only) and aegis_sctp_bind_connect
 *   (lsm/sctp_bind_connect): SCTP connect, sctp_connectx and one-to-many sendto to a denied peer fail with
 *   EPERM where BPF-LSM runs; elsewhere the packet backstop drops their INIT.
 * - aegis_sweep_tcp, aegis_sweep_udp (iter/tcp, iter/udp): connections made before apply.
 */

#define AF_INET_ 2
#define AF_INET6_ 10
#define AF_PACKET_ 17
#define SOCK_RAW_ 3
#define IPPROTO_ICMP_ 1
#define BPF_TCP_ESTABLISHED_ 1
#define SKB_PASS 1
#define SKB_DROP 0
#define IP_OFFSET_MASK 0x1fff
#define NO_GID 0xffffffffu /* (gid_t)-1: never a group's id, so no gid entry matches it */

/*
 * Whether the packets of `sk` need the backstop: the cheap test every packet of every socket in the cgroup
 * takes, so TCP and UDP leave after two loads and two compares.
 */
static __always_inline int backstopped_socket(const struct bpf_sock *sk)
{
	__u32 protocol = sk->protocol;
	if (protocol == IPPROTO_TCP_ || protocol == IPPROTO_UDP_)
		return sk->type == SOCK_RAW_;
	return sk->type == SOCK_RAW_ || protocol == IPPROTO_ICMP_ || protocol == IPPROTO_ICMPV6_ ||
	       protocol == IPPROTO_SCTP_ || protocol == IPPROTO_UDPLITE_ || protocol == IPPROTO_DCCP_;
}

/* What the backstop matches of a packet: the destination key and port (0 when it has none or they are out of reach). */
struct packet_dest {
	struct aegis_net_key key;
	struct aegis_net_key alt; /* the IPv6 view of an embedded IPv4 destination (see set_addr6) */
	int has_alt;
	__u16 dport_be;
};

/* Reads the destination, the final protocol (IPv6 extension headers walked) and the port of an outgoing packet. */
static __always_inline int parse_outgoing(struct __sk_buff *skb, const struct aegis_state *s, struct packet_dest *d)
{
	__u32 l4;
	__u8 protocol;
	int fragment = 0;
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;
		if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)))
			return 0;
		d->key.space = AEGIS_FAMILY_IPV4;
		__builtin_memcpy(d->key.addr, &ip.daddr, 4);
		protocol = ip.protocol;
		fragment = (ip.frag_off & bpf_htons(IP_OFFSET_MASK)) != 0;
		l4 = ip.ihl * 4;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6;
		if (bpf_skb_load_bytes(skb, 0, &ip6, sizeof(ip6)))
			return 0;
		__u32 daddr[4];
		__builtin_memcpy(daddr, &ip6.daddr, 16);
		d->has_alt = set_addr6(s, &d->key, daddr, &d->alt);
		protocol = ip6.nexthdr;
		l4 = sizeof(ip6);
		for (int i = 0; i < MAX_IPV6_EXT_HEADERS; i++) {
			if (protocol == IPPROTO_HOPOPTS_ || protocol == IPPROTO_ROUTING_ || protocol == IPPROTO_DSTOPTS_) {
				struct ipv6_opt_hdr opt;
				if (bpf_skb_load_bytes(skb, l4, &opt, sizeof(opt)))
					break;
				protocol = opt.nexthdr;
				l4 += (opt.hdrlen + 1) * 8;
			} else if (protocol == IPPROTO_FRAGMENT_) {
				struct frag_hdr frag;
				if (bpf_skb_load_bytes(skb, l4, &frag, sizeof(frag)))
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
		if (!bpf_skb_load_bytes(skb, l4 & 0xffff, ports, sizeof(ports)))
			d->dport_be = ports[1];
	}
	return 1;
}

/* Whether the socket that sent the packet lies in scope: its cgroup's ancestors, as in_scope() does for tasks. */
static __always_inline int skb_in_scope(const struct aegis_state *s, struct __sk_buff *skb)
{
	if (!s->info->scope_include && !s->info->scope_exempt)
		return 1;
	int included = s->info->scope_include == 0;
	for (int level = 0; level < MAX_CGROUP_DEPTH; level++) {
		__u64 id = bpf_skb_ancestor_cgroup_id(skb, level);
		if (!id)
			break;
		struct aegis_rule *entry = exact_rule(s, AEGIS_RULE_SCOPE, id, 0);
		if (!entry)
			continue;
		if (entry->action == AEGIS_SCOPE_EXEMPT)
			return 0;
		included = 1;
	}
	return included;
}

/*
 * Connected UDP-Lite is the only UDP-Lite path the sendmsg hooks miss: a datagram sent to an explicit
 * address (not the peer) was decided there already.
 */
static __always_inline int udplite_decided_elsewhere(struct __sk_buff *skb, const struct bpf_sock *sk,
						     const struct packet_dest *d, __u32 family)
{
	if (sk->state != BPF_TCP_ESTABLISHED_)
		return 1;
	__u32 dest[4]; /* the key's address is not 4-byte aligned */
	__builtin_memcpy(dest, d->key.addr, 16);
	if (family == AF_INET_)
		return (d->key.space & 0xff) != AEGIS_FAMILY_IPV4 || sk->dst_ip4 != dest[0];
	/* An IPv6 socket connected to a mapped peer sends through the IPv4 path, with the sendmsg4 hook. */
	if ((d->key.space & 0xff) == AEGIS_FAMILY_IPV4 && skb->protocol == bpf_htons(ETH_P_IP))
		return 1;
	__u32 peer[4] = { sk->dst_ip6[0], sk->dst_ip6[1], sk->dst_ip6[2], sk->dst_ip6[3] };
	if ((d->key.space & 0xff) == AEGIS_FAMILY_IPV4)
		return peer[3] != dest[0]; /* a compatible or NAT64 peer, matched as IPv4 */
	return peer[0] != dest[0] || peer[1] != dest[1] || peer[2] != dest[2] || peer[3] != dest[3];
}

/*
 * Reports a packet a rule denies (`v`) when its socket lies in scope: 1 when it must be dropped. A
 * global function: verified once, whichever way the backstop reached the deny.
 */
__noinline int aegis_packet_dropped(struct __sk_buff *skb, struct packet_verdict *v)
{
	struct aegis_state s;
	if (!v || !load_generation(&s, v->gen) || !skb_in_scope(&s, skb))
		return 0;
	__u32 mode = effective_mode(&s);
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u32 pid = BPF_CORE_READ(task, tgid);
	struct aegis_event *e = record(&s, AEGIS_HOOK_PACKET, mode, v->rule_id, pid, 0);
	if (e) {
		e->cgroup_id = bpf_skb_cgroup_id(skb);
		e->pid = pid;
		e->ppid = BPF_CORE_READ(task, real_parent, tgid);
		e->uid = (__u32)v->ids;
		e->gid = v->ids >> 32;
		bpf_probe_read_kernel_str(e->comm, sizeof(e->comm), task->comm);
		e->family = v->key.space & 0xff;
		e->protocol = v->key.protocol;
		__builtin_memcpy(e->daddr, v->key.addr, 16);
		e->dport = bpf_ntohs(v->dport_be);
		e->flags = v->route;
		bpf_ringbuf_submit(e, 0);
	}
	return mode == AEGIS_MODE_ENFORCE;
}

/*
 * The rule that denies the packet's destination `d` (in generation v->gen): a CIDR deny of either view,
 * else, when `users`, the users entry of v->ids. 1 when one does, with its id in v->rule_id and the view
 * it denied in v->key; 0 leaves `v` as it was. A global function: the verifier matches the rules once,
 * not once for every way the packet's headers were parsed.
 */
__noinline int aegis_packet_rule(struct packet_dest *d, struct packet_verdict *v, int users)
{
	struct aegis_state s;
	if (!d || !v || !load_generation(&s, v->gen))
		return 0;
	/* Copies on the stack: 6.1 takes no global function argument's memory as a map key (6.18 does). */
	struct aegis_net_key key = d->key;
	struct aegis_net_key alt = d->alt;
	/* With rules by name, the caller asked aegis_names_egress_deny already (the stack has no room here). */
	__u64 rule = s.info->host_rules ? 0 : egress_cidr_deny(&s, &key, &alt, d->has_alt, d->dport_be);
	if (!rule && users && s.info->task_rules)
		rule = rule_word(user_rule_of(&s, bpf_ntohs(d->dport_be), v->ids));
	if (!rule)
		return 0;
	v->rule_id = word_rule_id(rule);
	v->key = key;
	return 1;
}

/* ---- DNS queries for a name a rule denies (rules by name, bpf/name_guard.bpf.h) ---- */

#define DNS_PORT 53
#define DNS_NAME_MAX 255
#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

/*
 * The question of the query being judged (too large for the stack of this call chain), and the state of
 * its walk. The walk's state lives here, in a map value, not on the stack: the verifier tracks no value of
 * a map's memory, so every step leaves the same state and bpf_loop's step converges at once. On the stack
 * (a counter counting down, a hash), newer verifiers checked the step once per value: 330,000 instructions
 * for the backstop, 700 ms of every first load.
 */
/*
 * A query tracked until its answer (bpf/dns_learn.bpf.h): the server it went to, the client's port, the
 * query's id; with the key of the name asked. An answer that matches no entry is learned from never.
 */
struct dns_pending_key {
	__u32 family;
	__u8 server[16];
	__u16 client_port_be;
	__u16 id_be;
};
struct dns_pending {
	__u64 name_key;
	__u64 sent_boot_ns;
};
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, AEGIS_DNS_PENDING_ENTRIES);
	__type(key, struct dns_pending_key);
	__type(value, struct dns_pending);
} dns_pending SEC(".maps");

struct dns_name {
	__u8 bytes[DNS_NAME_MAX + 1];
	__u64 hash;
	__u32 len;    /* bytes of the name loaded */
	__u32 label;  /* bytes left in the current label */
	__u32 labels;
	__u32 done;   /* 1: the name ended well, hash holds its key */
	/* The query's tracking entry, made here: the call chain's stack has no room for it. */
	struct dns_pending_key pending_key;
	struct dns_pending pending;
};
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dns_name);
} dns_scratch SEC(".maps");

/* bpf_loop's context: the walk's memory (the pointer alone, the same at every step). */
struct dns_walk {
	struct dns_name *name;
};

static long dns_walk_step(__u32 i, struct dns_walk *ctx)
{
	struct dns_name *w = ctx->name;
	if (!w || i >= w->len || i > DNS_NAME_MAX)
		return 1;
	__u8 c = w->bytes[i & DNS_NAME_MAX];
	if (w->label == 0) {
		if (c == 0) {
			w->done = w->labels > 0;
			return 1;
		}
		if (c > 63)
			return 1; /* a pointer or a bad length: a query's question is never compressed */
		if (w->labels++) {
			w->hash ^= '.';
			w->hash *= FNV_PRIME;
		}
		w->label = c;
		return 0;
	}
	if (c >= 'A' && c <= 'Z')
		c += 'a' - 'A';
	w->hash ^= c;
	w->hash *= FNV_PRIME;
	w->label--;
	return 0;
}

/*
 * The host key (FNV-1a 64 of the lower-cased name, as user space computes it) of the question of the DNS
 * message at `offset` of `skb`, or 0 when there is none or it is malformed.
 */
static __always_inline __u64 dns_question_key(struct __sk_buff *skb, __u32 offset)
{
	__u32 zero = 0;
	struct dns_name *name = bpf_map_lookup_elem(&dns_scratch, &zero);
	__u32 start = offset + 12;
	if (!name || start >= skb->len)
		return 0;
	__u32 len = skb->len - start;
	if (len > DNS_NAME_MAX)
		len = DNS_NAME_MAX;
	if (len < 2 || bpf_skb_load_bytes(skb, start, name->bytes, len))
		return 0;
	name->hash = FNV_OFFSET;
	name->len = len;
	name->label = 0;
	name->labels = 0;
	name->done = 0;
	struct dns_walk walk = { .name = name };
	bpf_loop(DNS_NAME_MAX, dns_walk_step, &walk, 0);
	return name->done ? name->hash : 0;
}

/*
 * Tracks the query at `offset` of `skb` (its question's key `name_key`), sent to `server` from the client
 * port `sport_be`, so that its answer may be learned from (bpf/dns_learn.bpf.h). The entry is made in the
 * scratch value, not on the stack.
 */
static __always_inline void dns_track_query(struct __sk_buff *skb, __u32 offset, __u32 family, const __u8 *server,
					    __u16 sport_be, __u64 name_key)
{
	__u32 zero = 0;
	struct dns_name *name = bpf_map_lookup_elem(&dns_scratch, &zero);
	__u16 id_be;
	if (!name || bpf_skb_load_bytes(skb, offset, &id_be, sizeof(id_be)))
		return;
	name->pending_key.family = family;
	__builtin_memcpy(name->pending_key.server, server, 16);
	name->pending_key.client_port_be = sport_be;
	name->pending_key.id_be = id_be;
	name->pending.name_key = name_key;
	name->pending.sent_boot_ns = bpf_ktime_get_boot_ns();
	bpf_map_update_elem(&dns_pending, &name->pending_key, &name->pending, BPF_ANY);
}

/*
 * Whether `skb` is a UDP DNS query (to port 53) for a name whose rule by name denies it without a port or
 * protocol: 1 with the rule, the resolver's address and the ids the event reports in `v`, for
 * aegis_packet_dropped() (scope, event, mode). 0 for every other packet: the generation's rules by name are
 * asked first (none: no header read), then a non-DNS packet costs the header loads before the port test. A global function: verified once, out of the backstop's own frame; `v` is
 * the backstop's, so that this frame stays small (the bpf_loop step below it counts on 6.1's stack).
 */
__noinline int aegis_dns_query_rule(struct __sk_buff *skb, struct packet_verdict *v)
{
	struct aegis_state s;
	if (!v || !load_state(&s) || !s.info->host_rules)
		return 0;
	__u32 l4;
	__u8 daddr[16] = {};
	__u32 family;
	__u8 protocol;
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;
		if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)) || (ip.frag_off & bpf_htons(IP_OFFSET_MASK)))
			return 0;
		protocol = ip.protocol;
		l4 = ip.ihl * 4;
		family = AEGIS_FAMILY_IPV4;
		__builtin_memcpy(daddr, &ip.daddr, 4);
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		if (bpf_skb_load_bytes(skb, 6, &protocol, 1) || bpf_skb_load_bytes(skb, 24, daddr, 16))
			return 0;
		l4 = 40;
		family = AEGIS_FAMILY_IPV6;
	} else {
		return 0;
	}
	__u16 ports[2]; /* source port, destination port */
	if ((protocol != IPPROTO_UDP_ && protocol != IPPROTO_TCP_) ||
	    bpf_skb_load_bytes(skb, l4 & 0xff, ports, sizeof(ports)) || ports[1] != bpf_htons(DNS_PORT))
		return 0;
	/* The message: past the UDP header; past the TCP header and the message's 2-byte length over TCP. */
	__u32 msg = (l4 & 0xff) + 8;
	if (protocol == IPPROTO_TCP_) {
		__u8 doff;
		if (bpf_skb_load_bytes(skb, (l4 & 0xff) + 12, &doff, 1))
			return 0;
		msg = (l4 & 0xff) + (doff >> 4) * 4 + 2;
		if (msg + 12 >= skb->len)
			return 0; /* no message in this segment (a handshake, an ACK, the length alone) */
	}
	__u8 flags;
	/* A response (QR) is not a query. */
	if (bpf_skb_load_bytes(skb, msg + 2, &flags, 1) || (flags & 0x80))
		return 0;
	__u64 key = dns_question_key(skb, msg);
	if (key)
		dns_track_query(skb, msg, family, daddr, ports[0], key);
	struct aegis_rule *rule = key ? exact_rule(&s, AEGIS_RULE_HOST, key, 0) : 0;
	if (!rule || rule->action == AEGIS_ACTION_ALLOW)
		return 0;
	v->gen = s.gen;
	v->rule_id = rule->rule_id;
	v->key.space = family;
	v->key.protocol = protocol;
	__builtin_memcpy(v->key.addr, daddr, 16);
	v->dport_be = bpf_htons(DNS_PORT);
	__u64 ids = current_euid_egid();
	__u32 owner = bpf_get_socket_uid(skb);
	v->ids = (__u32)ids == owner ? ids : (__u64)NO_GID << 32 | owner;
	return 1;
}

/*
 * Whether the active generation has rules by name: the generation word and its info, two array reads, the
 * whole cost of the DNS query check on a host without rules by name (aegis_skb_egress asks it first).
 */
static __always_inline int names_active(void)
{
	__u32 gen = config_word(AEGIS_CFG_ACTIVE_GEN) & 1;
	struct aegis_gen_info *info = bpf_map_lookup_elem(&gen_info, &gen);
	return info && info->host_rules;
}

/*
 * A DNS query a rule by name denies (aegis_dns_query_rule), reported where its socket lies in scope: 1 when it
 * must be dropped. Its own frame holds the verdict, not the backstop's: the backstop's frame, the call chains
 * below it and 6.1's 512-byte stack leave no room there.
 */
__noinline int aegis_dns_query_dropped(struct __sk_buff *skb)
{
	struct packet_verdict v = {};
	return aegis_dns_query_rule(skb, &v) && aegis_packet_dropped(skb, &v);
}

SEC("cgroup_skb/egress")
int aegis_skb_egress(struct __sk_buff *skb)
{
	struct bpf_sock *sk = skb->sk;
	if (!sk)
		return SKB_PASS;
	sk = bpf_sk_fullsock(sk);
	if (!sk)
		return SKB_PASS;
	/* TCP and UDP only when the packet carries a route (route_guard.bpf.h): judged by every hop it names. */
	int route_only = !backstopped_socket(sk);
	/*
	 * A DNS query for a name a rule by name denies (only where the generation has rules by name): over UDP,
	 * and over TCP to port 53 (the socket's port: other TCP packets pass on two compares). Whether the
	 * generation has rules by name is asked first, before any header is read.
	 */
	__u32 dns = sk->type != SOCK_RAW_ &&
		    (sk->protocol == IPPROTO_UDP_ ||
		     (sk->protocol == IPPROTO_TCP_ && sk->dst_port == bpf_htons(DNS_PORT)));
	barrier_var(dns);
	if (dns && names_active() && aegis_dns_query_dropped(skb))
		return SKB_DROP;
	int maybe_routed = may_carry_route(skb);
	if (route_only && !maybe_routed)
		return SKB_PASS;
	struct aegis_state s;
	if (!load_state(&s))
		return SKB_PASS;
	struct packet_dest d = {};
	if (!parse_outgoing(skb, &s, &d))
		return SKB_PASS;
	struct packet_verdict v = { .key.protocol = d.key.protocol, .gen = s.gen, .dport_be = d.dport_be };
	int hop_denied = maybe_routed && aegis_route_deny(skb, &v);
	if (route_only && !v.route)
		return SKB_PASS;
	if (!v.route && sk->protocol == IPPROTO_UDPLITE_ && sk->type != SOCK_RAW_ &&
	    udplite_decided_elsewhere(skb, sk, &d, sk->family))
		return SKB_PASS;
	/*
	 * Raw, ping and UDP-Lite packets leave in the sending task's context, but an SCTP retransmission may
	 * leave in any task's: users entries go by the socket owner's uid, and by the current task's gid only
	 * when that task runs as the owner.
	 */
	__u64 ids = current_euid_egid();
	__u32 owner = bpf_get_socket_uid(skb);
	if ((__u32)ids != owner)
		ids = (__u64)NO_GID << 32 | owner;
	v.ids = ids;
	/*
	 * The sock_addr hooks applied users entries to TCP and UDP already: the port is the same. Rules by name
	 * are matched here, not in aegis_packet_rule: one call deep, as the stack's 512 bytes allow.
	 */
	__u32 named = 0;
	if (s.info->host_rules) {
		__u32 flags = (__u32)d.dport_be << 16 | (d.has_alt ? 2 : 0) | (s.gen & 1);
		named = aegis_names_egress_deny(&d.key, &d.alt, flags);
		if (named) {
			v.rule_id = named;
			v.key = d.key;
		}
	}
	if (!named && !aegis_packet_rule(&d, &v, !hop_denied && !route_only) && !hop_denied)
		return SKB_PASS;
	return aegis_packet_dropped(skb, &v) ? SKB_DROP : SKB_PASS;
}

/* ---- AF_PACKET sockets (network.egress.denyPacketSockets) ----------------- */

#define AF_XDP_ 44
#define SOCK_PACKET_ 10

/*
 * The AEGIS_FAMILY_* of a packet socket socket(family, type) would make, or 0: AF_PACKET, AF_XDP (frames
 * sent from a ring straight to the driver: no IP hook sees them), and socket(AF_INET, SOCK_PACKET), the
 * old form of AF_PACKET. The kernel turns that last one into AF_PACKET before the LSM hook runs, so only
 * the tracepoint sees it as AF_INET; socket(AF_INET6, SOCK_PACKET) never makes a socket (ESOCKTNOSUPPORT).
 */
static __always_inline __u8 packet_socket_family(int family, int type)
{
	if (family == AF_PACKET_ || (family == AF_INET_ && (type & 0xf) == SOCK_PACKET_))
		return AEGIS_FAMILY_PACKET;
	return family == AF_XDP_ ? AEGIS_FAMILY_XDP : 0;
}

/*
 * The decision on creating a packet socket (`family`: AEGIS_FAMILY_PACKET or _XDP) of `type`, in `mode`
 * (the tracepoint passes audit): 1 when it must fail. The cgroup sock_create hook runs only for inet
 * sockets, so the LSM hook refuses them and the tracepoint, where BPF-LSM cannot load, reports them.
 */
static __always_inline int packet_socket_denied(__u8 family, int type, int audit_only)
{
	struct aegis_state s;
	if (!load_state(&s))
		return 0;
	struct aegis_rule *rule = exact_rule(&s, AEGIS_RULE_DENY_PACKET_SOCKETS, 0, 0);
	if (!rule || !in_scope(&s))
		return 0;
	__u32 mode = audit_only ? AEGIS_MODE_AUDIT : effective_mode(&s);
	struct aegis_event *e = record(&s, AEGIS_HOOK_SOCKET, mode, rule->rule_id, current_pid(), 1);
	if (e) {
		e->family = family;
		/* SOCK_RAW, SOCK_DGRAM or SOCK_PACKET, without SOCK_NONBLOCK and SOCK_CLOEXEC */
		e->protocol = type & 0xf;
		bpf_ringbuf_submit(e, 0);
	}
	return mode == AEGIS_MODE_ENFORCE;
}

SEC("lsm/socket_create")
int BPF_PROG(aegis_socket_create, int family, int type, int protocol, int kern)
{
	__u8 packet = packet_socket_family(family, type);
	if (!packet || kern)
		return 0;
	if (packet_socket_denied(packet, type, 0))
		return -EPERM;
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_socket")
int aegis_tp_socket(struct trace_event_raw_sys_enter *ctx)
{
	__u8 packet = packet_socket_family(ctx->args[0], ctx->args[1]);
	if (packet)
		packet_socket_denied(packet, ctx->args[1], 1);
	return 0;
}

/* ---- connections made before apply ------------------------------------------ */

#define TCP_ESTABLISHED_ 1
#define TCP_SYN_SENT_ 2
#define TCP_TIME_WAIT_ 6
#define TCP_CLOSE_ 7
#define TCP_LISTEN_ 10
#define TCP_NEW_SYN_RECV_ 12

/* 6.5+: closes a socket from a socket iterator. Weak: absent on older kernels, which then only list. */
extern int bpf_sock_destroy(struct sock_common *sk) __ksym __weak;

/* in_scope() for a socket: its cgroup and every ancestor, walked up from the socket's own. */
static __always_inline int sock_in_scope(const struct aegis_state *s, struct sock *sk, __u64 *cgroup_id)
{
	struct cgroup *cgroup = BPF_CORE_READ(sk, sk_cgrp_data.cgroup);
	*cgroup_id = cgroup ? BPF_CORE_READ(cgroup, kn, id) : 0;
	if (!s->info->scope_include && !s->info->scope_exempt)
		return 1;
	int included = s->info->scope_include == 0;
	for (int level = 0; level < MAX_CGROUP_DEPTH && cgroup; level++) {
		struct aegis_rule *entry = exact_rule(s, AEGIS_RULE_SCOPE, BPF_CORE_READ(cgroup, kn, id), 0);
		if (entry) {
			if (entry->action == AEGIS_SCOPE_EXEMPT)
				return 0;
			included = 1;
		}
		struct cgroup_subsys_state *parent = BPF_CORE_READ(cgroup, self.parent);
		cgroup = parent ? BPF_CORE_READ(parent, cgroup) : 0;
	}
	return included;
}

/*
 * One socket of the sweep: when it is in scope and the active rules deny its destination (a CIDR deny, else
 * the owner's uid entry), it is written to the iterator's output, and closed in enforce where the kernel can.
 */
static __always_inline void sweep_socket(struct seq_file *seq, struct sock_common *skc, __u8 protocol, __u32 uid,
					 int close)
{
	struct aegis_state s;
	if (!load_state(&s))
		return;
	struct packet_dest d = {};
	__u16 family = BPF_CORE_READ(skc, skc_family);
	struct aegis_conn conn = { .protocol = protocol, .uid = uid, .gen = s.gen };
	/*
	 * The scope first: the cgroup walk after the rule lookups was verified once for every state they leave
	 * (192,000 instructions verified per program, about a second of a first apply); first, 20,000.
	 */
	if (!sock_in_scope(&s, (struct sock *)skc, &conn.cgroup_id))
		return;
	d.key.protocol = protocol;
	d.alt.protocol = protocol;
	if (family == AF_INET_) {
		__u32 daddr = BPF_CORE_READ(skc, skc_daddr);
		__u32 saddr = BPF_CORE_READ(skc, skc_rcv_saddr);
		d.key.space = AEGIS_FAMILY_IPV4;
		__builtin_memcpy(d.key.addr, &daddr, 4);
		__builtin_memcpy(conn.saddr, &saddr, 4);
	} else if (family == AF_INET6_) {
		__u32 daddr[4];
		BPF_CORE_READ_INTO(&daddr, skc, skc_v6_daddr.in6_u.u6_addr32);
		BPF_CORE_READ_INTO(&conn.saddr, skc, skc_v6_rcv_saddr.in6_u.u6_addr8);
		d.has_alt = set_addr6(&s, &d.key, daddr, &d.alt);
	} else {
		return;
	}
	d.dport_be = BPF_CORE_READ(skc, skc_dport);
	__u32 rule_id = egress_deny_id(&s, &d.key, &d.alt, d.has_alt, d.dport_be, 0);
	if (!rule_id && s.info->task_rules) {
		struct aegis_rule *user = user_rule_of(&s, bpf_ntohs(d.dport_be), (__u64)NO_GID << 32 | uid);
		rule_id = user ? user->rule_id : 0;
	}
	if (!rule_id)
		return;
	conn.rule_id = rule_id;
	conn.family = d.key.space & 0xff;
	__builtin_memcpy(conn.daddr, d.key.addr, 16);
	conn.dport = bpf_ntohs(d.dport_be);
	conn.sport = BPF_CORE_READ(skc, skc_num);
	/*
	 * A socket does not say which program made it: under rules that name programs (subjects) the sweep
	 * judges by the rules naming none and only lists, never closes, what they deny.
	 */
	if (close && effective_mode(&s) == AEGIS_MODE_ENFORCE && bpf_sock_destroy && !subject_switch(&s))
		conn.closed = bpf_sock_destroy(skc) == 0;
	bpf_seq_write(seq, &conn, sizeof(conn));
}

/* A TCP socket that can carry data: not a listener, nor a time-wait or request minisock (no full socket). */
static __always_inline struct sock_common *tcp_connection(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	if (!skc)
		return 0;
	__u8 state = BPF_CORE_READ(skc, skc_state);
	if (state == TCP_LISTEN_ || state == TCP_TIME_WAIT_ || state == TCP_NEW_SYN_RECV_ || state == TCP_CLOSE_)
		return 0;
	return skc;
}

/* A connected UDP socket (an unconnected one names its destination at each sendmsg, which is hooked), and its protocol. */
static __always_inline struct sock_common *udp_connection(struct bpf_iter__udp *ctx, __u8 *protocol)
{
	struct udp_sock *udp = ctx->udp_sk;
	if (!udp)
		return 0;
	struct sock_common *skc = &udp->inet.sk.__sk_common;
	*protocol = BPF_CORE_READ(udp, inet.sk.sk_protocol);
	return BPF_CORE_READ(skc, skc_state) == TCP_ESTABLISHED_ ? skc : 0;
}

/* The sweep: lists, and closes in enforce where the kernel can. */
SEC("iter/tcp")
int aegis_sweep_tcp(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = tcp_connection(ctx);
	if (skc)
		sweep_socket(ctx->meta->seq, skc, IPPROTO_TCP_, ctx->uid, 1);
	return 0;
}

SEC("iter/udp")
int aegis_sweep_udp(struct bpf_iter__udp *ctx)
{
	__u8 protocol;
	struct sock_common *skc = udp_connection(ctx, &protocol);
	if (skc)
		sweep_socket(ctx->meta->seq, skc, protocol, ctx->uid, 1);
	return 0;
}

/* The same walk that only lists: for a health check, which must change nothing. */
SEC("iter/tcp")
int aegis_list_tcp(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = tcp_connection(ctx);
	if (skc)
		sweep_socket(ctx->meta->seq, skc, IPPROTO_TCP_, ctx->uid, 0);
	return 0;
}

SEC("iter/udp")
int aegis_list_udp(struct bpf_iter__udp *ctx)
{
	__u8 protocol;
	struct sock_common *skc = udp_connection(ctx, &protocol);
	if (skc)
		sweep_socket(ctx->meta->seq, skc, protocol, ctx->uid, 0);
	return 0;
}

/* ---- SCTP where BPF-LSM runs ------------------------------------------------- */

#define SCTP_PRIMARY_ADDR_ 6
#define SCTP_SOCKOPT_CONNECTX_OLD_ 107
#define SCTP_SOCKOPT_CONNECTX_ 110
#define SCTP_SOCKOPT_CONNECTX3_ 111
#define SCTP_SENDMSG_CONNECT_ 126

/*
 * One destination of an SCTP association: 1 when it must be refused. Reported as a connect (IPPROTO_SCTP)
 * with the view that was denied; `*size` is the length of the sockaddr read, 0 for an unknown family.
 */
static __always_inline int sctp_destination_denied(const struct aegis_state *s, const void *addr, __u32 *size)
{
	struct packet_dest d = {};
	__u16 family = 0;
	*size = 0;
	if (bpf_probe_read_kernel(&family, sizeof(family), addr))
		return 0;
	d.key.protocol = IPPROTO_SCTP_;
	d.alt.protocol = IPPROTO_SCTP_;
	if (family == AF_INET_) {
		struct sockaddr_in sin;
		if (bpf_probe_read_kernel(&sin, sizeof(sin), addr))
			return 0;
		*size = sizeof(sin);
		d.key.space = AEGIS_FAMILY_IPV4;
		__builtin_memcpy(d.key.addr, &sin.sin_addr.s_addr, 4);
		d.dport_be = sin.sin_port;
	} else if (family == AF_INET6_) {
		struct sockaddr_in6 sin6;
		if (bpf_probe_read_kernel(&sin6, sizeof(sin6), addr))
			return 0;
		*size = sizeof(sin6);
		__u32 ip6[4];
		__builtin_memcpy(ip6, &sin6.sin6_addr, 16);
		d.has_alt = set_addr6(s, &d.key, ip6, &d.alt);
		d.alt.protocol = IPPROTO_SCTP_;
		d.dport_be = sin6.sin6_port;
	} else {
		return 0;
	}
	__u32 rule_id = egress_deny_id(s, &d.key, &d.alt, d.has_alt, d.dport_be, 0);
	if (!rule_id && s->info->task_rules) {
		struct aegis_rule *user = user_rule(s, bpf_ntohs(d.dport_be));
		rule_id = user ? user->rule_id : 0;
	}
	if (!rule_id || !in_scope(s))
		return 0;
	__u32 mode = effective_mode(s);
	struct aegis_event *e = record(s, AEGIS_HOOK_CONNECT, mode, rule_id, current_pid(), 1);
	if (e) {
		e->family = d.key.space & 0xff;
		e->protocol = IPPROTO_SCTP_;
		__builtin_memcpy(e->daddr, d.key.addr, 16);
		e->dport = bpf_ntohs(d.dport_be);
		bpf_ringbuf_submit(e, 0);
	}
	return mode == AEGIS_MODE_ENFORCE;
}

#define SCTP_MAX_ADDRS 16

/* One walk over the packed address list of sctp_bind_connect: scalars only, for bpf_loop's callback. */
struct sctp_walk {
	__u64 address; /* the kernel buffer, as a number: read with bpf_probe_read_kernel */
	__u32 addrlen;
	__u32 offset;
	int denied;
};

static long sctp_walk_one(__u32 index, struct sctp_walk *walk)
{
	struct aegis_state s;
	__u32 size;
	if (walk->offset >= walk->addrlen || !load_state(&s))
		return 1;
	if (sctp_destination_denied(&s, (const void *)(walk->address + walk->offset), &size))
		walk->denied = 1;
	if (!size)
		return 1;
	walk->offset += size;
	return 0;
}

/*
 * The kernel asks this hook before an SCTP association is set up with peers: sctp_connectx() with its
 * packed address list, a one-to-many sendmsg to a new peer (SCTP_SENDMSG_CONNECT), and a new primary peer
 * address. Every address listed (up to SCTP_MAX_ADDRS; the rest are left to the backstop) must be
 * allowed. bpf_loop verifies the per-address decision once, where an unrolled loop is more than the
 * verifier takes in an LSM hook.
 */
SEC("lsm/sctp_bind_connect")
int BPF_PROG(aegis_sctp_bind_connect, struct sock *sk, int optname, struct sockaddr *address, int addrlen)
{
	if (optname != SCTP_SOCKOPT_CONNECTX_ && optname != SCTP_SOCKOPT_CONNECTX_OLD_ &&
	    optname != SCTP_SOCKOPT_CONNECTX3_ && optname != SCTP_SENDMSG_CONNECT_ && optname != SCTP_PRIMARY_ADDR_)
		return 0;
	struct sctp_walk walk = { .addrlen = addrlen };
	/* The argument as a number: a typed kernel pointer allows no arithmetic with a variable offset. */
	if (bpf_probe_read_kernel(&walk.address, sizeof(walk.address), &ctx[2]))
		return 0;
	bpf_loop(SCTP_MAX_ADDRS, sctp_walk_one, &walk, 0);
	if (walk.denied)
		return -EPERM;
	return 0;
}

/* connect() of an SCTP socket, which the sctp_bind_connect hook does not see. */
SEC("lsm/socket_connect")
int BPF_PROG(aegis_socket_connect, struct socket *sock, struct sockaddr *address, int addrlen)
{
	struct sock *sk = BPF_CORE_READ(sock, sk);
	if (!sk || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_SCTP_)
		return 0;
	struct aegis_state s;
	if (!load_state(&s))
		return 0;
	__u32 size;
	if (sctp_destination_denied(&s, address, &size))
		return -EPERM;
	return 0;
}
