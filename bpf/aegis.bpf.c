// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "aegis.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define EPERM 1
#define ETH_P_IP 0x0800

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct aegis_config);
} aegis_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct aegis_inode_key);
	__type(value, struct aegis_rule);
} deny_inode SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct aegis_lpm4_key);
	__type(value, struct aegis_rule);
} egress4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct aegis_lpm4_key);
	__type(value, struct aegis_rule);
} ingress4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, AEGIS_COUNTER_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
} events SEC(".maps");

/* Keeps struct aegis_event in the object's BTF for the layout test. */
const volatile struct aegis_event aegis_event_btf_anchor = {};

static __always_inline struct aegis_config *load_config(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&aegis_cfg, &zero);
}

static __always_inline int enforcing(const struct aegis_config *cfg)
{
	if (!cfg || cfg->mode != AEGIS_MODE_ENFORCE || cfg->break_glass)
		return 0;
	if (cfg->deadman_deadline_ns && bpf_ktime_get_boot_ns() > cfg->deadman_deadline_ns)
		return 0;
	return 1;
}

static __always_inline void count(__u32 hook, __u32 decision)
{
	__u32 slot = hook * 2 + decision;
	__u64 *n = bpf_map_lookup_elem(&counters, &slot);
	if (n)
		*n += 1;
}

/* Reserves an event with the process fields filled in, or counts it lost. */
static __always_inline struct aegis_event *new_event(__u32 hook, __u32 decision, __u32 mode,
						      __u32 rule_id)
{
	struct aegis_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(AEGIS_COUNTER_EVENTS_LOST / 2, AEGIS_COUNTER_EVENTS_LOST % 2);
		return 0;
	}
	__builtin_memset(e, 0, sizeof(*e));
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u64 uid_gid = bpf_get_current_uid_gid();
	e->ts_boot_ns = bpf_ktime_get_boot_ns();
	e->cgroup_id = bpf_get_current_cgroup_id();
	e->pid = pid_tgid >> 32;
	e->ppid = BPF_CORE_READ(task, real_parent, tgid);
	e->uid = (__u32)uid_gid;
	e->gid = uid_gid >> 32;
	e->rule_id = rule_id;
	e->count = 1;
	e->hook = hook;
	e->decision = decision;
	e->mode = mode;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	return e;
}

static __always_inline struct aegis_rule *denied_inode(const struct aegis_config *cfg, struct inode *inode,
						       struct aegis_inode_key *key)
{
	key->ino = BPF_CORE_READ(inode, i_ino);
	key->dev = BPF_CORE_READ(inode, i_sb, s_dev);
	key->gen = cfg->active_gen;
	return bpf_map_lookup_elem(&deny_inode, key);
}

static __always_inline void emit_inode_event(__u32 hook, __u32 decision, __u32 mode, __u32 rule_id,
					     const struct aegis_inode_key *key)
{
	struct aegis_event *e = new_event(hook, decision, mode, rule_id);
	if (!e)
		return;
	e->ino = key->ino;
	e->dev = key->dev;
	bpf_ringbuf_submit(e, 0);
}

SEC("lsm/file_open")
int BPF_PROG(aegis_file_open, struct file *file)
{
	struct aegis_config *cfg = load_config();
	struct aegis_inode_key key;
	if (!cfg)
		return 0;
	struct aegis_rule *rule = denied_inode(cfg, file->f_inode, &key);
	if (!rule)
		return 0;
	int enforce = enforcing(cfg);
	__u32 decision = enforce ? AEGIS_DECISION_DENY : AEGIS_DECISION_AUDIT;
	count(AEGIS_HOOK_FILE_OPEN, decision);
	emit_inode_event(AEGIS_HOOK_FILE_OPEN, decision, enforce, rule->rule_id, &key);
	return enforce ? -EPERM : 0;
}

/* Audit fallback where BPF-LSM cannot load: resolve the new fd to its inode. */
SEC("tracepoint/syscalls/sys_exit_openat")
int aegis_tp_openat(struct trace_event_raw_sys_exit *ctx)
{
	long fd = ctx->ret;
	if (fd < 0)
		return 0;
	struct aegis_config *cfg = load_config();
	if (!cfg)
		return 0;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt || fd >= BPF_CORE_READ(fdt, max_fds))
		return 0;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *file = 0;
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) || !file)
		return 0;
	struct aegis_inode_key key;
	struct aegis_rule *rule = denied_inode(cfg, BPF_CORE_READ(file, f_inode), &key);
	if (!rule)
		return 0;
	count(AEGIS_HOOK_FILE_OPEN, AEGIS_DECISION_AUDIT);
	emit_inode_event(AEGIS_HOOK_FILE_OPEN, AEGIS_DECISION_AUDIT, AEGIS_MODE_AUDIT, rule->rule_id, &key);
	return 0;
}

SEC("cgroup/connect4")
int aegis_connect4(struct bpf_sock_addr *ctx)
{
	struct aegis_config *cfg = load_config();
	if (!cfg)
		return 1;
	struct aegis_lpm4_key key = { .prefixlen = 64, .gen = cfg->active_gen };
	__u32 daddr = ctx->user_ip4;
	__builtin_memcpy(key.addr, &daddr, 4);
	struct aegis_rule *rule = bpf_map_lookup_elem(&egress4, &key);
	if (!rule)
		return 1;
	int enforce = enforcing(cfg);
	__u32 decision = enforce ? AEGIS_DECISION_DENY : AEGIS_DECISION_AUDIT;
	count(AEGIS_HOOK_CONNECT, decision);
	struct aegis_event *e = new_event(AEGIS_HOOK_CONNECT, decision, enforce, rule->rule_id);
	if (e) {
		e->family = AEGIS_FAMILY_IPV4;
		e->protocol = ctx->protocol;
		__builtin_memcpy(e->daddr, &daddr, 4);
		e->dport = bpf_ntohs(ctx->user_port);
		bpf_ringbuf_submit(e, 0);
	}
	return enforce ? 0 : 1;
}

SEC("xdp")
int aegis_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return XDP_PASS;
	struct aegis_config *cfg = load_config();
	if (!cfg)
		return XDP_PASS;
	struct aegis_lpm4_key key = { .prefixlen = 64, .gen = cfg->active_gen };
	__builtin_memcpy(key.addr, &ip->saddr, 4);
	if (!bpf_map_lookup_elem(&ingress4, &key))
		return XDP_PASS;
	int enforce = enforcing(cfg);
	count(AEGIS_HOOK_INGRESS, enforce ? AEGIS_DECISION_DENY : AEGIS_DECISION_AUDIT);
	return enforce ? XDP_DROP : XDP_PASS;
}
