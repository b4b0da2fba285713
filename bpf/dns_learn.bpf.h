/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * DNS answers learned in the kernel, included after net_guard.bpf.h.
 *
 * aegis_skb_dns (cgroup_skb/ingress, attached with the egress programs) reads each UDP datagram from port
 * 53, and each TCP segment from port 53 whose message comes whole after its 2-byte length, that a socket in
 * scope receives, where the generation has rules by name. The answer is learned from
 * only when it answers a query the egress backstop tracked (dns_pending: server, client port, id, and the
 * question's key, which the answer's question must repeat), its server is one the scope's egress rules
 * allow on port 53 (UDP or TCP, as the answer came), and the whole message parses: not truncated (TC), at most AEGIS_DNS_MESSAGE_MAX
 * bytes, every name and record inside it. Its A and AAAA records for the name asked, or for a name its
 * CNAME chain (inside the answer) leads to, are written into `learned` with the record's TTL (at least the
 * policy's floor) and the pattern that covers the first name of the chain a rule covers: the name
 * itself (AEGIS_RULE_HOST_PATTERN b = 0), else its longest wildcard (b = 1, looked up per parent
 * suffix). This runs before the datagram is queued to the socket, so a connect right after the answer is
 * decided by it. dns_stats counts what was learned and what was not.
 *
 * The walk is one bpf_loop over the message copied into a per-CPU scratch value: a step reads up to
 * DNS_CHUNK bytes of a label, a length byte, a compression pointer (followed backwards only, at most
 * DNS_JUMPS per name) or one record's fixed part. Its state lives in that map value, so the verifier checks
 * the step once. Each label is hashed once, as it is read; the parent suffixes' keys are folded from the
 * labels' hashes when the name ends.
 */

#define DNS_MSG_MASK (AEGIS_DNS_MESSAGE_MAX - 1)
#define DNS_SUFFIX_SLOTS 8 /* parent suffixes looked up: a wildcard's domain has at most 8 labels */
#define DNS_LABEL_RING 16  /* the last labels' hashes kept (a power of 2 above DNS_SUFFIX_SLOTS) */
#define DNS_CHUNK 8        /* bytes of a label read in one step */
#define DNS_CHAIN_MAX 8    /* names of a CNAME chain followed */
#define DNS_ADDRS_MAX 16   /* addresses learned from one answer */
#define DNS_JUMPS 16       /* compression pointers followed in one name */
#define DNS_STEPS 8192     /* steps of one walk: an answer that needs more is malformed */
#define DNS_TYPE_A 1
#define DNS_TYPE_CNAME 5
#define DNS_TYPE_AAAA 28
#define DNS_CLASS_IN 1

enum dns_phase { DNS_PH_NAME = 0, DNS_PH_RECORD = 1, DNS_PH_BODY = 2, DNS_PH_DONE = 3 };
enum dns_role { DNS_ROLE_QUESTION = 0, DNS_ROLE_OWNER = 1, DNS_ROLE_CNAME = 2 };

struct dns_addr {
	__u32 family;
	__u32 ttl;
	__u8 addr[16];
};

struct dns_answer {
	__u8 msg[AEGIS_DNS_MESSAGE_MAX];
	__u64 chain[DNS_CHAIN_MAX];     /* keys of the names of the chain: the question's, then CNAME targets' */
	__u32 chain_off[DNS_CHAIN_MAX]; /* where each name of the chain starts in the message */
	__u64 label_hash[DNS_LABEL_RING]; /* FNV-1a of each label of the name read (slot: label % RING) */
	__u64 suffix[DNS_LABEL_RING];     /* keys of the name's parent suffixes of n labels (slot n) */
	struct dns_addr addrs[DNS_ADDRS_MAX];
	__u64 hash;     /* key of the name read */
	__u64 lhash;    /* FNV-1a of the label being read */
	__u64 expected; /* the tracked question's key */
	__u64 host_key; /* the pattern learned under (kind 0: none yet) */
	__u32 kind;
	__u32 gen;
	__u32 len;      /* bytes of the message */
	__u32 pos;      /* the next record's offset, or the record body's */
	__u32 next;     /* the offset after the current record */
	__u32 records;  /* answer records left */
	__u32 phase;
	__u32 role;
	__u32 npos;     /* the name's read offset */
	__u32 end;      /* the offset after the name in the record (0: not known yet) */
	__u32 label;    /* bytes left of the current label */
	__u32 labels;
	__u32 jumps;
	__u32 text;     /* the name's length as text */
	__u32 owner_in_chain;
	__u32 chained;
	__u32 naddrs;
	__u32 bad;      /* 1: malformed; 2: the question is not the one asked */
	__u32 floor;    /* seconds: the covering pattern's TTL floor */
	__u64 now;      /* boot ns when the answer's addresses are written */
	__u32 cname_off; /* where the CNAME target being read starts */
	struct aegis_learned_key lk; /* the learned entry written (not on the stack) */
	struct aegis_learned lv;
	struct dns_pending_key pk;
};
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dns_answer);
} dns_answer_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, AEGIS_DNS_STATS);
	__type(key, __u32);
	__type(value, __u64);
} dns_stats SEC(".maps");

static __always_inline void dns_count(__u32 slot)
{
	__u64 *value = bpf_map_lookup_elem(&dns_stats, &slot);
	if (value)
		*value += 1; /* per CPU, and a cgroup_skb program is not re-entered on its CPU */
}

struct dns_answer_walk {
	struct dns_answer *a;
};

static __always_inline __u8 dns_byte(const struct dns_answer *a, __u32 offset)
{
	return a->msg[offset & DNS_MSG_MASK];
}

static __always_inline __u32 dns_u16(const struct dns_answer *a, __u32 offset)
{
	return (__u32)dns_byte(a, offset) << 8 | dns_byte(a, offset + 1);
}

/*
 * The pattern covering the name just read, kept when the chain has none yet: the name itself (one lookup,
 * when the generation has exact names), else the longest wildcard domain among its parent suffixes. A
 * suffix's key folds the hashes of its labels from the last (lib/policy/host_name.ts domainKey); only the
 * label counts some wildcard's domain has (gen_info.host_rules bits 2 to 8) are looked up.
 */
static __always_inline void dns_cover(struct dns_answer *a)
{
	struct aegis_state s;
	if (a->kind || !load_generation(&s, a->gen))
		return;
	__u32 shape = s.info->host_rules;
	struct aegis_rule *pattern = (shape & AEGIS_HOST_EXACT) ? exact_rule(&s, AEGIS_RULE_HOST_PATTERN, a->hash, 0) : 0;
	if (pattern) {
		a->kind = AEGIS_RULE_HOST;
		a->host_key = a->hash;
		a->floor = pattern->rule_id;
		return;
	}
	__u32 labels = a->labels;
	__u64 key = FNV_OFFSET;
	/* A wildcard covers one label or more in front of its domain: n labels of the name's last, n < labels. */
	for (int n = 1; n <= DNS_SUFFIX_SLOTS; n++) {
		if (n >= labels)
			break;
		key = (key ^ a->label_hash[(labels - n) & (DNS_LABEL_RING - 1)]) * FNV_PRIME;
		key ^= key >> 32;
		a->suffix[n] = key;
	}
	for (int n = DNS_SUFFIX_SLOTS; n >= 2; n--) {
		if (n >= labels || !(shape & (1u << n)))
			continue;
		key = a->suffix[n];
		pattern = exact_rule(&s, AEGIS_RULE_HOST_PATTERN, key, 1);
		if (pattern) {
			a->kind = AEGIS_RULE_HOST_WILDCARD;
			a->host_key = key;
			a->floor = pattern->rule_id;
			return;
		}
	}
}

/* A name read to its end: what it was read for. 1 stops the walk. */
static __always_inline long dns_name_done(struct dns_answer *a)
{
	switch (a->role) {
	case DNS_ROLE_QUESTION:
		if (a->hash != a->expected) {
			a->bad = 2;
			return 1;
		}
		a->chain[0] = a->hash;
		a->chain_off[0] = 12;
		a->chained = 1;
		dns_cover(a);
		a->pos = a->end + 4; /* QTYPE, QCLASS */
		if (a->pos > a->len) {
			a->bad = 1;
			return 1;
		}
		a->phase = DNS_PH_RECORD;
		return 0;
	case DNS_ROLE_OWNER: {
		__u32 found = 0;
		for (int i = 0; i < DNS_CHAIN_MAX; i++)
			if (i < a->chained && a->chain[i] == a->hash)
				found = 1;
		a->owner_in_chain = found;
		a->pos = a->end;
		a->phase = DNS_PH_BODY;
		return 0;
	}
	default: /* a CNAME target of a name in the chain */
		if (a->chained < DNS_CHAIN_MAX) {
			a->chain[a->chained & (DNS_CHAIN_MAX - 1)] = a->hash;
			a->chain_off[a->chained & (DNS_CHAIN_MAX - 1)] = a->cname_off;
			a->chained++;
		}
		dns_cover(a);
		a->pos = a->next;
		a->phase = DNS_PH_RECORD;
		return 0;
	}
}

static __always_inline void dns_name_start(struct dns_answer *a, __u32 offset, __u32 role)
{
	a->role = role;
	a->npos = offset;
	a->end = 0;
	a->label = 0;
	a->labels = 0;
	a->jumps = 0;
	a->text = 0;
	a->hash = FNV_OFFSET;
	a->lhash = FNV_OFFSET;
	a->phase = DNS_PH_NAME;
}

/*
 * One step of a name: up to DNS_CHUNK bytes of the current label (into the name's key and the label's
 * hash, kept when the label ends), or a length byte, a compression pointer or the end.
 */
static __always_inline long dns_name_step(struct dns_answer *a)
{
	__u32 p = a->npos;
	if (p >= a->len) {
		a->bad = 1;
		return 1;
	}
	__u32 left = a->label;
	if (left) {
		__u32 n = left < DNS_CHUNK ? left : DNS_CHUNK;
		if (p + n > a->len) {
			a->bad = 1;
			return 1;
		}
		__u64 hash = a->hash;
		__u64 lhash = a->lhash;
		for (int i = 0; i < DNS_CHUNK; i++) {
			if (i >= n)
				break;
			__u8 c = dns_byte(a, p + i);
			if (c >= 'A' && c <= 'Z')
				c += 'a' - 'A';
			hash = (hash ^ c) * FNV_PRIME;
			lhash = (lhash ^ c) * FNV_PRIME;
		}
		a->hash = hash;
		a->lhash = lhash;
		a->npos = p + n;
		a->label = left - n;
		if (left == n)
			a->label_hash[(a->labels - 1) & (DNS_LABEL_RING - 1)] = lhash;
		return 0;
	}
	__u8 c = dns_byte(a, p);
	a->npos = p + 1;
	if (c == 0) {
		if (!a->end)
			a->end = p + 1;
		return dns_name_done(a);
	}
	if ((c & 0xc0) == 0xc0) {
		__u32 target = (__u32)(c & 0x3f) << 8 | dns_byte(a, p + 1);
		if (!a->end)
			a->end = p + 2;
		/* Backwards only: no pointer loop, and the bytes pointed at were there before. */
		if (p + 1 >= a->len || target >= p || ++a->jumps > DNS_JUMPS) {
			a->bad = 1;
			return 1;
		}
		a->npos = target;
		return 0;
	}
	if (c > 63) {
		a->bad = 1;
		return 1;
	}
	if (a->labels) {
		a->hash = (a->hash ^ '.') * FNV_PRIME;
		a->text++;
	}
	a->text += c;
	if (a->text > 253) {
		a->bad = 1;
		return 1;
	}
	a->lhash = FNV_OFFSET;
	a->labels++;
	a->label = c;
	return 0;
}

/* A record's fixed part (type, class, TTL, data length) and its data. */
static __always_inline long dns_body_step(struct dns_answer *a)
{
	__u32 p = a->pos;
	if (p + 10 > a->len) {
		a->bad = 1;
		return 1;
	}
	__u32 type = dns_u16(a, p);
	__u32 class = dns_u16(a, p + 2);
	__u32 ttl = dns_u16(a, p + 4) << 16 | dns_u16(a, p + 6);
	__u32 rdlen = dns_u16(a, p + 8);
	__u32 data = p + 10;
	a->next = data + rdlen;
	if (a->next > a->len) {
		a->bad = 1;
		return 1;
	}
	if (ttl & 0x80000000)
		ttl = 0; /* RFC 2181: a TTL with the top bit set is 0 */
	if (class == DNS_CLASS_IN && a->owner_in_chain) {
		if (type == DNS_TYPE_CNAME) {
			a->cname_off = data;
			dns_name_start(a, data, DNS_ROLE_CNAME);
			return 0;
		}
		__u32 size = type == DNS_TYPE_A ? 4 : type == DNS_TYPE_AAAA ? 16 : 0;
		if (size && rdlen != size) {
			a->bad = 1;
			return 1;
		}
		if (size && a->naddrs < DNS_ADDRS_MAX) {
			struct dns_addr *addr = &a->addrs[a->naddrs & (DNS_ADDRS_MAX - 1)];
			addr->family = size == 4 ? AEGIS_FAMILY_IPV4 : AEGIS_FAMILY_IPV6;
			addr->ttl = ttl;
			for (int i = 0; i < 16; i++)
				addr->addr[i] = i < size ? dns_byte(a, data + i) : 0;
			a->naddrs++;
		}
	}
	a->pos = a->next;
	a->phase = DNS_PH_RECORD;
	return 0;
}

/*
 * A record's owner name: a compression pointer to where a name of the chain starts is that name (the
 * usual answer: a pointer to the question), with no walk; any other name is read and its key compared.
 */
static __always_inline long dns_record_start(struct dns_answer *a)
{
	__u32 p = a->pos;
	__u8 c = dns_byte(a, p);
	if ((c & 0xc0) == 0xc0 && p + 2 <= a->len) {
		__u32 target = (__u32)(c & 0x3f) << 8 | dns_byte(a, p + 1);
		for (int k = 0; k < DNS_CHAIN_MAX; k++) {
			if (k < a->chained && a->chain_off[k] == target) {
				a->owner_in_chain = 1;
				a->pos = p + 2;
				a->phase = DNS_PH_BODY;
				return 0;
			}
		}
	}
	dns_name_start(a, p, DNS_ROLE_OWNER);
	return 0;
}

static long dns_answer_step(__u32 i, struct dns_answer_walk *ctx)
{
	struct dns_answer *a = ctx->a;
	if (!a)
		return 1;
	switch (a->phase) {
	case DNS_PH_NAME:
		return dns_name_step(a);
	case DNS_PH_BODY:
		return dns_body_step(a);
	case DNS_PH_RECORD:
		if (!a->records) {
			a->phase = DNS_PH_DONE;
			return 1;
		}
		a->records--;
		return dns_record_start(a);
	default:
		return 1;
	}
}

#define EEXIST_ 17

/*
 * Writes the i-th address of the answer into `learned`: a new address in one insert (BPF_NOEXIST, no lookup
 * first); a known one under the same pattern keeps its entry, with the later of the two expiries written in
 * place (the lookup marks it used, as an update would); under another pattern it is replaced.
 */
static long dns_learn_step(__u32 i, struct dns_answer_walk *ctx)
{
	struct dns_answer *a = ctx->a;
	if (!a || i >= a->naddrs || i >= DNS_ADDRS_MAX)
		return 1;
	struct dns_addr *addr = &a->addrs[i & (DNS_ADDRS_MAX - 1)];
	a->lk.family = addr->family;
	__builtin_memcpy(a->lk.addr, addr->addr, 16);
	__u64 seconds = addr->ttl > a->floor ? addr->ttl : a->floor;
	__u64 expires = a->now + seconds * 1000000000ULL;
	a->lv.expires_boot_ns = expires;
	a->lv.host_key = a->host_key;
	a->lv.kind = a->kind;
	a->lv._pad0 = 0;
	long err = bpf_map_update_elem(&learned, &a->lk, &a->lv, BPF_NOEXIST);
	if (err == -EEXIST_) {
		struct aegis_learned *known = bpf_map_lookup_elem(&learned, &a->lk);
		if (known && known->host_key == a->host_key && known->kind == a->kind) {
			if (known->expires_boot_ns < expires)
				known->expires_boot_ns = expires;
			dns_count(AEGIS_DNS_LEARNED);
			return 0;
		}
		if (!known)
			dns_count(AEGIS_DNS_INSERTED); /* evicted meanwhile: new again */
		err = bpf_map_update_elem(&learned, &a->lk, &a->lv, BPF_ANY);
	} else if (!err) {
		dns_count(AEGIS_DNS_INSERTED);
	}
	if (!err)
		dns_count(AEGIS_DNS_LEARNED);
	return 0;
}

/*
 * The answer in the UDP datagram `skb` (its payload at `offset`, from `family` server `server`, to the
 * client port `dport_be`): learned from, or counted as not. A global function: verified once.
 */
__noinline int aegis_dns_answer(struct __sk_buff *skb, __u32 offset, __u32 family, __u32 dport_be, __u32 tcp)
{
	__u32 zero = 0;
	struct dns_answer *a = bpf_map_lookup_elem(&dns_answer_scratch, &zero);
	if (!a)
		return 0;
	struct aegis_state s;
	if (!load_state(&s) || !s.info->host_rules || !skb_in_scope(&s, skb))
		return 0;
	/* The server, read again here: a global function takes no pointer to the caller's stack on 6.1. */
	__builtin_memset(a->pk.server, 0, 16);
	if (family == AEGIS_FAMILY_IPV4) {
		if (bpf_skb_load_bytes(skb, 12, a->pk.server, 4))
			return 0;
	} else if (bpf_skb_load_bytes(skb, 8, a->pk.server, 16)) {
		return 0;
	}
	/* A server the scope may not ask (port 53 of the answer's protocol denied by the egress rules). */
	struct aegis_net_key server = { .space = family, .protocol = tcp ? IPPROTO_TCP_ : IPPROTO_UDP_ };
	__builtin_memcpy(server.addr, a->pk.server, 16);
	if (aegis_names_egress_deny(&server, &server, (__u32)bpf_htons(DNS_PORT) << 16 | (s.gen & 1))) {
		dns_count(AEGIS_DNS_FOREIGN);
		return 0;
	}
	if (offset >= skb->len || skb->len - offset < 12) {
		dns_count(AEGIS_DNS_MALFORMED);
		return 0;
	}
	__u32 len = skb->len - offset;
	if (tcp) {
		/* Over TCP, the whole message in this segment: its 2-byte length says the rest of the segment. */
		__u16 size_be;
		if (bpf_skb_load_bytes(skb, offset - 2, &size_be, 2) || bpf_ntohs(size_be) != len) {
			dns_count(AEGIS_DNS_MALFORMED);
			return 0;
		}
	}
	if (len > AEGIS_DNS_MESSAGE_MAX) {
		dns_count(AEGIS_DNS_MALFORMED);
		return 0;
	}
	if (len < 12 || bpf_skb_load_bytes(skb, offset, a->msg, len)) {
		dns_count(AEGIS_DNS_MALFORMED);
		return 0;
	}
	a->pk.family = family;
	a->pk.client_port_be = dport_be;
	__builtin_memcpy(&a->pk.id_be, a->msg, 2);
	struct dns_pending *pending = bpf_map_lookup_elem(&dns_pending, &a->pk);
	if (!pending) {
		dns_count(AEGIS_DNS_UNSOLICITED);
		return 0;
	}
	a->expected = pending->name_key;
	__u32 flags = dns_u16(a, 2);
	/* A query, not an answer; or an answer cut short (TC): nothing learned from it. */
	if (!(flags & 0x8000) || (flags & 0x0200) || dns_u16(a, 4) != 1) {
		dns_count(AEGIS_DNS_MALFORMED);
		return 0;
	}
	a->len = len;
	a->gen = s.gen;
	a->records = dns_u16(a, 6);
	a->kind = 0;
	a->host_key = 0;
	a->chained = 0;
	a->naddrs = 0;
	a->bad = 0;
	a->owner_in_chain = 0;
	dns_name_start(a, 12, DNS_ROLE_QUESTION);
	struct dns_answer_walk walk = { .a = a };
	bpf_loop(DNS_STEPS, dns_answer_step, &walk, 0);
	if (a->bad == 2) {
		/* Not the question asked: someone else's answer, and the query still awaits its own. */
		dns_count(AEGIS_DNS_UNSOLICITED);
		return 0;
	}
	/* Answered: another answer to it is unsolicited (its question matches no key 0): in place, no LRU delete. */
	pending->name_key = 0;
	if (a->bad || a->phase != DNS_PH_DONE) {
		dns_count(AEGIS_DNS_MALFORMED);
		return 0;
	}
	dns_count(AEGIS_DNS_ANSWERS);
	/* An error answer (RCODE) has no addresses; one for no name a rule covers teaches nothing. */
	if (!a->kind || (flags & 0xf))
		return 0;
	a->now = boot_ns_this_tick(); /* an expiry at most a tick early, as the checks are at most a tick late */
	bpf_loop(DNS_ADDRS_MAX, dns_learn_step, &walk, 0);
	return 0;
}

/*
 * The IP and UDP/TCP headers of a received packet: its family, protocol, transport offset and ports (network
 * order). Read in place where the headers lie in the linear area (plain loads), else with
 * bpf_skb_load_bytes. 0 for a fragment, a protocol other than UDP and TCP, or a packet too short.
 */
static __always_inline int dns_headers(struct __sk_buff *skb, __u32 *family, __u8 *protocol, __u32 *l4,
				       __u16 ports[2])
{
	__u8 *data = (__u8 *)(long)skb->data;
	__u8 *end = (__u8 *)(long)skb->data_end;
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;
		if (data + sizeof(ip) <= end)
			__builtin_memcpy(&ip, data, sizeof(ip));
		else if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)))
			return 0;
		if (ip.frag_off & bpf_htons(IP_OFFSET_MASK | 0x2000))
			return 0;
		*protocol = ip.protocol;
		*l4 = (ip.ihl * 4) & 0x3c;
		*family = AEGIS_FAMILY_IPV4;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		if (data + 7 <= end)
			*protocol = data[6];
		else if (bpf_skb_load_bytes(skb, 6, protocol, 1))
			return 0;
		*l4 = 40;
		*family = AEGIS_FAMILY_IPV6;
	} else {
		return 0;
	}
	if (*protocol != IPPROTO_UDP_ && *protocol != IPPROTO_TCP_)
		return 0;
	__u32 at = *l4;
	if (data + at + 4 <= end) {
		ports[0] = *(__u16 *)(data + at);
		ports[1] = *(__u16 *)(data + at + 2);
		return 1;
	}
	return !bpf_skb_load_bytes(skb, at, ports, 4);
}

SEC("cgroup_skb/ingress")
int aegis_skb_dns(struct __sk_buff *skb)
{
	/* Without rules by name there is nothing to learn: two array reads, no header. */
	if (!names_active())
		return SKB_PASS;
	/* The cheap test every received packet takes then: UDP or TCP from port 53, not a fragment. */
	__u32 l4;
	__u32 family;
	__u8 protocol;
	__u16 ports[2];
	if (!dns_headers(skb, &family, &protocol, &l4, ports) || ports[0] != bpf_htons(DNS_PORT))
		return SKB_PASS;
	if (protocol == IPPROTO_UDP_) {
		aegis_dns_answer(skb, l4 + 8, family, ports[1], 0);
		return SKB_PASS;
	}
	/* TCP: a segment that carries a message (not a handshake or a bare ACK). */
	__u8 doff;
	if (bpf_skb_load_bytes(skb, l4 + 12, &doff, 1))
		return SKB_PASS;
	__u32 msg = l4 + (doff >> 4) * 4 + 2;
	if (msg >= skb->len)
		return SKB_PASS;
	aegis_dns_answer(skb, msg, family, ports[1], 1);
	return SKB_PASS;
}
