// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * aegisbpf's kernel side. Every hook reads the config map (generation, forced
 * audit, break-glass, deadman), looks the action up in the active generation's
 * rules, and only on a match counts per CPU and reports through the ring buffer.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "aegis.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define EPERM 1
#define ENOSYS 38
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define IPPROTO_TCP_ 6
#define IPPROTO_UDP_ 17
#define IPPROTO_DCCP_ 33
#define IPPROTO_SCTP_ 132
#define IPPROTO_UDPLITE_ 136
#define NET_KEY_FULL_PREFIX (32 + 8 + 16 + 128)
#define SESSION_KEY_FULL_PREFIX (32 + 16 + 16 + 128)
#define MAX_CGROUP_DEPTH 32
#define MAX_IPV6_EXT_HEADERS 4
#define MAX_VLAN_TAGS 2
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8
/* parse_packet results */
#define PACKET_PASS 0     /* not filtered: ARP, IPv6 neighbour discovery, non-IP */
#define PACKET_PARSED 1   /* family, addresses, protocol and ports filled in */
#define PACKET_UNPARSED 2 /* IP we cannot classify (truncated tags, too many extension headers) */
#define IPPROTO_HOPOPTS_ 0
#define IPPROTO_ROUTING_ 43
#define IPPROTO_FRAGMENT_ 44
#define IPPROTO_DSTOPTS_ 60
#define IPPROTO_ICMPV6_ 58

/* ---- maps ---------------------------------------------------------------- */

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, AEGIS_CFG_WORDS);
	__type(key, __u32);
	__type(value, __u64);
} aegis_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct aegis_build);
} aegis_build SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct aegis_gen_info);
} gen_info SEC(".maps");

/*
 * Inner map templates. User space makes a fresh inner map per apply, sized to
 * the rule set (the kernel compares type, key and value size and flags of an
 * inner map with its template, not max_entries), and installs it in the
 * outer map's inactive slot. Sizes, not BTF types: before 6.2 the kernel
 * also compares the BTF-derived timer offset, which a map made without BTF
 * (as user space makes the inner maps) never matches.
 */
struct rules_inner {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(struct aegis_rule_key));
	__uint(value_size, sizeof(struct aegis_rule));
};

struct net_rules_inner {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(key_size, sizeof(struct aegis_net_key));
	__uint(value_size, sizeof(struct aegis_rule));
};

/*
 * CIDR rules of a whole address (/32 and /128) by their full key, one inner hash per generation: a hash takes
 * 100,000 entries in a third of a trie's time, and a lookup there costs no walk. Preallocated: its size is
 * the generation's own.
 */
struct net_exact_inner {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(struct aegis_net_key));
	__uint(value_size, sizeof(struct aegis_rule));
};

/* Exact-match rules of every kind (AEGIS_RULE_*), one inner map per generation. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, struct rules_inner);
} rules SEC(".maps");

/* CIDR rules of egress and ingress (AEGIS_NET_*), one inner trie per generation. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, struct net_rules_inner);
} net_rules SEC(".maps");

/* The whole-address CIDR rules of each generation (see net_exact_inner). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, struct net_exact_inner);
} net_exact SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct aegis_session_key);
	__type(value, struct aegis_session);
} ingress_session SEC(".maps");

/* Expiring exceptions (struct aegis_exception, bpf/exception.bpf.h): outside the generations. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, AEGIS_EXCEPTION_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct aegis_exception_key);
	__type(value, struct aegis_exception);
} exceptions SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, AEGIS_EXCEPTION_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct aegis_exception_net_key);
	__type(value, struct aegis_exception);
} exception_nets SEC(".maps");

/* AEGIS_EXCEPTION_* bits of the kinds with entries: the switch a denied access reads first. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} exception_kinds SEC(".maps");

/*
 * Rate limit state per (rule, pid, generation). Not an LRU: an evicted entry
 * would take its suppressed count with it. When it is full, events pass
 * unlimited (and may be counted lost in the ring buffer instead); the flush
 * program reports and removes idle entries.
 */
#ifndef AEGIS_EVENT_RATE_ENTRIES
#define AEGIS_EVENT_RATE_ENTRIES 65536
#endif

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, AEGIS_EVENT_RATE_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct aegis_rate_key);
	__type(value, struct aegis_rate);
} event_rate SEC(".maps");

/*
 * The last ingress match of each CPU: the rule word match_net_of() gave (0: no rule) for a packet's source,
 * family, protocol and port, under the generation contents gen_info.stamp names. A flood comes from few
 * sources: its packets after the first skip the CIDR lookups (a hash and a trie walk, about a third of a
 * dropped packet's cost). A new apply writes a new stamp, so no match outlives the contents it was made from.
 * `seq` is odd while an entry is written: a test run of the program that a packet's softirq interrupts on
 * the same CPU never reads half of one entry and half of another.
 *
 * And the rate limit of that source's drops: once its event_rate entry is found past its burst in a window,
 * the drops after it in that window are counted here (`pending`) instead of in the shared entry (its hash
 * lookup was a fifth of a drop). `pending` is version << 32 | the count; the version changes before any
 * sat_* field does. The count goes into the entry's `suppressed` when this CPU's next drop of the source
 * falls in another window or a packet of another source takes the slot, and otherwise at the next flush
 * (aegis_flush_rates reads every CPU's slot), which takes it only if the version is still the one it read
 * the fields with: every drop is counted once, in the entry of the rule, source and generation it was
 * suppressed under.
 */
struct xdp_match {
	__u32 seq;
	__u8 family;
	__u8 protocol;
	__u16 dport_be;
	__u64 stamp;
	__u8 saddr[16];
	__u64 word;
	__u64 sat_window; /* the window (rate_window(1)) the source's entry was found past its burst in; 0: none */
	__u32 sat_rule_id;
	__u32 sat_who;
	__u32 sat_gen;
	__u32 sat_mode;
	__u64 pending;
};
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xdp_match);
} xdp_matches SEC(".maps");

/* CLOCK_BOOTTIME as this CPU last read it, and the jiffies it was read at (boot_ns_this_tick). */
struct boot_clock_read {
	__u64 jiffies;
	__u64 ns;
};
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct boot_clock_read);
} boot_clocks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, AEGIS_COUNTER_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/* Not LRU: an evicted entry would take its count with it. Full: later rules go uncounted here (the hook counters still count them). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, AEGIS_RULE_HIT_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct aegis_rule_hit_key);
	__type(value, __u64);
} rule_hits SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * AEGIS_XDP_STAT_SLOTS);
	__type(key, __u32);
	__type(value, struct aegis_iface_slot);
} ingress_ifaces SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2 * AEGIS_RULE_HIT_ROWS * AEGIS_RULE_HIT_SLOTS);
	__type(key, __u32);
	__type(value, struct aegis_rule_hit_slot);
} rule_hit_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, AEGIS_XDP_STAT_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct aegis_xdp_stat_key);
	__type(value, __u64);
} xdp_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, AEGIS_XDP_STAT_SLOTS);
	__type(key, __u32);
	__type(value, struct aegis_xdp_slot);
} xdp_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
} events SEC(".maps");

/* Keep the shared structs and enums in the object's BTF for the layout and constants tests. */
const volatile struct {
	struct aegis_event event;
	struct aegis_rate rate;
	struct aegis_rate_key rate_key;
	struct aegis_rule_key rule_key;
	struct aegis_net_key net_key;
	struct aegis_rule rule;
	struct aegis_gen_info gen_info;
	struct aegis_session_key session_key;
	struct aegis_session session;
	struct aegis_inode_key inode_key;
	struct aegis_inherit inherit;
	struct aegis_conn conn;
	struct aegis_rule_hit_key rule_hit_key;
	struct aegis_xdp_stat_key xdp_stat_key;
	struct aegis_xdp_slot xdp_slot;
	struct aegis_rule_hit_slot rule_hit_slot;
	struct aegis_iface_slot iface_slot;
	struct aegis_learned_key learned_key;
	struct aegis_learned learned;
	struct aegis_exception_key exception_key;
	struct aegis_exception_net_key exception_net_key;
	struct aegis_exception exception;
} aegis_structs_btf_anchor = {};
const volatile struct {
	enum aegis_layout layout;
	enum aegis_mode mode;
	enum aegis_decision decision;
	enum aegis_action action;
	enum aegis_hook hook;
	enum aegis_counter counter;
	enum aegis_family family;
	enum aegis_scope scope;
	enum aegis_user_ports user_ports;
	enum aegis_rate_limit rate_limit;
	enum aegis_event_flag event_flag;
	enum aegis_break_glass break_glass;
	enum aegis_sizes sizes;
	enum aegis_cfg_word cfg_word;
	enum aegis_rule_kind rule_kind;
	enum aegis_net_space net_space;
	enum aegis_ingress_absent ingress_absent;
	enum aegis_host_shape host_shape;
	enum aegis_capacity capacity;
	enum aegis_signal signal;
	enum aegis_inherit_limits inherit_limits;
	enum aegis_inherit_flag inherit_flag;
	enum aegis_stat_limits stat_limits;
	enum aegis_ptrace_op ptrace_op;
	enum aegis_file_op file_op;
	enum aegis_exec_allow exec_allow;
	enum aegis_exec_reason exec_reason;
	enum aegis_build_programs build_programs;
	enum aegis_subjects subjects;
	enum aegis_identity_op identity_op;
	enum aegis_writer_scope writer_scope;
	enum aegis_learned_limits learned_limits;
	enum aegis_exception_kind exception_kind;
	enum aegis_exception_limits exception_limits;
	enum aegis_dns_stat dns_stat;
	enum aegis_dns_limits dns_limits;
	enum aegis_rule_hit rule_hit;
} aegis_enums_btf_anchor = {};

/* ---- shared decisions ---------------------------------------------------- */

struct aegis_state {
	struct aegis_gen_info *info;
	void *rules; /* the active generation's inner map of exact rules; NULL when it has none */
	__u32 gen;
};

static __always_inline __u64 config_word(__u32 word)
{
	__u64 *value = bpf_map_lookup_elem(&aegis_cfg, &word);
	return value ? *value : 0;
}

/*
 * The generation word is read once, and everything after it comes from that
 * generation: an apply installs a generation's inner maps before it flips the
 * word, and replaces them only after a grace period past the next flip.
 */
static __always_inline void load_rules(struct aegis_state *s)
{
	s->gen = config_word(AEGIS_CFG_ACTIVE_GEN) & 1;
	s->rules = bpf_map_lookup_elem(&rules, &s->gen);
}

/*
 * The rest of the generation load_rules() read: the hottest hooks (file open, exec mappings) read it only
 * once a rule has matched, so that a miss costs the generation word and one hash lookup.
 */
static __always_inline int load_info(struct aegis_state *s)
{
	s->info = bpf_map_lookup_elem(&gen_info, &s->gen);
	return s->info != 0;
}

static __always_inline int load_state(struct aegis_state *s)
{
	load_rules(s);
	return load_info(s);
}

static __always_inline struct aegis_rule *exact_rule(const struct aegis_state *s, __u32 kind, __u64 a, __u32 b)
{
	if (!s->rules)
		return 0;
	struct aegis_rule_key key = { .a = a, .b = b, .kind = kind };
	return bpf_map_lookup_elem(s->rules, &key);
}

static __always_inline __u32 effective_mode(const struct aegis_state *s)
{
	if (s->info->mode != AEGIS_MODE_ENFORCE || config_word(AEGIS_CFG_FORCE_AUDIT))
		return AEGIS_MODE_AUDIT;
	/* Break-glass and the deadman end by themselves at their deadline, with or without an agent. */
	__u64 glass = config_word(AEGIS_CFG_BREAK_GLASS);
	if (glass == AEGIS_BREAK_GLASS_ON || (glass > AEGIS_BREAK_GLASS_ON && bpf_ktime_get_boot_ns() < glass))
		return AEGIS_MODE_AUDIT;
	__u64 deadline = config_word(AEGIS_CFG_DEADMAN);
	if (deadline && bpf_ktime_get_boot_ns() > deadline)
		return AEGIS_MODE_AUDIT;
	return AEGIS_MODE_ENFORCE;
}

/* Atomic: a softirq (XDP) and a task on the same CPU may count into the same slot. */
static __always_inline void count_n(__u32 slot, __u64 n)
{
	__u64 *value = bpf_map_lookup_elem(&counters, &slot);
	if (value)
		__sync_fetch_and_add(value, n);
}

/* Adds one to a per-CPU hash counter, making its entry on first use (atomic: see count_n). */
static __always_inline void count_key(void *map, const void *key)
{
	__u64 *value = bpf_map_lookup_elem(map, key);
	if (value) {
		__sync_fetch_and_add(value, 1);
		return;
	}
	__u64 one = 1;
	if (bpf_map_update_elem(map, key, &one, BPF_NOEXIST) == -17 /* EEXIST: made meanwhile */) {
		value = bpf_map_lookup_elem(map, key);
		if (value)
			__sync_fetch_and_add(value, 1);
	}
}

/* Whether the current task is inside the rule set's scope: never in an exempt subtree, and inside an included one when any is listed. */
static __always_inline int in_scope(const struct aegis_state *s)
{
	if (!s->info->scope_include && !s->info->scope_exempt)
		return 1;
	int included = s->info->scope_include == 0;
	for (int level = 0; level < MAX_CGROUP_DEPTH; level++) {
		__u64 id = bpf_get_current_ancestor_cgroup_id(level);
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

/* The task's effective uid (low 32 bits) and gid (high 32 bits), which decide what a process may do. */
static __always_inline __u64 current_euid_egid(void)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u32 euid = BPF_CORE_READ(task, cred, euid.val);
	__u32 egid = BPF_CORE_READ(task, cred, egid.val);
	return (__u64)egid << 32 | euid;
}

#define RATE_TOMBSTONE (~0ULL)
#define RATE_RETRIES 4

/*
 * CLOCK_BOOTTIME as read on this CPU during the current tick: at most a tick behind the clock, never ahead.
 * For the expiry of learned addresses, which every connect by name asks, and the rate windows of XDP, which
 * every dropped packet asks: the clock read (a helper and the timekeeping functions below it, each return
 * through the return thunk on hosts that need one) was a quarter of either path. Each writer reads jiffies
 * before the clock; the time stored only ever moves forward (compare-and-swap), and a writer stores its
 * jiffies only after its own time went in. So whatever a program that interrupted or preempted another
 * leaves, the time stored with a tick was read during that tick or later; a reader that finds other jiffies
 * reads the clock itself.
 */
static __always_inline __u64 boot_ns_this_tick(void)
{
	__u32 zero = 0;
	struct boot_clock_read *last = bpf_map_lookup_elem(&boot_clocks, &zero);
	__u64 jiffies = bpf_jiffies64();
	if (last && last->jiffies == jiffies && last->ns)
		return last->ns;
	__u64 now = bpf_ktime_get_boot_ns();
	/*
	 * Only a later time replaces the one stored, and only the writer that stored it then stores its jiffies:
	 * a writer interrupted between its reads and its stores (by a program that stored a later tick) cannot
	 * put back a time older than that tick's.
	 */
	__u64 held = last ? last->ns : 0;
	if (last && held < now && __sync_val_compare_and_swap(&last->ns, held, now) == held) {
		barrier();
		last->jiffies = jiffies;
	}
	return now;
}

/*
 * Which reading of CLOCK_BOOTTIME the rate limit of `hook` takes. Ingress (XDP) takes the one this CPU made
 * during the current tick (boot_ns_this_tick): every packet of a flood it drops asks for the window, and a
 * clock read per packet was a quarter of a dropped packet's cost. The other hooks read the clock. An entry's
 * windows all come from one hook's reading, since its rule id belongs to one hook (the flush takes the
 * reading of the entry's hook). Windows only move forward (rate_admit): a reader whose reading is behind the
 * entry's window, by at most a tick, counts in the entry's.
 */
static __always_inline int rate_per_tick(__u32 hook)
{
	return hook == AEGIS_HOOK_INGRESS;
}

static __always_inline __u64 rate_window(int per_tick)
{
	return (per_tick ? boot_ns_this_tick() : bpf_ktime_get_boot_ns()) >> AEGIS_RATE_WINDOW_SHIFT;
}

/*
 * The rate limit: 0 when the decision is suppressed (it is then carried by a
 * later event's count or a summary), else the count the event reports: 1 plus
 * what was suppressed before it. One compare-and-swap moves the window and
 * the emitted count together, so no window lets more than its burst through.
 */
static __always_inline __u32 rate_admit(const struct aegis_state *s, __u32 hook, __u32 decision, __u32 mode,
					__u32 rule_id, __u32 who)
{
	struct aegis_rate_key key = { .rule_id = rule_id, .who = who, .gen = s->gen };
	__u64 window = rate_window(rate_per_tick(hook));
	struct aegis_rate *rate = bpf_map_lookup_elem(&event_rate, &key);
	if (!rate) {
		struct aegis_rate fresh = { .window = window << 32 | 1, .pid = who, .hook = hook,
					    .decision = decision, .mode = mode };
		/* A full table, or another CPU's entry made meanwhile: the event goes out unlimited. */
		bpf_map_update_elem(&event_rate, &key, &fresh, BPF_NOEXIST);
		return 1;
	}
	for (int i = 0; i < RATE_RETRIES; i++) {
		__u64 old = rate->window;
		if (old == RATE_TOMBSTONE)
			return 1; /* being removed by the flush: not limited */
		/*
		 * Windows only move forward: XDP's reading of the clock is its CPU's of the current tick, so near a
		 * window's end one CPU may still be in the window another has left; it counts in the entry's.
		 */
		if (old >> 32 < window) {
			if (__sync_val_compare_and_swap(&rate->window, old, window << 32 | 1) == old)
				return 1 + __sync_lock_test_and_set(&rate->suppressed, 0);
			continue;
		}
		if ((__u32)old >= AEGIS_RATE_BURST)
			break;
		if (__sync_val_compare_and_swap(&rate->window, old, old + 1) == old)
			return 1;
	}
	rate->hook = hook;
	rate->decision = decision;
	rate->mode = mode;
	__sync_fetch_and_add(&rate->suppressed, 1);
	count_n(AEGIS_COUNTER_EVENTS_SUPPRESSED, 1);
	return 0;
}

/*
 * A zeroed ring buffer record with the fields every event has, standing for
 * `n` decisions; NULL when the ring buffer is full, and then the n decisions
 * are counted as lost.
 */
static __always_inline struct aegis_event *reserve_event(__u32 hook, __u32 decision, __u32 mode, __u32 rule_id,
							 __u32 gen, __u32 n)
{
	struct aegis_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_n(AEGIS_COUNTER_EVENTS_LOST, n);
		return 0;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->ts_boot_ns = bpf_ktime_get_boot_ns();
	e->rule_id = rule_id;
	e->count = n;
	e->hook = hook;
	e->decision = decision;
	e->mode = mode;
	e->gen = gen;
	return e;
}

/*
 * Counts a decision of rule `rule_id`: ingress, and an allow by name, in its slot of rule_hit_slots where the
 * slot is its own on this CPU (or free); every other hook, and a slot taken by another rule, in rule_hits.
 * `hook` and `decision` are constants in every caller, so the other hooks compile to the rule_hits count alone.
 */
static __always_inline void count_rule_hit(const struct aegis_state *s, __u32 hook, __u32 decision, __u32 rule_id)
{
	if ((hook == AEGIS_HOOK_INGRESS && decision <= AEGIS_DECISION_AUDIT) || decision == AEGIS_RULE_HIT_NAME_ALLOW) {
		__u32 index = ((s->gen & 1) * AEGIS_RULE_HIT_ROWS + decision) * AEGIS_RULE_HIT_SLOTS +
			      rule_id % AEGIS_RULE_HIT_SLOTS;
		struct aegis_rule_hit_slot *slot = bpf_map_lookup_elem(&rule_hit_slots, &index);
		__u64 owner = AEGIS_RULE_HIT_OWNED | rule_id;
		/* Atomic, as count_n: a test run in a task and a softirq on the same CPU may meet in a slot. */
		if (slot && (slot->owner == owner || __sync_val_compare_and_swap(&slot->owner, 0, owner) == 0)) {
			__sync_fetch_and_add(&slot->count, 1);
			return;
		}
	}
	struct aegis_rule_hit_key hit = { .rule_id = rule_id, .gen = s->gen, .decision = decision };
	count_key(&rule_hits, &hit);
}

/*
 * Counts a matched decision and, unless the rate limit suppresses it, reserves
 * its event with the common fields filled in (and the process's, when there is
 * one: not in XDP). The caller adds its own fields and submits. NULL when the
 * event is suppressed or the ring buffer is full (counted as lost, with every
 * decision the record would have carried).
 */
/* Counts a decision: the hook's counter of its kind, and the rule's hits. */
static __always_inline void count_decision(const struct aegis_state *s, __u32 hook, __u32 decision, __u32 rule_id)
{
	count_n(hook * 2 + decision, 1);
	count_rule_hit(s, hook, decision, rule_id);
}

static __always_inline struct aegis_event *record_decision(const struct aegis_state *s, __u32 hook, __u32 mode,
							   __u32 decision, __u32 rule_id, __u32 who, int with_process)
{
	count_decision(s, hook, decision, rule_id);
	__u32 n = rate_admit(s, hook, decision, mode, rule_id, who);
	if (!n)
		return 0;
	struct aegis_event *e = reserve_event(hook, decision, mode, rule_id, s->gen, n);
	if (!e)
		return 0;
	if (with_process) {
		struct task_struct *task = (struct task_struct *)bpf_get_current_task();
		__u64 ids = current_euid_egid();
		e->cgroup_id = bpf_get_current_cgroup_id();
		e->pid = bpf_get_current_pid_tgid() >> 32;
		e->ppid = BPF_CORE_READ(task, real_parent, tgid);
		e->uid = (__u32)ids;
		e->gid = ids >> 32;
		bpf_get_current_comm(e->comm, sizeof(e->comm));
	}
	return e;
}

static __always_inline struct aegis_event *record(const struct aegis_state *s, __u32 hook, __u32 mode, __u32 rule_id,
						  __u32 who, int with_process)
{
	__u32 decision = mode == AEGIS_MODE_ENFORCE ? AEGIS_DECISION_DENY : AEGIS_DECISION_AUDIT;
	return record_decision(s, hook, mode, decision, rule_id, who, with_process);
}

static __always_inline __u32 current_pid(void)
{
	return bpf_get_current_pid_tgid() >> 32;
}

/*
 * Reports what the rate limit suppressed in windows that have ended, and
 * removes idle entries: run by user space (BPF_PROG_TEST_RUN) on a timer, so
 * that the last window of a flood is reported even if no event follows it.
 */
struct flush_ctx {
	__u64 window;      /* the current window on CLOCK_BOOTTIME */
	__u64 tick_window; /* and as this CPU read the clock this tick (rate_per_tick) */
	__u32 reported;
};

/* A summary of `n` suppressed decisions of the entry `key` (counted as lost when the ring buffer is full). */
static __always_inline void flush_summary(const struct aegis_rate_key *key, const struct aegis_rate *rate, __u32 n,
					  struct flush_ctx *ctx)
{
	struct aegis_event *e = reserve_event(rate->hook, rate->decision, rate->mode, key->rule_id, key->gen, n);
	if (!e)
		return;
	e->pid = rate->pid;
	e->flags = AEGIS_EVENT_SUMMARY;
	bpf_ringbuf_submit(e, 0);
	ctx->reported += n;
}

static long flush_rate(struct bpf_map *map, struct aegis_rate_key *key, struct aegis_rate *rate, struct flush_ctx *ctx)
{
	__u64 state = rate->window;
	__u64 window = rate_per_tick(rate->hook) ? ctx->tick_window : ctx->window;
	/* An entry in this window, or in a later one another CPU's reading began, has not ended. */
	if (state == RATE_TOMBSTONE || state >> 32 >= window)
		return 0;
	__u32 n = __sync_lock_test_and_set(&rate->suppressed, 0);
	if (n) {
		flush_summary(key, rate, n, ctx);
		return 0;
	}
	/* Idle for a whole window: remove it. The tombstone makes a hook racing with us pass unlimited instead of counting into a removed entry. */
	if ((state >> 32) + 1 < window &&
	    __sync_val_compare_and_swap(&rate->window, state, RATE_TOMBSTONE) == state) {
		/* What a CPU folded in (rate_fold) between the exchange above and the tombstone. */
		n = __sync_lock_test_and_set(&rate->suppressed, 0);
		if (n)
			flush_summary(key, rate, n, ctx);
		bpf_map_delete_elem(map, key);
	}
	return 0;
}

/*
 * Adds `n` ingress drops suppressed on one CPU (xdp_match.pending) to their event_rate entry, to be reported
 * with its next event or summary. An entry gone, or being removed by the flush, has them reported at once as
 * a summary of their own (whoever takes the entry's count with the exchange reports it: the flush, or here).
 */
static __always_inline void rate_fold(__u32 rule_id, __u32 who, __u32 gen, __u32 mode, __u32 n)
{
	struct aegis_rate_key key = { .rule_id = rule_id, .who = who, .gen = gen };
	struct aegis_rate *rate = bpf_map_lookup_elem(&event_rate, &key);
	if (rate && rate->window != RATE_TOMBSTONE) {
		__sync_fetch_and_add(&rate->suppressed, n);
		if (*(volatile __u64 *)&rate->window != RATE_TOMBSTONE)
			return;
		n = __sync_lock_test_and_set(&rate->suppressed, 0);
		if (!n)
			return;
	}
	__u32 decision = mode == AEGIS_MODE_ENFORCE ? AEGIS_DECISION_DENY : AEGIS_DECISION_AUDIT;
	struct aegis_event *e = reserve_event(AEGIS_HOOK_INGRESS, decision, mode, rule_id, gen, n);
	if (!e)
		return; /* counted lost */
	e->pid = who;
	e->flags = AEGIS_EVENT_SUMMARY;
	bpf_ringbuf_submit(e, 0);
}

/* Takes the count CPU `cpu`'s xdp_matches slot holds (see struct xdp_match), while its fields are unchanged. */
static long flush_match(__u64 cpu, void *unused)
{
	__u32 zero = 0;
	struct xdp_match *m = bpf_map_lookup_percpu_elem(&xdp_matches, &zero, cpu);
	if (!m)
		return 1; /* past the last possible CPU */
	/* An ordered read (an atomic or of nothing): the fields below are read after it on any CPU. */
	__u64 pending = __sync_fetch_and_or(&m->pending, 0);
	if (!(__u32)pending)
		return 0;
	__u32 rule_id = m->sat_rule_id;
	__u32 who = m->sat_who;
	__u32 gen = m->sat_gen;
	__u32 mode = m->sat_mode;
	barrier();
	/* Changed meanwhile (the CPU counted more, or took the slot for other fields): the next flush takes it. */
	if (__sync_val_compare_and_swap(&m->pending, pending, pending & ~0xffffffffULL) != pending)
		return 0;
	rate_fold(rule_id, who, gen, mode, (__u32)pending);
	return 0;
}

#define FLUSH_CPUS_MAX 8192

SEC("xdp")
int aegis_flush_rates(struct xdp_md *xdp)
{
	struct flush_ctx ctx = { .window = rate_window(0), .tick_window = rate_window(1) };
	/* First every CPU's ingress drops not yet in their entries, so that what the entries report is whole. */
	bpf_loop(FLUSH_CPUS_MAX, flush_match, 0, 0);
	bpf_for_each_map_elem(&event_rate, flush_rate, &ctx, 0);
	return XDP_PASS;
}

/* ---- files and exec ------------------------------------------------------ */

/* An inode as the kernel names it: (s_dev in kernel encoding, i_ino). */
struct inode_id {
	__u64 ino;
	__u32 dev;
};

/* Expiring exceptions: what a denied access asks before it is refused. */
#include "exception.bpf.h"

/* Defined in file_guard.bpf.h, included at the end. */
static __always_inline __u8 deny_signal(void);
static __always_inline struct aegis_rule *inherited_rule(const struct aegis_state *s, __u32 kind, struct inode *inode,
							 const struct inode_id *id);
static __always_inline void audit_memfd_exec(struct inode *inode);
/* Defined in exec_allow.bpf.h, included at the end. */
static __always_inline int exec_allow_denied(struct file *file, int mode_override, int mapping);
/* Defined in file_protect.bpf.h, included at the end. */
static __always_inline int protect_denied(struct inode *inode, __u8 op);
static __always_inline int protect_decide(struct aegis_state *s, struct inode *inode, const struct inode_id *id,
					  __u8 op);
static __always_inline int hook_opens_for_write(struct file *file);
static __always_inline void audit_protect_open(struct file *file);

/*
 * The decision for an inode rule hit: counts, reports (with `op`, what the task tried, for hooks that
 * judge several operations), signals a denied task, and says whether to deny.
 */
static __always_inline int inode_decision_op(const struct aegis_state *s, __u32 hook, const struct aegis_rule *rule,
					     const struct inode_id *id, __u32 mode, __u8 op)
{
	__u16 exception = inode_exception(hook == AEGIS_HOOK_EXEC ? AEGIS_EXCEPTION_EXEC : AEGIS_EXCEPTION_FILE, id);
	int deny = mode == AEGIS_MODE_ENFORCE && !exception;
	/* Signalled before the record is reserved: 6.1's verifier loses a reference checked across a call. */
	__u8 sig = deny ? deny_signal() : 0;
	struct aegis_event *e = record_decision(s, hook, mode, deny ? AEGIS_DECISION_DENY : AEGIS_DECISION_AUDIT,
						rule->rule_id, current_pid(), 1);
	if (e) {
		e->ino = id->ino;
		e->dev = id->dev;
		e->signal = sig;
		e->op = op;
		e->exception = exception;
		bpf_ringbuf_submit(e, 0);
	}
	/*
	 * Opaque to the compiler: knowing it 0 or 1, clang turns a caller's `return -EPERM` into a negation the LSM
	 * return-value check cannot bound once the exception lookup is in between.
	 */
	barrier_var(deny);
	return deny;
}

static __always_inline int inode_decision(const struct aegis_state *s, __u32 hook, const struct aegis_rule *rule,
					  const struct inode_id *id, __u32 mode)
{
	return inode_decision_op(s, hook, rule, id, mode, 0);
}

/*
 * The rule of `kind` for the inode `id` names: its own, or the one it inherited by replacing a denied
 * inode. A file no rule names costs one hash lookup: the inheritance table is only searched once some
 * inode has inherited a rule (it never has, on most hosts).
 */
static __always_inline struct aegis_rule *inode_rule(const struct aegis_state *s, __u32 kind, struct inode *inode,
						     const struct inode_id *id)
{
	struct aegis_rule *rule = exact_rule(s, kind, id->ino, id->dev);
	if (rule || !config_word(AEGIS_CFG_INHERITED))
		return rule;
	return inherited_rule(s, kind, inode, id);
}

/* (ino, dev) of any inode pointer, read through helpers (tracepoints, pointers read from memory). */
static __always_inline void read_inode_id(struct inode *inode, struct inode_id *id)
{
	id->ino = BPF_CORE_READ(inode, i_ino);
	id->dev = BPF_CORE_READ(inode, i_sb, s_dev);
}

/* 1 when the access to the inode `id` names (operation `op` of `hook`, or 0) must fail. */
static __always_inline int inode_id_denied(__u32 kind, __u32 hook, struct inode *inode, const struct inode_id *id,
					   __u8 op)
{
	struct aegis_state s;
	load_rules(&s);
	struct aegis_rule *rule = inode_rule(&s, kind, inode, id);
	if (!rule || !load_info(&s) || !in_scope(&s))
		return 0;
	return inode_decision_op(&s, hook, rule, id, effective_mode(&s), op);
}

/* Enforcing hooks (BPF-LSM): 1 when the access (operation `op` of `hook`, or 0) must fail. */
static __always_inline int inode_denied_op(__u32 kind, __u32 hook, struct inode *inode, __u8 op)
{
	struct inode_id id;
	if (!inode)
		return 0;
	read_inode_id(inode, &id);
	return inode_id_denied(kind, hook, inode, &id, op);
}

/*
 * inode_denied_op for an inode the hook was handed (a pointer the verifier knows as a kernel object): plain
 * loads instead of helper calls, on the hottest hooks. Only for such pointers: the verifier refuses a
 * load through one read from memory.
 */
static __always_inline int hook_inode_denied(__u32 kind, __u32 hook, struct inode *inode)
{
	if (!inode)
		return 0;
	struct inode_id id = { .ino = inode->i_ino, .dev = inode->i_sb->s_dev };
	return inode_id_denied(kind, hook, inode, &id, 0);
}

/*
 * A file rule's open (file.open), then files.protect's open for writing (file.write), from one read of the
 * generation: a read that no rule names costs the generation word and one lookup, a write one more (the
 * protect switch, off unless the policy protects something).
 */
static __always_inline int open_denied(struct file *file)
{
	struct inode *inode = file->f_inode;
	struct aegis_state s;
	if (!inode)
		return 0;
	struct inode_id id = { .ino = inode->i_ino, .dev = inode->i_sb->s_dev };
	load_rules(&s);
	struct aegis_rule *rule = inode_rule(&s, AEGIS_RULE_FILE, inode, &id);
	if (rule && load_info(&s) && in_scope(&s) &&
	    inode_decision_op(&s, AEGIS_HOOK_FILE_OPEN, rule, &id, effective_mode(&s), 0))
		return 1;
	if (!hook_opens_for_write(file) || !exact_rule(&s, AEGIS_RULE_PROTECT_ON, 0, 0))
		return 0;
	return protect_decide(&s, inode, &id, AEGIS_FILE_OP_OPEN_WRITE);
}

/*
 * The verifier checks an LSM program's return value is in [-4095, 0]: return
 * constants from separate branches so it never sees a computed value.
 */
SEC("lsm/file_open")
int BPF_PROG(aegis_file_open, struct file *file)
{
	if (open_denied(file))
		return -EPERM;
	return 0;
}

/*
 * Called once per binary handler round: the script, then its interpreter. An exec.deny rule decides
 * first; then the allowlist, where the live generation has one.
 */
SEC("lsm/bprm_check_security")
int BPF_PROG(aegis_bprm_check, struct linux_binprm *bprm)
{
	if (hook_inode_denied(AEGIS_RULE_EXEC, AEGIS_HOOK_EXEC, bprm->file->f_inode))
		return -EPERM;
	if (exec_allow_denied(bprm->file, -1, 0))
		return -EPERM;
	return 0;
}

/* Audit-only fallbacks where BPF-LSM cannot load: they report "would deny". */
static __always_inline void audit_inode(__u32 kind, __u32 hook, struct inode *inode)
{
	struct aegis_state s;
	struct inode_id id;
	if (!inode)
		return;
	load_rules(&s);
	read_inode_id(inode, &id);
	struct aegis_rule *rule = inode_rule(&s, kind, inode, &id);
	if (rule && load_info(&s) && in_scope(&s))
		inode_decision(&s, hook, rule, &id, AEGIS_MODE_AUDIT);
}

static __always_inline void audit_open_result(long fd)
{
	if (fd < 0)
		return;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt || fd >= BPF_CORE_READ(fdt, max_fds))
		return;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *file = 0;
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) || !file)
		return;
	audit_inode(AEGIS_RULE_FILE, AEGIS_HOOK_FILE_OPEN, BPF_CORE_READ(file, f_inode));
	audit_protect_open(file);
}

SEC("tracepoint/syscalls/sys_exit_openat")
int aegis_tp_openat(struct trace_event_raw_sys_exit *ctx)
{
	audit_open_result(ctx->ret);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_open")
int aegis_tp_open(struct trace_event_raw_sys_exit *ctx)
{
	audit_open_result(ctx->ret);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_openat2")
int aegis_tp_openat2(struct trace_event_raw_sys_exit *ctx)
{
	audit_open_result(ctx->ret);
	return 0;
}

SEC("tracepoint/sched/sched_process_exec")
int aegis_tp_exec(void *ctx)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct file *exe = BPF_CORE_READ(task, mm, exe_file);
	struct inode *inode = BPF_CORE_READ(exe, f_inode);
	audit_inode(AEGIS_RULE_EXEC, AEGIS_HOOK_EXEC, inode);
	audit_memfd_exec(inode);
	/* The program that now runs, only: a script's interpreter, not the script; no library mappings. */
	exec_allow_denied(exe, AEGIS_MODE_AUDIT, 0);
	return 0;
}

/* ---- network ------------------------------------------------------------- */

/*
 * A matched rule as one scalar, 0 for none: RULE_WORD_FOUND | prefix_len << 40 | action << 32 | rule_id (struct
 * aegis_rule's first six bytes). The two CIDR maps give pointers into different maps, which the verifier
 * would carry as different states through every lookup after them (2.6 times the instructions verified); a
 * scalar read at once it does not.
 */
#define RULE_WORD_FOUND (1ULL << 63)
static __always_inline __u64 rule_word(const struct aegis_rule *rule)
{
	return rule ? RULE_WORD_FOUND | (*(const __u64 *)rule & 0xffffffffffffULL) : 0;
}

static __always_inline __u32 word_rule_id(__u64 word)
{
	return (__u32)word;
}

static __always_inline __u32 word_action(__u64 word)
{
	return word >> 32 & 0xff;
}

static __always_inline __u32 word_prefix_len(__u64 word)
{
	return word >> 40 & 0xff;
}

/*
 * The rule of one shape of a destination (a rule word): `key` with the full prefix length, as every lookup
 * asks (bytes past an IPv4 address zero). A rule of the whole address is in the hash, which wins over the
 * trie's longest prefix: nothing is longer. A map gen_info counts no entry in is not asked. The inner maps
 * are taken here, not kept in the state: a map pointer checked for NULL in one place splits every later
 * state of the program in two for the verifier (an outer array's lookup is a few inlined instructions).
 */
static __always_inline __u64 net_lookup(const struct aegis_state *s, struct aegis_net_key *key)
{
	const struct aegis_gen_info *info = s->info;
	if (!info)
		return 0;
	__u32 gen = s->gen;
	if (info->net_exact_entries) {
		void *exact = bpf_map_lookup_elem(&net_exact, &gen);
		__u64 rule = exact ? rule_word(bpf_map_lookup_elem(exact, key)) : 0;
		if (rule)
			return rule;
	}
	if (!info->net_rules_entries)
		return 0;
	void *trie = bpf_map_lookup_elem(&net_rules, &gen);
	return trie ? rule_word(bpf_map_lookup_elem(trie, key)) : 0;
}

/* Whether the generation has CIDR rules at all (net_lookup can find one). */
static __always_inline int has_net_rules(const struct aegis_state *s)
{
	return s->info && (s->info->net_rules_entries | s->info->net_exact_entries);
}

static __always_inline __u64 more_specific(__u64 a, __u64 b)
{
	if (!a)
		return b;
	if (!b)
		return a;
	return word_prefix_len(a) >= word_prefix_len(b) ? a : b;
}

/*
 * The most specific rule for `key` (a rule word): longest prefix first; at
 * equal length a port rule beats a port-less one, and a protocol rule beats an
 * any-protocol one (port-less rules that name no protocol are keyed on protocol
 * 0). The lookups of the shapes `absent` names (AEGIS_INGRESS_NO_* bits: the
 * generation holds no such rule) are skipped.
 */
static __always_inline __u64 match_net_of(const struct aegis_state *s, __u32 port_space, __u32 any_space,
					  struct aegis_net_key *key, __u16 port_be, __u32 absent)
{
	if (!has_net_rules(s))
		return 0;
	__u32 family = key->space & 0xff;
	key->prefixlen = NET_KEY_FULL_PREFIX;
	__u64 best = 0;
	if (port_be && !(absent & AEGIS_INGRESS_NO_PORT)) {
		key->space = port_space << 8 | family;
		__builtin_memcpy(key->port, &port_be, 2);
		best = net_lookup(s, key);
	}
	key->space = any_space << 8 | family;
	key->port[0] = 0;
	key->port[1] = 0;
	if (key->protocol && !(absent & AEGIS_INGRESS_NO_PROTOCOL))
		best = more_specific(best, net_lookup(s, key));
	if (!(absent & AEGIS_INGRESS_NO_ANY)) {
		__u8 protocol = key->protocol;
		key->protocol = 0;
		best = more_specific(best, net_lookup(s, key));
		key->protocol = protocol; /* callers report it */
	}
	key->space = family;
	return best;
}

/* match_net_of() for the egress spaces: the shapes the generation's egress rules have none of are skipped. */
static __always_inline __u64 match_net(const struct aegis_state *s, __u32 port_space, __u32 any_space,
				       struct aegis_net_key *key, __u16 port_be)
{
	return match_net_of(s, port_space, any_space, key, port_be, s->info ? s->info->egress_absent : 0);
}

/*
 * The user entry that denies this destination port to the current task:
 * its effective uid's entry, else its effective gid's; an allowlist denies
 * every port it does not list, a denylist the ports it lists.
 */
static __always_inline struct aegis_rule *user_rule_of(const struct aegis_state *s, __u16 port, __u64 ids)
{
	__u32 id = (__u32)ids;
	__u32 port_kind = AEGIS_RULE_USER_UID_PORT;
	struct aegis_rule *entry = exact_rule(s, AEGIS_RULE_USER_UID, 0, id);
	if (!entry) {
		id = ids >> 32;
		port_kind = AEGIS_RULE_USER_GID_PORT;
		entry = exact_rule(s, AEGIS_RULE_USER_GID, 0, id);
		if (!entry)
			return 0;
	}
	int listed = exact_rule(s, port_kind, port, id) != 0;
	if (entry->action == AEGIS_USER_PORTS_ALLOWED)
		return listed ? 0 : entry;
	return listed ? entry : 0;
}

/* user_rule_of() for the current task's effective ids. */
static __always_inline struct aegis_rule *user_rule(const struct aegis_state *s, __u16 port)
{
	return user_rule_of(s, port, current_euid_egid());
}

/*
 * How an IPv6 destination stands for the IPv4 address in its last 32 bits: IPV4_MAPPED (::ffff:a.b.c.d,
 * the IPv4 address itself), IPV4_EMBEDDED (IPv4-compatible ::a.b.c.d but not :: or ::1, and a /96 NAT64
 * prefix of the rule set: 64:ff9b::a.b.c.d and the policy's own), else 0.
 */
#define IPV4_MAPPED 1
#define IPV4_EMBEDDED 2
static __always_inline int ipv4_in_ipv6(const struct aegis_state *s, const __u32 ip6[4])
{
	if (ip6[0] == 0 && ip6[1] == 0) {
		if (ip6[2] == bpf_htonl(0xffff))
			return IPV4_MAPPED;
		if (ip6[2] == 0 && bpf_ntohl(ip6[3]) > 1)
			return IPV4_EMBEDDED;
	}
	__u64 head = (__u64)ip6[1] << 32 | ip6[0];
	return exact_rule(s, AEGIS_RULE_NAT64_PREFIX, head, ip6[2]) ? IPV4_EMBEDDED : 0;
}

/*
 * Fills family and address of an IPv6 destination: the IPv4 address it stands for (ipv4_in_ipv6) is
 * matched as IPv4. An embedded one (not ::ffff:) is an IPv6 address too: `alt` gets that view, so that an
 * IPv6 rule covering it still applies, and 1 is returned.
 */
static __always_inline int set_addr6(const struct aegis_state *s, struct aegis_net_key *key, const __u32 ip6[4],
				     struct aegis_net_key *alt)
{
	int form = ipv4_in_ipv6(s, ip6);
	if (!form) {
		key->space |= AEGIS_FAMILY_IPV6;
		__builtin_memcpy(key->addr, ip6, 16);
		return 0;
	}
	key->space |= AEGIS_FAMILY_IPV4;
	__builtin_memcpy(key->addr, &ip6[3], 4);
	if (form != IPV4_EMBEDDED)
		return 0;
	alt->space |= AEGIS_FAMILY_IPV6;
	alt->protocol = key->protocol;
	__builtin_memcpy(alt->addr, ip6, 16);
	return 1;
}

/* The deny rule the CIDR rules give `key` (most specific wins; an allow means none), as a rule word. */
static __always_inline __u64 cidr_deny(const struct aegis_state *s, struct aegis_net_key *key, __u16 port_be)
{
	__u64 rule = match_net(s, AEGIS_NET_EGRESS_PORT, AEGIS_NET_EGRESS_ANY, key, port_be);
	return rule && word_action(rule) == AEGIS_ACTION_ALLOW ? 0 : rule;
}

/*
 * The deny rule for a destination seen as `key` and, when `has_alt` (an embedded IPv4 address), as `alt`:
 * either view's deny applies. The view that was denied is left in `key`, for the event.
 */
static __always_inline __u64 egress_cidr_deny(const struct aegis_state *s, struct aegis_net_key *key,
					      const struct aegis_net_key *alt, int has_alt, __u16 port_be)
{
	__u64 rule = cidr_deny(s, key, port_be);
	if (rule || !has_alt)
		return rule;
	struct aegis_net_key view = *alt;
	rule = cidr_deny(s, &view, port_be);
	if (rule)
		*key = view;
	return rule;
}

/* MPTCP subflows: judged as their connection's owner. */
#include "mptcp_owner.bpf.h"

/* route_guard.bpf.h: load_state() for a generation the caller already read. */
static __always_inline int load_generation(struct aegis_state *s, __u32 gen);

/* Rules by host name: the learned-address table (bpf/name_guard.bpf.h). */
#include "name_guard.bpf.h"

/* Rules that name a program (exe, children), and rules by name that do: bpf/task_subject.bpf.h. */
#include "task_subject.bpf.h"

/* What an egress hook hands the decision's tail (aegis_egress_allowed): scalars and the key, no pointers. */
struct egress_verdict {
	struct aegis_net_key key; /* the destination; on a CIDR deny, the view of the address that was denied */
	__u32 gen;                /* the generation the hook decides with */
	__u32 rule_id;            /* the CIDR rule that denied, when has_rule */
	__u32 hook;               /* AEGIS_HOOK_CONNECT or AEGIS_HOOK_SENDMSG */
	__u16 port_be;            /* the destination port */
	__u8 has_rule;            /* 0: no CIDR rule denied, the users entries decide */
	__u8 _pad0;
};

/*
 * The scope walks of an egress decision, each a global function: the verifier walks the cgroup levels once
 * here, not once for every way the decision reached them. in_scope() for the current task, in generation
 * `gen` (the one the hook read).
 */
__noinline int aegis_egress_task_in_scope(__u32 gen)
{
	struct aegis_state s;
	return load_generation(&s, gen) && in_scope(&s);
}

/* sock_in_scope() for the connection an MPTCP subflow belongs to (0 for any other socket), and its cgroup. */
__noinline int aegis_egress_owner_in_scope(struct bpf_sock_addr *ctx, __u32 gen, __u64 *cgroup_id)
{
	struct aegis_state s;
	struct sock *owner = subflow_connection(ctx->sk);
	if (!cgroup_id || !owner || !load_generation(&s, gen))
		return 0;
	return sock_in_scope(&s, owner, cgroup_id);
}

/*
 * The tail of an egress decision, once the CIDR rules are matched: the subject (the current task, or for
 * an MPTCP subflow its connection's owner, mptcp_owner.bpf.h, whose uid, gid and cgroup the event then
 * carries), its users entry when no CIDR rule denied, its scope, and the event. 1 to allow, 0 to deny.
 * A global function: the verifier checks it once, not once for every state the rule lookups before it
 * leave (the connect6 and sendmsg6 programs went from about 364k verified instructions to a fraction).
 */
__noinline int aegis_egress_allowed(struct bpf_sock_addr *ctx, struct egress_verdict *v)
{
	struct aegis_state s;
	if (!v || !load_generation(&s, v->gen))
		return 1;
	struct sock *owner = subflow_connection(ctx->sk);
	__u64 ids = owner ? connection_owner_ids(owner) : current_euid_egid();
	__u64 owner_cgroup = 0;
	__u32 rule_id = v->rule_id;
	if (!v->has_rule) {
		struct aegis_rule *rule = user_rule_of(&s, bpf_ntohs(v->port_be), ids);
		if (!rule)
			return 1;
		rule_id = rule->rule_id;
	}
	if (!(owner ? aegis_egress_owner_in_scope(ctx, v->gen, &owner_cgroup) : aegis_egress_task_in_scope(v->gen)))
		return 1;
	__u32 mode = effective_mode(&s);
	__u16 exception = net_exception(&v->key, v->port_be);
	int deny = mode == AEGIS_MODE_ENFORCE && !exception;
	struct aegis_event *e = record_decision(&s, v->hook, mode, deny ? AEGIS_DECISION_DENY : AEGIS_DECISION_AUDIT,
						rule_id, current_pid(), 1);
	if (e) {
		e->exception = exception;
		if (owner) {
			e->uid = (__u32)ids;
			e->gid = ids >> 32;
			e->cgroup_id = owner_cgroup;
		}
		e->family = v->key.space & 0xff;
		e->protocol = v->key.protocol;
		__builtin_memcpy(e->daddr, v->key.addr, 16);
		e->dport = bpf_ntohs(v->port_be);
		/* Asked again here, not kept from above: a pointer kept live doubles every state in between. */
		if (!owner && subject_switch(&s))
			event_subject(e);
		bpf_ringbuf_submit(e, 0);
	}
	return !deny;
}

/* What the subject path of an egress decision holds: the query, then the verdict (see egress_decision). */
union subject_or_verdict {
	struct subject_query q;
	struct egress_verdict v;
};

/* A connect or sendmsg allowed by the rule by name `rule_id`: a per-name hit, for a task in scope. Global. */
__noinline int aegis_count_name_allow(__u32 gen, __u32 rule_id)
{
	struct aegis_state s;
	if (!load_generation(&s, gen) || !in_scope(&s))
		return 0;
	count_rule_hit(&s, AEGIS_HOOK_CONNECT, AEGIS_RULE_HIT_NAME_ALLOW, rule_id);
	return 1;
}

/* 1 to allow, 0 to deny (EPERM) a connect or sendmsg described by `key` (and `alt`: see set_addr6). */
static __always_inline int egress_decision(struct bpf_sock_addr *ctx, const struct aegis_state *s, __u32 hook,
					   struct aegis_net_key *key, const struct aegis_net_key *alt, int has_alt)
{
	__u16 port_be = (__u16)ctx->user_port;
	/*
	 * A policy with rules that name a program: the rules of the task's subjects too (task_subject.bpf.h),
	 * for TCP and UDP: other protocols are also judged packet by packet (net_guard.bpf.h), where the task
	 * that sends is not always the one that wrote, so rules naming a program never judge them.
	 */
	__u32 on = s->info->task_rules && (key->protocol == IPPROTO_TCP_ || key->protocol == IPPROTO_UDP_) ?
			   subject_switch_word(s) :
			   0;
	if (on && !subflow_connection(ctx->sk)) {
		/*
		 * The query and then the verdict in the same bytes (the key first in both): the frame of this hook
		 * and the calls below it fit 512 bytes only so.
		 */
		union subject_or_verdict u = { .q = { .key = *key, .gen = s->gen, .port_be = port_be,
						      .has_alt = has_alt } };
		/* The subject walk here, not below the query: one call deep, as the stack's 512 bytes allow. */
		aegis_task_subjects(s->gen, on, &u.q.subjects);
		__u32 rule_id;
		if (aegis_subject_egress_deny(&u.q, alt)) {
			rule_id = u.q.rule_id; /* the view denied is in u.q.key, that is u.v.key */
		} else {
			/* Allowed by a rule by name (of a subject or not): a per-name hit, for a task in scope. */
			if (u.q.name_allow)
				aegis_count_name_allow(s->gen, u.q.name_allow);
			/* No CIDR rule denied: the users entries, of the subjects first (here, not in the tail: stack). */
			rule_id = aegis_subject_user_rule(&u.q.subjects, s->gen, bpf_ntohs(port_be));
			if (!rule_id)
				return 1;
			u.v.key = *key;
		}
		u.v.gen = s->gen;
		u.v.rule_id = rule_id;
		u.v.hook = hook;
		u.v.port_be = port_be;
		u.v.has_rule = 1;
		u.v._pad0 = 0;
		return aegis_egress_allowed(ctx, &u.v) ? 1 : 0;
	}
	__u32 rule_id = egress_deny_id(s, key, alt, has_alt, port_be, 1);
	if (rule_id & NAME_ALLOW_BIT) {
		aegis_count_name_allow(s->gen, rule_id & ~NAME_ALLOW_BIT);
		rule_id = 0;
	}
	/* The common case, a destination no rule names, leaves here: the subject is asked for only when needed. */
	if (!rule_id && !s->info->task_rules)
		return 1;
	struct egress_verdict v = { .key = *key, .gen = s->gen, .hook = hook, .port_be = port_be };
	if (rule_id) {
		v.rule_id = rule_id;
		v.has_rule = 1;
	}
	return aegis_egress_allowed(ctx, &v) ? 1 : 0; /* a global function's result is any scalar to the verifier */
}

static __always_inline int egress4(struct bpf_sock_addr *ctx, __u32 hook)
{
	struct aegis_state s;
	if (!load_state(&s))
		return 1;
	struct aegis_net_key key = { .space = AEGIS_FAMILY_IPV4, .protocol = ctx->protocol };
	__u32 daddr = ctx->user_ip4;
	__builtin_memcpy(key.addr, &daddr, 4);
	return egress_decision(ctx, &s, hook, &key, &key, 0);
}

static __always_inline int egress6(struct bpf_sock_addr *ctx, __u32 hook)
{
	struct aegis_state s;
	if (!load_state(&s))
		return 1;
	struct aegis_net_key key = { .protocol = ctx->protocol };
	struct aegis_net_key alt = {};
	__u32 ip6[4] = { ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2], ctx->user_ip6[3] };
	int embedded = set_addr6(&s, &key, ip6, &alt);
	return egress_decision(ctx, &s, hook, &key, &alt, embedded);
}

SEC("cgroup/connect4")
int aegis_connect4(struct bpf_sock_addr *ctx)
{
#ifdef AEGIS_VARIANT
	(void)bpf_get_prandom_u32(); /* the upgrade test's "next release": other instructions, same decisions */
#endif
	return egress4(ctx, AEGIS_HOOK_CONNECT);
}

SEC("cgroup/connect6")
int aegis_connect6(struct bpf_sock_addr *ctx)
{
	return egress6(ctx, AEGIS_HOOK_CONNECT);
}

SEC("cgroup/sendmsg4")
int aegis_sendmsg4(struct bpf_sock_addr *ctx)
{
	return egress4(ctx, AEGIS_HOOK_SENDMSG);
}

SEC("cgroup/sendmsg6")
int aegis_sendmsg6(struct bpf_sock_addr *ctx)
{
	return egress6(ctx, AEGIS_HOOK_SENDMSG);
}

/*
 * 1 to allow, 0 to deny (EPERM) binding a socket of `protocol` to `port` (host order) at `addr` (IPv4 in
 * the first word): the cgroup bind hooks and, for SCTP, which never reaches them, the LSM hooks of
 * bpf/bind_guard.bpf.h.
 */
static __always_inline int bind_allowed(__u8 family, __u8 protocol, __u16 port, const __u32 addr[4])
{
	struct aegis_state s;
	if (!load_state(&s))
		return 1;
	struct aegis_rule *rule = exact_rule(&s, AEGIS_RULE_BIND, port, protocol);
	__u32 rule_id = rule ? rule->rule_id : 0;
	/* The subjects are asked for only where the generation has rules that name a program. */
	if (!rule_id && s.info->task_rules && subject_switch(&s))
		rule_id = aegis_subject_bind_rule(s.gen, port, protocol);
	if (!rule_id || !in_scope(&s))
		return 1;
	__u32 mode = effective_mode(&s);
	struct aegis_event *e = record(&s, AEGIS_HOOK_BIND, mode, rule_id, current_pid(), 1);
	if (e) {
		e->family = family;
		e->protocol = protocol;
		e->sport = port;
		__builtin_memcpy(e->saddr, addr, 16);
		/* Asked again here, not kept from above: a pointer kept live doubles every state in between. */
		if (s.info->task_rules && subject_switch(&s))
			event_subject(e);
		bpf_ringbuf_submit(e, 0);
	}
	return mode != AEGIS_MODE_ENFORCE;
}

/* The cgroup bind hooks run for every inet protocol bound through inet_bind: TCP, UDP, UDP-Lite, DCCP, MPTCP. */
static __always_inline int bind_decision(struct bpf_sock_addr *ctx, __u8 family)
{
	__u32 addr[4] = {};
	if (family == AEGIS_FAMILY_IPV4) {
		addr[0] = ctx->user_ip4;
	} else {
		addr[0] = ctx->user_ip6[0];
		addr[1] = ctx->user_ip6[1];
		addr[2] = ctx->user_ip6[2];
		addr[3] = ctx->user_ip6[3];
	}
	return bind_allowed(family, ctx->protocol, bpf_ntohs((__u16)ctx->user_port), addr);
}

SEC("cgroup/bind4")
int aegis_bind4(struct bpf_sock_addr *ctx)
{
	return bind_decision(ctx, AEGIS_FAMILY_IPV4);
}

SEC("cgroup/bind6")
int aegis_bind6(struct bpf_sock_addr *ctx)
{
	return bind_decision(ctx, AEGIS_FAMILY_IPV6);
}

/* ---- ingress (XDP) ------------------------------------------------------- */

/* Addresses first and 8-byte aligned: the parser reads them as 32-bit words. */
struct aegis_packet {
	__u8 saddr[16];
	__u8 daddr[16];
	__u8 family;
	__u8 protocol;
	__u16 sport_be;
	__u16 dport_be;
	__u8 neighbour; /* IPv6 neighbour discovery or multicast listener message, as RFC 4861 / 2710 send them */
} __attribute__((aligned(8)));

/* Protocols whose header starts with the source and destination port: TCP, UDP, UDP-Lite, SCTP, DCCP. */
static __always_inline int carries_ports(__u8 protocol)
{
	return protocol == IPPROTO_TCP_ || protocol == IPPROTO_UDP_ || protocol == IPPROTO_UDPLITE_ ||
	       protocol == IPPROTO_SCTP_ || protocol == IPPROTO_DCCP_;
}

/* Parses Ethernet (with up to two VLAN tags), IPv4 or IPv6, and the ports of carries_ports(): PACKET_*. */
static __always_inline int parse_packet(struct xdp_md *ctx, struct aegis_packet *p)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return PACKET_PASS;
	/* 802.1Q / 802.1ad tags (priority-tagged frames reach the untagged device): filter the inner packet. */
	__u16 proto = eth->h_proto;
	void *l3 = eth + 1;
	for (int i = 0; i < MAX_VLAN_TAGS; i++) {
		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		struct vlan_hdr *vlan = l3;
		if ((void *)(vlan + 1) > data_end)
			return PACKET_UNPARSED;
		proto = vlan->h_vlan_encapsulated_proto;
		l3 = vlan + 1;
	}
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD))
		return PACKET_UNPARSED;
	void *l4;
	int fragment = 0;
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = l3;
		if ((void *)(ip + 1) > data_end || ip->ihl < 5)
			return PACKET_UNPARSED;
		p->family = AEGIS_FAMILY_IPV4;
		p->protocol = ip->protocol;
		__builtin_memcpy(p->saddr, &ip->saddr, 4);
		__builtin_memcpy(p->daddr, &ip->daddr, 4);
		fragment = (ip->frag_off & bpf_htons(0x1fff)) != 0;
		l4 = (void *)ip + ip->ihl * 4;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = l3;
		if ((void *)(ip6 + 1) > data_end)
			return PACKET_UNPARSED;
		p->family = AEGIS_FAMILY_IPV6;
		__builtin_memcpy(p->saddr, &ip6->saddr, 16);
		__builtin_memcpy(p->daddr, &ip6->daddr, 16);
		/* Walk extension headers, so that one placed before TCP cannot hide its ports. */
		__u8 next = ip6->nexthdr;
		l4 = ip6 + 1;
		for (int i = 0; i < MAX_IPV6_EXT_HEADERS; i++) {
			if (next == IPPROTO_HOPOPTS_ || next == IPPROTO_ROUTING_ || next == IPPROTO_DSTOPTS_) {
				struct ipv6_opt_hdr *opt = l4;
				if ((void *)(opt + 1) > data_end)
					break;
				next = opt->nexthdr;
				l4 = (void *)opt + (opt->hdrlen + 1) * 8;
			} else if (next == IPPROTO_FRAGMENT_) {
				struct frag_hdr *frag = l4;
				if ((void *)(frag + 1) > data_end)
					break;
				next = frag->nexthdr;
				fragment = (frag->frag_off & bpf_htons(0xfff8)) != 0;
				l4 = frag + 1;
			} else {
				break;
			}
		}
		/* More extension headers than we walk: the ports are out of reach, so the packet is refused. */
		if (next == IPPROTO_HOPOPTS_ || next == IPPROTO_ROUTING_ || next == IPPROTO_DSTOPTS_ ||
		    next == IPPROTO_FRAGMENT_)
			return PACKET_UNPARSED;
		p->protocol = next;
		/*
		 * Neighbour discovery (133-136, hop limit 255: never forwarded) and
		 * multicast listener messages (130-132, 143, hop limit 1) keep IPv6
		 * working, as ARP does IPv4: they pass a default drop, but not a
		 * deny rule for their source. Redirects (137) follow the rules.
		 */
		if (next == IPPROTO_ICMPV6_ && !fragment) {
			struct icmp6hdr *icmp = l4;
			if ((void *)(icmp + 1) <= data_end) {
				__u8 type = icmp->icmp6_type;
				if (type >= 133 && type <= 136)
					p->neighbour = ip6->hop_limit == 255;
				else if ((type >= 130 && type <= 132) || type == 143)
					p->neighbour = ip6->hop_limit == 1;
			}
		}
	} else {
		return PACKET_PASS;
	}
	/* An IPv4-mapped source (::ffff:a.b.c.d) is matched as the IPv4 address, as on egress. */
	__u32 *source = (__u32 *)p->saddr;
	if (p->family == AEGIS_FAMILY_IPV6 && source[0] == 0 && source[1] == 0 && source[2] == bpf_htonl(0xffff)) {
		p->family = AEGIS_FAMILY_IPV4;
		source[0] = source[3];
		source[1] = source[2] = source[3] = 0;
	}
	if (!fragment && carries_ports(p->protocol)) {
		__u16 *ports = l4;
		/* A (first) fragment cut before its ports must not pass as a packet without ports. */
		if ((void *)(ports + 2) > data_end)
			return PACKET_UNPARSED;
		p->sport_be = ports[0];
		p->dport_be = ports[1];
	}
	return PACKET_PARSED;
}

static __always_inline int session_allows(__u32 ifindex, const struct aegis_packet *p)
{
	struct aegis_session_key key = { .prefixlen = SESSION_KEY_FULL_PREFIX, .ifindex = ifindex, .family = p->family };
	__builtin_memcpy(key.addr, p->saddr, 16);
	__builtin_memcpy(key.port, &p->dport_be, 2);
	__u64 now = bpf_ktime_get_boot_ns();
	struct aegis_session *session = bpf_map_lookup_elem(&ingress_session, &key);
	if (session && session->expires_boot_ns > now)
		return 1;
	key.port[0] = 0;
	key.port[1] = 0;
	session = bpf_map_lookup_elem(&ingress_session, &key);
	return session && session->expires_boot_ns > now;
}

/*
 * A packet whose ports are out of reach: an address rule for any protocol still
 * decides it; otherwise it passes only where the interface passes by default
 * and no port rule could be evaded by hiding the ports.
 */
static __always_inline int unparsed_passes(const struct aegis_state *s, const struct aegis_rule *iface,
					   const struct aegis_packet *p, __u32 *rule_id)
{
	if (p->family && has_net_rules(s) && !(s->info->ingress_absent & AEGIS_INGRESS_NO_ANY)) {
		struct aegis_net_key key = { .prefixlen = NET_KEY_FULL_PREFIX,
					     .space = AEGIS_NET_INGRESS_ANY << 8 | p->family };
		__builtin_memcpy(key.addr, p->saddr, 16);
		__u64 rule = net_lookup(s, &key);
		if (rule) {
			*rule_id = word_rule_id(rule);
			return word_action(rule) == AEGIS_ACTION_ALLOW;
		}
	}
	if (iface->action != AEGIS_ACTION_ALLOW)
		return 0;
	return !(p->family && s->info->ingress_port_denies);
}

/* The rule word of the last match of this CPU, into *word, when it was made for this packet's shape and contents. */
static __always_inline int xdp_match_cached(struct xdp_match *m, __u64 stamp, const struct aegis_packet *p, __u64 *word)
{
	if (!m || !stamp)
		return 0;
	__u32 seq = *(volatile __u32 *)&m->seq;
	barrier();
	if ((seq & 1) || m->stamp != stamp || m->family != p->family || m->protocol != p->protocol ||
	    m->dport_be != p->dport_be)
		return 0;
	const __u64 *saddr = (const __u64 *)p->saddr;
	const __u64 *held = (const __u64 *)m->saddr;
	if (held[0] != saddr[0] || held[1] != saddr[1])
		return 0;
	__u64 found = m->word;
	barrier();
	if (*(volatile __u32 *)&m->seq != seq)
		return 0;
	*word = found;
	return 1;
}

static __always_inline void xdp_match_store(struct xdp_match *m, __u64 stamp, const struct aegis_packet *p, __u64 word)
{
	if (!m || !stamp)
		return;
	__u32 seq = m->seq;
	/* A store this run interrupted is half done: it finishes after this run, so this one is not made. */
	if (seq & 1)
		return;
	m->seq = seq | 1;
	barrier();
	m->stamp = stamp;
	m->family = p->family;
	m->protocol = p->protocol;
	m->dport_be = p->dport_be;
	__builtin_memcpy(m->saddr, p->saddr, 16);
	m->word = word;
	barrier();
	m->seq = (seq | 1) + 1;
}

/* Whether this CPU's slot holds the saturation of (rule, source, generation, mode) in `window`: the drop is suppressed. */
static __always_inline int match_suppresses(const struct xdp_match *m, __u64 window, __u32 rule_id, __u32 who,
					    __u32 gen, __u32 mode)
{
	return m->sat_window == window && m->sat_rule_id == rule_id && m->sat_who == who && m->sat_gen == gen &&
	       m->sat_mode == mode;
}

/*
 * Puts the drops this CPU counted for the slot's saturation into their entry and forgets the saturation. The
 * version moves with the exchange that takes the count, before any field changes: the flush then takes nothing
 * it read the old fields for.
 */
static __always_inline void match_settle(struct xdp_match *m)
{
	__u64 pending = *(volatile __u64 *)&m->pending;
	if (!m->sat_window && !(__u32)pending)
		return;
	__u64 taken = __sync_lock_test_and_set(&m->pending, ((pending >> 32) + 1) << 32);
	if ((__u32)taken)
		rate_fold(m->sat_rule_id, m->sat_who, m->sat_gen, m->sat_mode, (__u32)taken);
	m->sat_window = 0;
}

/* Records that (rule, source, generation, mode) is past its burst in `window` (after match_settle: no count held). */
static __always_inline void match_saturate(struct xdp_match *m, __u64 window, __u32 rule_id, __u32 who, __u32 gen,
					   __u32 mode)
{
	m->sat_rule_id = rule_id;
	m->sat_who = who;
	m->sat_gen = gen;
	m->sat_mode = mode;
	barrier();
	m->sat_window = window;
}

/* The interface's rule: its slot of ingress_ifaces where it holds one, else its AEGIS_RULE_IFACE entry. */
static __always_inline struct aegis_rule *ingress_iface(const struct aegis_state *s, __u32 ifindex)
{
	__u32 index = (s->gen & 1) * AEGIS_XDP_STAT_SLOTS + ifindex % AEGIS_XDP_STAT_SLOTS;
	struct aegis_iface_slot *slot = bpf_map_lookup_elem(&ingress_ifaces, &index);
	if (slot && slot->ifindex == ifindex)
		return &slot->rule;
	return exact_rule(s, AEGIS_RULE_IFACE, 0, ifindex);
}

static __always_inline int xdp_verdict(struct xdp_md *ctx)
{
	struct aegis_packet p = {};
	struct aegis_state s;
	int parsed = parse_packet(ctx, &p);
	if (parsed == PACKET_PASS || !load_state(&s))
		return XDP_PASS;
	struct aegis_rule *iface = ingress_iface(&s, ctx->ingress_ifindex);
	if (!iface)
		return XDP_PASS;
	__u32 rule_id = iface->rule_id;
	__u32 zero = 0;
	struct xdp_match *match = bpf_map_lookup_elem(&xdp_matches, &zero);
	if (parsed == PACKET_UNPARSED) {
		if (unparsed_passes(&s, iface, &p, &rule_id))
			return XDP_PASS;
		goto refuse;
	}
	__u64 stamp = s.info->stamp;
	__u64 rule;
	if (!xdp_match_cached(match, stamp, &p, &rule)) {
		struct aegis_net_key key = { .space = p.family, .protocol = p.protocol };
		__builtin_memcpy(key.addr, p.saddr, 16);
		rule = match_net_of(&s, AEGIS_NET_INGRESS_PORT, AEGIS_NET_INGRESS_ANY, &key, p.dport_be,
				    s.info->ingress_absent);
		xdp_match_store(match, stamp, &p, rule);
	}
	if (rule) {
		if (word_action(rule) == AEGIS_ACTION_ALLOW)
			return XDP_PASS;
		rule_id = word_rule_id(rule);
	} else if (iface->action == AEGIS_ACTION_ALLOW || p.neighbour || session_allows(ctx->ingress_ifindex, &p)) {
		return XDP_PASS;
	}
	/*
	 * Failsafe ports pass whatever the rules say: asked only of a packet about to be refused, and not looked
	 * up where the generation has no failsafe port with the same low five bits (gen_info.failsafe_absent).
	 */
	__u16 dport = bpf_ntohs(p.dport_be);
	if (p.dport_be && !(s.info->failsafe_absent >> (dport & 31) & 1) &&
	    exact_rule(&s, AEGIS_RULE_FAILSAFE, dport, p.protocol))
		return XDP_PASS;
refuse:;
	__u32 mode = effective_mode(&s);
	__u32 decision = mode == AEGIS_MODE_ENFORCE ? AEGIS_DECISION_DENY : AEGIS_DECISION_AUDIT;
	int verdict = mode == AEGIS_MODE_ENFORCE ? XDP_DROP : XDP_PASS;
	/* No task owns a packet: the rate limit goes by the source address instead of a pid. */
	__u32 who;
	__builtin_memcpy(&who, p.saddr + (p.family == AEGIS_FAMILY_IPV4 ? 0 : 12), 4);
	/* record_decision(), with the drops past a window's burst counted on this CPU (struct xdp_match). */
	count_decision(&s, AEGIS_HOOK_INGRESS, decision, rule_id);
	__u64 window = rate_window(1);
	if (match && match_suppresses(match, window, rule_id, who, s.gen, mode)) {
		__sync_fetch_and_add(&match->pending, 1);
		count_n(AEGIS_COUNTER_EVENTS_SUPPRESSED, 1);
		return verdict;
	}
	if (match)
		match_settle(match);
	__u32 n = rate_admit(&s, AEGIS_HOOK_INGRESS, decision, mode, rule_id, who);
	if (!n) {
		if (match)
			match_saturate(match, window, rule_id, who, s.gen, mode);
		return verdict;
	}
	struct aegis_event *e = reserve_event(AEGIS_HOOK_INGRESS, decision, mode, rule_id, s.gen, n);
	if (e) {
		e->ifindex = ctx->ingress_ifindex;
		e->family = p.family;
		e->protocol = p.protocol;
		e->sport = bpf_ntohs(p.sport_be);
		e->dport = bpf_ntohs(p.dport_be);
		__builtin_memcpy(e->saddr, p.saddr, 16);
		__builtin_memcpy(e->daddr, p.daddr, 16);
		bpf_ringbuf_submit(e, 0);
	}
	return verdict;
}

/* The XDP program runs only on the interfaces it filters: every packet it sees is counted with its verdict. */
SEC("xdp")
int aegis_xdp(struct xdp_md *ctx)
{
	int action = xdp_verdict(ctx);
	__u32 ifindex = ctx->ingress_ifindex;
	__u32 index = ifindex % AEGIS_XDP_STAT_SLOTS;
	struct aegis_xdp_slot *slot = bpf_map_lookup_elem(&xdp_slots, &index);
	/* Atomic, as count_n: a test run in a task and a softirq on the same CPU may meet in a slot. */
	if (slot && (slot->ifindex == ifindex || __sync_val_compare_and_swap(&slot->ifindex, 0, ifindex) == 0)) {
		__sync_fetch_and_add(action == XDP_DROP ? &slot->dropped : &slot->passed, 1);
		return action;
	}
	struct aegis_xdp_stat_key key = { .ifindex = ifindex, .action = action };
	count_key(&xdp_stats, &key);
	return action;
}

/* ---- file guard ---------------------------------------------------------- */

#include "file_guard.bpf.h"
/* exec.default: deny: only exec.allow's inodes run or map executable. */
#include "exec_allow.bpf.h"

/* Routing headers and source routes: the setsockopt guard, and the backstop's walk over a route's hops. */
#include "route_guard.bpf.h"
/* files.protect: a protected inode is read and run, never written; a protected directory's entries are fixed. */
#include "file_protect.bpf.h"
/* A denied file is not changeable either: truncate, unlink, rename, link, attributes. */
#include "file_change.bpf.h"

/* Raw, ping, SCTP and UDP-Lite sockets, AF_PACKET, connections made before apply. */
#include "net_guard.bpf.h"

/* DNS answers learned in the kernel for the rules by name (cgroup_skb/ingress). */
#include "dns_learn.bpf.h"

/* ptrace out of the scope: attach, memory access by process_vm_* and /proc/PID/mem, traceme. */
#include "process_guard.bpf.h"
/* Forwarded packets (network.egress.forwarded): tc egress on the host's interfaces. */
#include "forward_guard.bpf.h"
/* SCTP binds (bind and sctp_bindx), which the cgroup bind hooks never see. */
#include "bind_guard.bpf.h"
