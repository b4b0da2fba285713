/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Routing headers and source routes, included from aegis.bpf.c before net_guard.bpf.h. A route sends a
 * packet to its first hop, not to the address the connect and sendmsg hooks judged:
 *
 * - aegis_setsockopt (cgroup/setsockopt): while the active generation has egress rules (its
 *   AEGIS_RULE_ROUTE_GUARD entry), a task in scope cannot set an IPv6 routing header (IPV6_RTHDR, any
 *   type, or as IPV6_RTHDR / IPV6_2292RTHDR ancillary data inside IPV6_2292PKTOPTIONS) nor an IPv4
 *   IP_OPTIONS that carries LSRR or SSRR. Clearing one (an empty value) and every other option pass.
 * - route_hop_deny(): the packet backstop (net_guard.bpf.h) judges a TCP or UDP packet that carries a
 *   source route or a routing header by every address the route names, so that the ancillary-data forms
 *   (IP_RETOPTS, IPV6_RTHDR in sendmsg), which no socket hook sees, and routes set before the policy
 *   came, are judged by where the packet really goes.
 *
 * The cgroup/setsockopt program type gets the current task's pid, comm and cgroup ancestors through
 * helpers only from 6.4: everything here reads them from the task instead, so that 6.1 loads it too.
 */

#define SOL_IP_ 0
#define SOL_IPV6_ 41
#define IP_OPTIONS_ 4
#define IPV6_2292RTHDR_ 5
#define IPV6_2292PKTOPTIONS_ 6
#define IPV6_RTHDR_ 57
#define IPOPT_END_ 0
#define IPOPT_NOOP_ 1
#define IPOPT_LSRR_ 0x83
#define IPOPT_SSRR_ 0x89
#define IPV4_OPTIONS_MAX 40
#define IPV6_SRCRT_TYPE_0_ 0
#define IPV6_SRCRT_TYPE_2_ 2
#define IPV6_SRCRT_TYPE_4_ 4
/* A page: a setsockopt program sees at most this much of the value (see aegis_setsockopt). */
#define SOCKOPT_VISIBLE_MAX 4096
/* Ancillary data items walked in an IPV6_2292PKTOPTIONS value; more are refused as a route might hide there. */
#define PKTOPTIONS_CMSGS_MAX 8
/* Addresses of an IPv6 routing header judged one by one; a longer route is refused whole by the guard. */
#define ROUTE_HOPS_MAX 16

/* ---- IPv4 options --------------------------------------------------------------- */

/* Up to IPV4_OPTIONS_MAX bytes of IPv4 options, zero-padded to a power of two for masked indexing. */
struct ipv4_options {
	__u8 bytes[64];
};

/*
 * The offset of the LSRR or SSRR option in `opts` (`len` bytes of IPv4 options, as in the header or as
 * IP_OPTIONS takes them), or -1. Walked as the kernel compiles them: END stops, NOOP is one byte, every
 * other option gives its length in its second byte. A global function: verified once, and its callers
 * see an unknown offset instead of one verifier state per possible value.
 */
__noinline int aegis_srr_offset(const struct ipv4_options *options, __u32 len)
{
	if (!options)
		return -1;
	const __u8 *opts = options->bytes;
	/* By byte position, so that every read has a constant offset: `next` is where the next option starts. */
	__u32 next = 0;
	for (__u32 pos = 0; pos < IPV4_OPTIONS_MAX; pos++) {
		if (pos >= len)
			break;
		if (pos != next)
			continue;
		__u8 type = opts[pos];
		if (type == IPOPT_END_)
			break;
		if (type == IPOPT_NOOP_) {
			next = pos + 1;
			continue;
		}
		if (pos + 1 >= len)
			break;
		__u8 size = opts[pos + 1];
		if (size < 2)
			break;
		if (type == IPOPT_LSRR_ || type == IPOPT_SSRR_)
			return pos;
		next = pos + size;
	}
	return -1;
}

/* ---- the setsockopt guard ---------------------------------------------------------- */

/* A route being set: its event flag and the first hop it names (IPv4 in the first 4 bytes). */
struct route_option {
	__u8 flag; /* AEGIS_EVENT_SRCROUTE or AEGIS_EVENT_RTHDR; 0: not a route */
	__u8 family;
	__u8 hop[16];
};

/* The first hop of an IPv6 routing header at `header` (kernel memory): segments[segments_left] for SRH. */
static __always_inline void rthdr_first_hop(const __u8 *header, __u32 len, struct route_option *route)
{
	__u8 fixed[8];
	if (len < 24 || bpf_probe_read_kernel(fixed, sizeof(fixed), header))
		return;
	__u32 index = fixed[2] == IPV6_SRCRT_TYPE_4_ ? fixed[3] : 0;
	__u32 offset = 8 + 16 * (index & 0xff);
	if (offset + 16 <= len)
		bpf_probe_read_kernel(route->hop, 16, header + (offset & 0xfff));
}

/* An IPV6_2292PKTOPTIONS value (a cmsghdr list): whether it carries a routing header (or hides too much). */
static __always_inline int pktoptions_route(const __u8 *value, __u32 len, struct route_option *route)
{
	__u32 offset = 0;
	for (int i = 0; i < PKTOPTIONS_CMSGS_MAX; i++) {
		struct {
			__u64 len;
			__s32 level;
			__s32 type;
		} cmsg;
		if (offset + sizeof(cmsg) > len)
			return 0;
		if (bpf_probe_read_kernel(&cmsg, sizeof(cmsg), value + (offset & 0xfff)))
			return 1;
		if (cmsg.level == SOL_IPV6_ && (cmsg.type == IPV6_RTHDR_ || cmsg.type == IPV6_2292RTHDR_)) {
			if (cmsg.len > sizeof(cmsg) && cmsg.len <= len - offset)
				rthdr_first_hop(value + ((offset + sizeof(cmsg)) & 0xfff), cmsg.len - sizeof(cmsg), route);
			return 1;
		}
		if (cmsg.len < sizeof(cmsg))
			return 0; /* the kernel refuses it */
		offset += (cmsg.len + 7) & ~7ULL;
	}
	return offset < len;
}

/* Whether this setsockopt sets a route, filling `route` with what the event reports. */
static __always_inline int route_option_of(struct bpf_sockopt *ctx, struct route_option *route)
{
	__s32 len = ctx->optlen;
	const __u8 *value = ctx->optval;
	__u32 visible = len > SOCKOPT_VISIBLE_MAX ? SOCKOPT_VISIBLE_MAX : len;
	if (len <= 0)
		return 0; /* clearing */
	if (ctx->level == SOL_IP_ && ctx->optname == IP_OPTIONS_) {
		struct ipv4_options opts = {};
		__u32 size = visible > IPV4_OPTIONS_MAX ? IPV4_OPTIONS_MAX : visible;
		if (bpf_probe_read_kernel(opts.bytes, size & 63, value))
			return 0; /* nothing the kernel could read either */
		int at = aegis_srr_offset(&opts, size);
		if (at < 0)
			return 0;
		route->flag = AEGIS_EVENT_SRCROUTE;
		route->family = AEGIS_FAMILY_IPV4;
		if (at >= 0 && at <= IPV4_OPTIONS_MAX - 7)
			__builtin_memcpy(route->hop, &opts.bytes[at + 3], 4);
		return 1;
	}
	if (ctx->level != SOL_IPV6_)
		return 0;
	route->family = AEGIS_FAMILY_IPV6;
	route->flag = AEGIS_EVENT_RTHDR;
	if (ctx->optname == IPV6_RTHDR_) {
		rthdr_first_hop(value, visible, route);
		return 1;
	}
	if (ctx->optname == IPV6_2292PKTOPTIONS_)
		return len > SOCKOPT_VISIBLE_MAX || pktoptions_route(value, visible, route);
	return 0;
}

/* The process facts of an event, read from the task (see the top of this file). */
static __always_inline void task_facts(struct aegis_event *e, struct task_struct *task)
{
	__u64 ids = current_euid_egid();
	e->cgroup_id = BPF_CORE_READ(task, cgroups, dfl_cgrp, kn, id);
	e->pid = BPF_CORE_READ(task, tgid);
	e->ppid = BPF_CORE_READ(task, real_parent, tgid);
	e->uid = (__u32)ids;
	e->gid = ids >> 32;
	bpf_probe_read_kernel_str(e->comm, sizeof(e->comm), task->comm);
}

/* 1 when setting `route` must fail: the guard's entry exists and the task is in scope (reported either way). */
static __always_inline int route_refused(struct bpf_sockopt *ctx, const struct route_option *route)
{
	struct aegis_state s;
	if (!load_state(&s))
		return 0;
	struct aegis_rule *rule = exact_rule(&s, AEGIS_RULE_ROUTE_GUARD, 0, 0);
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	if (!rule)
		return 0;
	/* in_scope() by the task's cgroup (file_guard.bpf.h): its helper is not there for this program type before 6.4. */
	if ((s.info->scope_include || s.info->scope_exempt) &&
	    !cgroup_in_scope(&s, BPF_CORE_READ(task, cgroups, dfl_cgrp, kn)))
		return 0;
	__u32 mode = effective_mode(&s);
	struct aegis_event *e = record(&s, AEGIS_HOOK_ROUTE, mode, rule->rule_id, BPF_CORE_READ(task, tgid), 0);
	if (e) {
		task_facts(e, task);
		e->family = route->family;
		e->protocol = ctx->sk->protocol;
		e->flags = route->flag;
		__builtin_memcpy(e->daddr, route->hop, 16);
		bpf_ringbuf_submit(e, 0);
	}
	return mode == AEGIS_MODE_ENFORCE;
}

/*
 * Every setsockopt of a socket in the cgroup passes here: return 1 lets the kernel handle it. A value
 * longer than a page is shown cut to a page; optlen 0 tells the kernel to use the caller's whole value
 * (kernels without upstream's 6.5 fix, which stable series took at different points, fail the call with
 * EFAULT otherwise; Debian's 6.1.0-57 has it).
 */
SEC("cgroup/setsockopt")
int aegis_setsockopt(struct bpf_sockopt *ctx)
{
	struct route_option route = {};
	if (route_option_of(ctx, &route) && route_refused(ctx, &route))
		return 0;
	if (ctx->optlen > SOCKOPT_VISIBLE_MAX)
		ctx->optlen = 0;
	return 1;
}

/* ---- the backstop's view of a route ---------------------------------------------------- */

/*
 * The backstop's decision on a packet, passed to its global functions: aegis_route_deny fills the route
 * and a denied hop, aegis_packet_dropped (net_guard.bpf.h) reports and decides.
 */
struct packet_verdict {
	struct aegis_net_key key; /* the packet's protocol; on a deny, the view of the address that was denied */
	__u32 gen;                /* the generation the backstop decides with */
	__u64 ids;                /* effective gid << 32 | uid the event reports */
	__u32 rule_id;            /* the rule that denied */
	__u16 dport_be;           /* the packet's destination port */
	__u8 route;               /* AEGIS_EVENT_SRCROUTE or AEGIS_EVENT_RTHDR, 0 when the packet has no route */
	__u8 _pad0;
};

/* load_state() for a generation the caller already read. */
static __always_inline int load_generation(struct aegis_state *s, __u32 gen)
{
	s->gen = gen & 1;
	s->info = bpf_map_lookup_elem(&gen_info, &s->gen);
	s->rules = bpf_map_lookup_elem(&rules, &s->gen);
	return s->info != 0;
}

/*
 * Whether the egress rules deny the hop at `offset` of the packet (IPv4 when `family` is
 * AEGIS_FAMILY_IPV4, else IPv6): on a deny, its rule and view go into `v`. A global function: verified
 * once, not once per hop and caller state.
 */
__noinline int aegis_hop_denied(struct __sk_buff *skb, struct packet_verdict *v, __u32 offset, __u32 family)
{
	struct aegis_state s;
	if (!v || !load_generation(&s, v->gen))
		return 0;
	struct aegis_net_key key = { .protocol = v->key.protocol };
	struct aegis_net_key alt = {};
	int has_alt = 0;
	if (family == AEGIS_FAMILY_IPV4) {
		if (bpf_skb_load_bytes(skb, offset & 0xffff, key.addr, 4))
			return 0;
		key.space = AEGIS_FAMILY_IPV4;
	} else {
		__u32 hop[4];
		if (bpf_skb_load_bytes(skb, offset & 0xffff, hop, 16))
			return 0;
		has_alt = set_addr6(&s, &key, hop, &alt);
		alt.protocol = key.protocol;
	}
	/*
	 * The CIDR rules alone: a hop is not where the packet goes, and names (bpf/name_guard.bpf.h) would take the
	 * stack this deep call chain has no room for. The packet's destination is judged with names too.
	 */
	__u64 rule = egress_cidr_deny(&s, &key, &alt, has_alt, v->dport_be);
	if (!rule)
		return 0;
	v->rule_id = word_rule_id(rule);
	v->key = key;
	return 1;
}

/* Where an IPv4 packet's LSRR/SSRR option starts, or 0. Not inlined: its buffer stays off the hop walk's stack. */
__noinline __u32 aegis_packet_srr_offset(struct __sk_buff *skb)
{
	struct ipv4_options opts = {};
	__u8 ihl;
	if (bpf_skb_load_bytes(skb, 0, &ihl, 1))
		return 0;
	ihl &= 0xf;
	if (ihl <= 5)
		return 0;
	__u32 len = (ihl - 5) * 4; /* 4 to 40 */
	if (bpf_skb_load_bytes(skb, 20, opts.bytes, len))
		return 0;
	int at = aegis_srr_offset(&opts, len);
	return at < 0 ? 0 : 20 + at;
}

/* Where an IPv6 packet's routing header starts (extension headers walked as parse_outgoing does), or 0. */
static __always_inline __u32 packet_rthdr_offset(struct __sk_buff *skb)
{
	__u8 next;
	if (bpf_skb_load_bytes(skb, 6, &next, 1))
		return 0;
	__u32 offset = sizeof(struct ipv6hdr);
	for (int i = 0; i < MAX_IPV6_EXT_HEADERS; i++) {
		if (next == IPPROTO_ROUTING_)
			return offset;
		if (next != IPPROTO_HOPOPTS_ && next != IPPROTO_DSTOPTS_)
			return 0;
		struct ipv6_opt_hdr opt;
		if (bpf_skb_load_bytes(skb, offset, &opt, sizeof(opt)))
			return 0;
		next = opt.nexthdr;
		offset += (opt.hdrlen + 1) * 8;
	}
	return 0;
}

/*
 * Whether the egress rules deny an address the route of an outgoing packet names: an IPv4 LSRR/SSRR
 * option's addresses, or an IPv6 routing header's. Fills `v` (route, and on a deny the rule and the hop's
 * view). A routing header of a type whose addresses are not plain (RPL), or with more than
 * ROUTE_HOPS_MAX of them, is denied by the guard's entry when there is one. A global function: verified
 * once, whatever state the backstop reaches it in.
 */
__noinline int aegis_route_deny(struct __sk_buff *skb, struct packet_verdict *v)
{
	if (!v)
		return 0;
	__u32 offset, first, count, step;
	__u8 fixed[8];
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		offset = aegis_packet_srr_offset(skb);
		if (!offset || bpf_skb_load_bytes(skb, offset, fixed, 3))
			return 0;
		v->route = AEGIS_EVENT_SRCROUTE;
		first = offset + 3;
		count = fixed[1] > 3 ? (fixed[1] - 3) / 4 : 0;
		step = 4;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		offset = packet_rthdr_offset(skb);
		if (!offset || bpf_skb_load_bytes(skb, offset, fixed, sizeof(fixed)))
			return 0;
		v->route = AEGIS_EVENT_RTHDR;
		first = offset + 8;
		count = fixed[1] / 2;
		step = 16;
		if (fixed[2] == IPV6_SRCRT_TYPE_4_ && fixed[4] + 1 < count)
			count = fixed[4] + 1;
		if ((fixed[2] != IPV6_SRCRT_TYPE_0_ && fixed[2] != IPV6_SRCRT_TYPE_2_ && fixed[2] != IPV6_SRCRT_TYPE_4_) ||
		    count > ROUTE_HOPS_MAX) {
			struct aegis_state s;
			struct aegis_rule *guard = load_generation(&s, v->gen) ? exact_rule(&s, AEGIS_RULE_ROUTE_GUARD, 0, 0) : 0;
			if (!guard)
				return 0;
			v->rule_id = guard->rule_id;
			return 1;
		}
	} else {
		return 0;
	}
	__u32 family = step == 4 ? AEGIS_FAMILY_IPV4 : AEGIS_FAMILY_IPV6;
	for (__u32 i = 0; i < ROUTE_HOPS_MAX && i < count; i++) {
		if (aegis_hop_denied(skb, v, first + step * i, family))
			return 1;
	}
	return 0;
}

/*
 * The fast test: whether a packet may carry a route (IPv4 options, or an IPv6 extension header before the
 * transport). Plain TCP and UDP packets leave after a few loads, without a helper call.
 */
static __always_inline int may_carry_route(struct __sk_buff *skb)
{
	__u8 *data = (__u8 *)(long)skb->data;
	__u8 *end = (__u8 *)(long)skb->data_end;
	if (data + 8 > end)
		return 1; /* not linear this far: aegis_route_deny reads it with bpf_skb_load_bytes */
	if (skb->protocol == bpf_htons(ETH_P_IP))
		return (data[0] & 0xf) > 5;
	if (skb->protocol == bpf_htons(ETH_P_IPV6))
		return data[6] != IPPROTO_TCP_ && data[6] != IPPROTO_UDP_;
	return 0;
}
