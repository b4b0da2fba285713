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
	__u32 pos = 0;
	for (int i = 0; i < IPV4_OPTIONS_MAX; i++) {
		if (pos >= len || pos >= IPV4_OPTIONS_MAX)
			break;
		__u8 type = opts[pos & 63];
		if (type == IPOPT_END_)
			break;
		if (type == IPOPT_NOOP_) {
			pos++;
			continue;
		}
		if (pos + 2 > len)
			break;
		__u8 size = opts[(pos + 1) & 63];
		if (size < 2)
			break;
		if (type == IPOPT_LSRR_ || type == IPOPT_SSRR_)
			return pos;
		pos += size;
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
 * (6.1 fails the call with EFAULT otherwise).
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

/* One walk over a route's addresses in a packet: for bpf_loop's callback. */
struct hop_walk {
	struct __sk_buff *skb;
	struct aegis_net_key denied; /* in: the protocol; out: the view of the hop that was denied */
	__u32 rule_id;
	__u32 offset; /* of the first address */
	__u32 count;
	__u16 dport_be;
	__u8 family;
	__u8 found;
};

static long judge_hop(__u32 index, struct hop_walk *walk)
{
	struct aegis_state s;
	if (index >= walk->count || !load_state(&s))
		return 1;
	struct aegis_net_key key = { .protocol = walk->denied.protocol };
	struct aegis_net_key alt = {};
	int has_alt = 0;
	if (walk->family == AEGIS_FAMILY_IPV4) {
		if (bpf_skb_load_bytes(walk->skb, (walk->offset + 4 * index) & 0xffff, key.addr, 4))
			return 1;
		key.space = AEGIS_FAMILY_IPV4;
	} else {
		__u32 hop[4];
		if (bpf_skb_load_bytes(walk->skb, (walk->offset + 16 * index) & 0xffff, hop, 16))
			return 1;
		has_alt = set_addr6(&s, &key, hop, &alt);
		alt.protocol = key.protocol;
	}
	struct aegis_rule *rule = egress_cidr_deny(&s, &key, &alt, has_alt, walk->dport_be);
	if (!rule)
		return 0;
	walk->found = 1;
	walk->rule_id = rule->rule_id;
	walk->denied = key;
	return 1;
}

/*
 * Whether the egress rules deny an address a packet's route names: 1 with the first such hop's rule id
 * and view (`key`, whose protocol is the packet's), else 0. `route` is AEGIS_EVENT_SRCROUTE (an IPv4
 * LSRR/SSRR option at `offset`) or AEGIS_EVENT_RTHDR (an IPv6 routing header at `offset`). A routing
 * header of a type whose addresses are not plain (RPL), or longer than ROUTE_HOPS_MAX, is denied by the
 * guard's entry when there is one.
 */
static __always_inline int route_hop_deny(const struct aegis_state *s, struct __sk_buff *skb,
					  struct aegis_net_key *key, __u32 offset, __u8 route, __u16 dport_be,
					  __u32 *rule_id)
{
	struct hop_walk walk = { .skb = skb, .dport_be = dport_be };
	walk.denied.protocol = key->protocol;
	__u8 fixed[8];
	if (bpf_skb_load_bytes(skb, offset & 0xffff, fixed, sizeof(fixed)))
		return 0;
	if (route == AEGIS_EVENT_SRCROUTE) {
		walk.family = AEGIS_FAMILY_IPV4;
		walk.offset = offset + 3;
		walk.count = fixed[1] > 3 ? (fixed[1] - 3) / 4 : 0;
	} else {
		walk.family = AEGIS_FAMILY_IPV6;
		walk.offset = offset + 8;
		walk.count = fixed[1] / 2;
		if (fixed[2] == IPV6_SRCRT_TYPE_4_ && fixed[4] + 1 < walk.count)
			walk.count = fixed[4] + 1;
		if ((fixed[2] != IPV6_SRCRT_TYPE_0_ && fixed[2] != IPV6_SRCRT_TYPE_2_ && fixed[2] != IPV6_SRCRT_TYPE_4_) ||
		    walk.count > ROUTE_HOPS_MAX) {
			struct aegis_rule *guard = exact_rule(s, AEGIS_RULE_ROUTE_GUARD, 0, 0);
			if (guard)
				*rule_id = guard->rule_id;
			return guard != 0;
		}
	}
	bpf_loop(ROUTE_HOPS_MAX, judge_hop, &walk, 0);
	if (!walk.found)
		return 0;
	*key = walk.denied;
	*rule_id = walk.rule_id;
	return 1;
}

/* The offset of the LSRR/SSRR option of an IPv4 packet whose header is `ihl` 32-bit words, or 0. */
static __always_inline __u32 packet_srr_offset(struct __sk_buff *skb, __u32 ihl)
{
	struct ipv4_options opts = {};
	ihl &= 0xf;
	if (ihl <= 5)
		return 0;
	__u32 len = (ihl - 5) * 4; /* 4 to 40 */
	if (bpf_skb_load_bytes(skb, 20, opts.bytes, len))
		return 0;
	int at = aegis_srr_offset(&opts, len);
	return at < 0 ? 0 : 20 + at;
}

/*
 * The fast test of a TCP or UDP packet: whether it may carry a route (IPv4 options, or an IPv6 extension
 * header before the transport). Plain packets leave after a few loads, without a helper call.
 */
static __always_inline int may_carry_route(struct __sk_buff *skb)
{
	__u8 *data = (__u8 *)(long)skb->data;
	__u8 *end = (__u8 *)(long)skb->data_end;
	if (data + 8 > end)
		return 1; /* not linear this far: the slow path reads it with bpf_skb_load_bytes */
	if (skb->protocol == bpf_htons(ETH_P_IP))
		return (data[0] & 0xf) > 5;
	if (skb->protocol == bpf_htons(ETH_P_IPV6))
		return data[6] != IPPROTO_TCP_ && data[6] != IPPROTO_UDP_;
	return 0;
}
