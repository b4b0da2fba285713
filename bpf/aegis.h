/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Every struct that crosses the kernel boundary. Fixed-width types, explicit
 * padding and a size assert for each; ffi/layout.ts mirrors them byte for byte
 * and a unit test checks the mirror against the BTF of the built object.
 */
#ifndef AEGIS_H
#define AEGIS_H

#define AEGIS_MODE_AUDIT 0
#define AEGIS_MODE_ENFORCE 1

#define AEGIS_DECISION_DENY 0
#define AEGIS_DECISION_AUDIT 1

/* Hooks, used as event types and as counter rows. */
#define AEGIS_HOOK_FILE_OPEN 0
#define AEGIS_HOOK_EXEC 1
#define AEGIS_HOOK_CONNECT 2
#define AEGIS_HOOK_SENDMSG 3
#define AEGIS_HOOK_BIND 4
#define AEGIS_HOOK_INGRESS 5
#define AEGIS_HOOK_COUNT 6

/* Counter slots: [hook][decision], then the lost-event counter. */
#define AEGIS_COUNTER_SLOTS (AEGIS_HOOK_COUNT * 2 + 1)
#define AEGIS_COUNTER_EVENTS_LOST (AEGIS_HOOK_COUNT * 2)

#define AEGIS_FAMILY_IPV4 4
#define AEGIS_FAMILY_IPV6 6

#define AEGIS_COMM_LEN 16

/* Value of the single-slot config map. One map write switches the mode. */
struct aegis_config {
	__u32 mode;        /* AEGIS_MODE_*: what the policy asks for */
	__u32 active_gen;  /* 0 or 1: the rule generation the hooks read */
	__u32 break_glass; /* non-zero: audit whatever the mode says */
	__u32 _pad0;
	__u64 deadman_deadline_ns; /* CLOCK_BOOTTIME ns; 0 = no deadman */
};
_Static_assert(sizeof(struct aegis_config) == 24, "aegis_config size");

/* An inode as the kernel names it: (s_dev in kernel encoding, i_ino). */
struct aegis_inode_key {
	__u64 ino;
	__u32 dev;
	__u32 gen;
};
_Static_assert(sizeof(struct aegis_inode_key) == 16, "aegis_inode_key size");

/* LPM trie key for IPv4. prefixlen counts the 32 generation bits too. */
struct aegis_lpm4_key {
	__u32 prefixlen;
	__u32 gen; /* 0 or 1, matched as the first 32 bits of the prefix */
	__u8 addr[4];
};
_Static_assert(sizeof(struct aegis_lpm4_key) == 12, "aegis_lpm4_key size");

/* What a matched rule carries back to the hook. */
struct aegis_rule {
	__u32 rule_id;
	__u32 action; /* AEGIS_DECISION_DENY for deny rules */
};
_Static_assert(sizeof(struct aegis_rule) == 8, "aegis_rule size");

/* One ring buffer record. */
struct aegis_event {
	__u64 ts_boot_ns; /* bpf_ktime_get_boot_ns() */
	__u64 cgroup_id;
	__u64 ino;
	__u32 dev;
	__u32 pid;
	__u32 ppid;
	__u32 uid;
	__u32 gid;
	__u32 rule_id;
	__u32 count; /* 1 + events suppressed by the rate limit before this one */
	__u8 hook;     /* AEGIS_HOOK_* */
	__u8 decision; /* AEGIS_DECISION_* */
	__u8 mode;     /* AEGIS_MODE_* in force when decided */
	__u8 family;   /* AEGIS_FAMILY_* or 0 */
	__u8 protocol; /* IPPROTO_* or 0 */
	__u8 _pad0;
	__u16 dport; /* host byte order */
	__u16 sport; /* host byte order */
	__u16 _pad1;
	__u8 daddr[16];
	__u8 saddr[16];
	char comm[AEGIS_COMM_LEN];
};
_Static_assert(sizeof(struct aegis_event) == 112, "aegis_event size");

#endif /* AEGIS_H */
