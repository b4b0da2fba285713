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

#define AEGIS_ACTION_DENY 0
#define AEGIS_ACTION_ALLOW 1

/* Hooks, used as event types and as counter rows. */
#define AEGIS_HOOK_FILE_OPEN 0
#define AEGIS_HOOK_EXEC 1
#define AEGIS_HOOK_CONNECT 2
#define AEGIS_HOOK_SENDMSG 3
#define AEGIS_HOOK_BIND 4
#define AEGIS_HOOK_INGRESS 5
#define AEGIS_HOOK_COUNT 6

/* Per-CPU counter slots: [hook][decision], then events lost and events suppressed. */
#define AEGIS_COUNTER_EVENTS_LOST (AEGIS_HOOK_COUNT * 2)
#define AEGIS_COUNTER_EVENTS_SUPPRESSED (AEGIS_HOOK_COUNT * 2 + 1)
#define AEGIS_COUNTER_SLOTS (AEGIS_HOOK_COUNT * 2 + 2)

#define AEGIS_FAMILY_IPV4 4
#define AEGIS_FAMILY_IPV6 6

#define AEGIS_SCOPE_INCLUDE 1
#define AEGIS_SCOPE_EXEMPT 2

/* Event rate limit per (rule, pid): a burst per window, then suppressed and counted. */
#define AEGIS_RATE_WINDOW_NS 1000000000ULL
#define AEGIS_RATE_BURST 8

#define AEGIS_COMM_LEN 16

/*
 * The config map is an array of __u64 words, one per setting, so that each
 * writer (a flip, break-glass, the deadman) writes only its own word and
 * never rewrites another's with a stale value.
 */
#define AEGIS_CFG_ACTIVE_GEN 0  /* 0 or 1: the rule generation the hooks read */
#define AEGIS_CFG_FORCE_AUDIT 1 /* non-zero: `run --audit`, audit whatever the policy says */
#define AEGIS_CFG_BREAK_GLASS 2 /* non-zero: audit everywhere */
#define AEGIS_CFG_DEADMAN 3     /* CLOCK_BOOTTIME ns after which hooks audit; 0 = no deadman */
#define AEGIS_CFG_WORDS 4

/* Per-generation facts of a rule set (array map indexed by generation). */
struct aegis_gen_info {
	__u32 mode;          /* AEGIS_MODE_*: what the policy asks for */
	__u32 scope_include; /* number of scope.cgroups entries: 0 = every task */
	__u32 scope_exempt;  /* number of scope.exempt entries */
	__u32 uid_rules;     /* number of network.egress.users entries */
	__u32 ingress_port_denies; /* ingress deny rules that name ports */
	__u32 _pad0;
};
_Static_assert(sizeof(struct aegis_gen_info) == 24, "aegis_gen_info size");

/* An inode as the kernel names it: (s_dev in kernel encoding, i_ino), per generation. */
struct aegis_inode_key {
	__u64 ino;
	__u32 dev;
	__u32 gen;
};
_Static_assert(sizeof(struct aegis_inode_key) == 16, "aegis_inode_key size");

/*
 * LPM trie key for egress and ingress CIDR rules, IPv4 and IPv6 alike.
 * prefixlen = 32 (space) + 8 (protocol) + 16 (port) + CIDR length. Maps of
 * port-less rules store port 0; IPv4 addresses sit in the first 4 bytes.
 */
struct aegis_net_key {
	__u32 prefixlen;
	__u32 space; /* generation << 8 | AEGIS_FAMILY_* */
	__u8 protocol;
	__u8 port[2]; /* big-endian */
	__u8 addr[16];
	__u8 _pad0;
};
_Static_assert(sizeof(struct aegis_net_key) == 28, "aegis_net_key size");

/* What a matched rule carries back to the hook. */
struct aegis_rule {
	__u32 rule_id;
	__u8 action;     /* AEGIS_ACTION_* */
	__u8 prefix_len; /* CIDR length, to pick the most specific of two matches */
	__u8 _pad0[2];
};
_Static_assert(sizeof(struct aegis_rule) == 8, "aegis_rule size");

/* Cgroup scope entries: value is AEGIS_SCOPE_*. */
struct aegis_scope_key {
	__u64 cgroup_id;
	__u32 gen;
	__u32 _pad0;
};
_Static_assert(sizeof(struct aegis_scope_key) == 16, "aegis_scope_key size");

/* A uid with an egress port allowlist (value: the rule denying the rest). */
struct aegis_uid_key {
	__u32 gen;
	__u32 uid;
};
_Static_assert(sizeof(struct aegis_uid_key) == 8, "aegis_uid_key size");

/* One allowed destination port of a restricted uid. */
struct aegis_uid_port_key {
	__u32 gen;
	__u32 uid;
	__u16 port;
	__u16 _pad0;
};
_Static_assert(sizeof(struct aegis_uid_port_key) == 12, "aegis_uid_port_key size");

/* Bind deny and ingress failsafe entries: (port, protocol) per generation. */
struct aegis_port_key {
	__u32 gen;
	__u16 port; /* host order */
	__u8 protocol;
	__u8 _pad0;
};
_Static_assert(sizeof(struct aegis_port_key) == 8, "aegis_port_key size");

/* An interface with ingress filtering in a generation. */
struct aegis_iface_key {
	__u32 gen;
	__u32 ifindex;
};
_Static_assert(sizeof(struct aegis_iface_key) == 8, "aegis_iface_key size");

struct aegis_iface {
	__u32 default_action; /* AEGIS_ACTION_*: what an unmatched packet gets */
	__u32 rule_id;        /* reported for default drops */
};
_Static_assert(sizeof(struct aegis_iface) == 8, "aegis_iface size");

/*
 * Temporary ingress allow entries (API sessions), outside the generations so
 * a policy flip keeps them. prefixlen = 32 + 16 + 16 + CIDR length.
 */
struct aegis_session_key {
	__u32 prefixlen;
	__u32 ifindex;
	__u8 port[2]; /* big-endian destination port; 0 = any */
	__u8 family;
	__u8 _pad0;
	__u8 addr[16];
};
_Static_assert(sizeof(struct aegis_session_key) == 28, "aegis_session_key size");

struct aegis_session {
	__u64 expires_boot_ns;
	__u32 session_id;
	__u32 _pad0;
};
_Static_assert(sizeof(struct aegis_session) == 16, "aegis_session size");

struct aegis_rate_key {
	__u32 rule_id;
	__u32 who; /* pid, or the source address for ingress */
};
_Static_assert(sizeof(struct aegis_rate_key) == 8, "aegis_rate_key size");

struct aegis_rate {
	__u64 window_start_ns;
	__u32 emitted;
	__u32 suppressed;
};
_Static_assert(sizeof(struct aegis_rate) == 16, "aegis_rate size");

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
	__u32 ifindex;
	__u16 dport; /* host order */
	__u16 sport; /* host order */
	__u8 hook;     /* AEGIS_HOOK_* */
	__u8 decision; /* AEGIS_DECISION_* */
	__u8 mode;     /* AEGIS_MODE_* in force when decided */
	__u8 family;   /* AEGIS_FAMILY_* or 0 */
	__u8 protocol; /* IPPROTO_* or 0 */
	__u8 gen;      /* rule generation that decided: names the policy the rule id belongs to */
	__u8 _pad0[6];
	__u8 daddr[16];
	__u8 saddr[16];
	char comm[AEGIS_COMM_LEN];
};
_Static_assert(sizeof(struct aegis_event) == 120, "aegis_event size");

#endif /* AEGIS_H */
