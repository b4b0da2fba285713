// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The kernel's own cost of what the DNS parser (bpf/dns_learn.bpf.h) does once per answer it learns from:
 * inserting a fresh address into an LRU hash shaped like `learned` (same key, value and capacity), alone.
 * bench/suites/dns.ts runs both programs through BPF_PROG_TEST_RUN with a repeat count, in the same run as
 * the parser's figures: `lru_insert` inserts the next address at each run, `lru_count` does the same work
 * but the insert, so the difference is the insert itself.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "aegis.h"

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, AEGIS_LEARNED_ENTRIES);
	__type(key, struct aegis_learned_key);
	__type(value, struct aegis_learned);
} table SEC(".maps");

/* Slot 0: the next address to insert; slot 1: inserts the kernel refused (none expected). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

/* As the parser keeps them: in a map value, not on the stack. */
struct entry {
	struct aegis_learned_key key;
	struct aegis_learned value;
};
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct entry);
} scratch SEC(".maps");

static __always_inline struct entry *next_entry(__u64 **failed)
{
	__u32 zero = 0, one = 1;
	__u64 *next = bpf_map_lookup_elem(&counts, &zero);
	struct entry *e = bpf_map_lookup_elem(&scratch, &zero);
	*failed = bpf_map_lookup_elem(&counts, &one);
	if (!next || !e || !*failed)
		return 0;
	__u32 n = (__u32)__sync_fetch_and_add(next, 1);
	e->key.family = AEGIS_FAMILY_IPV4;
	__builtin_memcpy(e->key.addr, &n, sizeof(n));
	e->value.expires_boot_ns = bpf_ktime_get_boot_ns() + 300 * 1000000000ULL;
	e->value.host_key = n;
	e->value.kind = AEGIS_RULE_HOST_WILDCARD;
	return e;
}

SEC("xdp")
int lru_insert(struct xdp_md *ctx)
{
	__u64 *failed;
	struct entry *e = next_entry(&failed);
	if (!e)
		return XDP_ABORTED;
	if (bpf_map_update_elem(&table, &e->key, &e->value, BPF_NOEXIST)) {
		__sync_fetch_and_add(failed, 1);
		return XDP_ABORTED;
	}
	return XDP_PASS;
}

SEC("xdp")
int lru_count(struct xdp_md *ctx)
{
	__u64 *failed;
	return next_entry(&failed) ? XDP_PASS : XDP_ABORTED;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
