/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Egress rules by host name, included in aegis.bpf.c after the CIDR matching.
 *
 * An address a name was resolved to sits in the learned-address table (`learned`, outside the generations)
 * with the most specific pattern covering the name (the name itself, else the longest wildcard) and an expiry.
 * The generation's AEGIS_RULE_HOST / _WILDCARD entries say what the names' rules are. An egress decision
 * with such entries (gen_info.host_rules) matches each view of the destination by its CIDR rules and its
 * learned name: a name rule ranks as the /32 (/128) of the address, so it beats every shorter CIDR rule and
 * the default, and a CIDR rule of the address itself beats it. Without host rules the hooks never look here.
 */

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, AEGIS_LEARNED_ENTRIES);
	__type(key, struct aegis_learned_key);
	__type(value, struct aegis_learned);
} learned SEC(".maps");

/*
 * The rule for the address in `key` (its family in key->space, as match_net() leaves it) by the pattern
 * its name was learned under: the most specific level (a port, then a protocol, then neither), or 0 when
 * the address was learned for no name, its entry has expired (by boot_ns_this_tick(): a tick late at most), or
 * the generation has no rule of the pattern.
 */
static __always_inline struct aegis_rule *learned_rule(const struct aegis_state *s, const struct aegis_net_key *key,
						       __u16 port_be)
{
	struct aegis_learned_key lk = { .family = key->space & 0xff };
	__builtin_memcpy(lk.addr, key->addr, 16);
	struct aegis_learned *entry = bpf_map_lookup_elem(&learned, &lk);
	if (!entry || entry->expires_boot_ns <= boot_ns_this_tick())
		return 0;
	__u32 kind = entry->kind;
	__u64 host = entry->host_key;
	__u32 protocol = key->protocol;
	__u32 port = bpf_ntohs(port_be);
	/* The levels no rule by name naming no program has (gen_info.host_rules) are not looked up. */
	__u32 none = s->info ? s->info->host_rules >> AEGIS_HOST_LEVELS_SHIFT : 0;
	struct aegis_rule *rule = port && !(none & AEGIS_SUBJECT_PAIR_NO_PORT) ?
					  exact_rule(s, kind, host, port << 8 | protocol) :
					  0;
	if (!rule && protocol && !(none & AEGIS_SUBJECT_PAIR_NO_PROTOCOL))
		rule = exact_rule(s, kind, host, protocol);
	if (!rule && !(none & AEGIS_SUBJECT_PAIR_NO_ANY))
		rule = exact_rule(s, kind, host, 0);
	return rule;
}

/* aegis_names_egress_deny's answer for an allow by name, when asked (bit 2 of its flags): the rule's id | this. */
#define NAME_ALLOW_BIT 0x80000000u

/*
 * The id of the rule that denies the view `key` by its CIDR rules and its learned name, 0 when none does;
 * the id of the rule by name that allows it in `*allowed` (left as it was when none).
 */
static __always_inline __u32 view_deny_id(const struct aegis_state *s, struct aegis_net_key *key, __u16 port_be,
					  __u32 *allowed)
{
	__u64 rule = match_net(s, AEGIS_NET_EGRESS_PORT, AEGIS_NET_EGRESS_ANY, key, port_be);
	__u32 full = (key->space & 0xff) == AEGIS_FAMILY_IPV4 ? 32 : 128;
	if (!rule || word_prefix_len(rule) < full) {
		__u64 named = rule_word(learned_rule(s, key, port_be));
		if (named) {
			rule = named;
			if (word_action(named) == AEGIS_ACTION_ALLOW)
				*allowed = word_rule_id(named);
		}
	}
	return rule && word_action(rule) != AEGIS_ACTION_ALLOW ? word_rule_id(rule) : 0;
}

/*
 * egress_cidr_deny() with the learned names, for the view `key` and, when `has_alt` (bit 1 of `flags`), `alt`:
 * the id of the rule that denies (0: none), the view denied left in `key`. `flags` also holds the
 * generation (bit 0), whether an allow by name is told (bit 2: then the allowing rule's id | NAME_ALLOW_BIT
 * is returned when nothing denies; connect and sendmsg count it) and the port (bits 16-31, network order): scalars, so that the callers' frames, deep in the packet programs, keep no query
 * struct. A global function: verified once, whichever hook asks.
 */
__noinline __u32 aegis_names_egress_deny(struct aegis_net_key *key, const struct aegis_net_key *alt, __u32 flags)
{
	struct aegis_state s;
	if (!key || !alt || !load_generation(&s, flags & 1))
		return 0;
	__u16 port_be = flags >> 16;
	/* A copy on the stack: 6.1 takes no global function argument's memory as a map key. */
	struct aegis_net_key view = *key;
	__u32 allowed = 0;
	__u32 rule_id = view_deny_id(&s, &view, port_be, &allowed);
	if (!rule_id && (flags & 2)) {
		view = *alt;
		rule_id = view_deny_id(&s, &view, port_be, &allowed);
		if (rule_id)
			*key = view;
	}
	if (rule_id || !allowed || !(flags & 4))
		return rule_id;
	return allowed | NAME_ALLOW_BIT;
}

/*
 * The id of the rule that denies a destination seen as `key` (and `alt` when `has_alt`), 0 when none: the
 * CIDR rules alone, or with the learned names where the generation has rules by name. The view denied is
 * left in `key`.
 */
static __always_inline __u32 egress_deny_id(const struct aegis_state *s, struct aegis_net_key *key,
					    const struct aegis_net_key *alt, int has_alt, __u16 port_be, int hits)
{
	if (s->info->host_rules)
		return aegis_names_egress_deny(key, alt,
					       (__u32)port_be << 16 | (hits ? 4 : 0) | (has_alt ? 2 : 0) | (s->gen & 1));
	__u64 rule = egress_cidr_deny(s, key, alt, has_alt, port_be);
	return rule ? word_rule_id(rule) : 0;
}
