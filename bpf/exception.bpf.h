/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Expiring exceptions (`aegisbpf exception add`): a temporary allow that beats the policy's deny for one
 * match. Included by aegis.bpf.c after record(); the deciding hooks ask it once they are about to refuse.
 *
 * - Asked only on a deny: an access no rule refuses never reaches it. A denied access of a kind no
 *   exception names costs one array read (map exception_kinds).
 * - Outside the generations: an apply, rollback or refresh neither drops nor extends one.
 * - Expires in the kernel: an entry past its expires_boot_ns (CLOCK_BOOTTIME) decides nothing, with or
 *   without an agent; `exception remove` or a prune deletes it.
 * - Scoped to a cgroup when it names one: the task's ancestor at the cgroup's level must be that cgroup.
 */

static __always_inline int exception_kind_on(__u32 kind)
{
	__u32 zero = 0;
	__u32 *bits = bpf_map_lookup_elem(&exception_kinds, &zero);
	return bits && (*bits & kind);
}

/* The exception's number when it is live for the current task, else 0. */
static __always_inline __u16 exception_number(const struct aegis_exception *x)
{
	if (!x || x->expires_boot_ns <= bpf_ktime_get_boot_ns())
		return 0;
	if (x->cgroup_id && bpf_get_current_ancestor_cgroup_id(x->cgroup_level) != x->cgroup_id)
		return 0;
	return (__u16)x->id;
}

/* The live exception of `kind` (AEGIS_EXCEPTION_EXEC or _FILE) for the inode `id`, else 0. */
static __always_inline __u16 inode_exception(__u32 kind, const struct inode_id *id)
{
	if (!exception_kind_on(kind))
		return 0;
	struct aegis_exception_key key = { .ino = id->ino, .dev = id->dev, .kind = kind };
	return exception_number(bpf_map_lookup_elem(&exceptions, &key));
}

/* The live egress exception for the destination `dest` (the view that was denied) and port, else 0. */
static __always_inline __u16 net_exception(const struct aegis_net_key *dest, __u16 port_be)
{
	if (!exception_kind_on(AEGIS_EXCEPTION_EGRESS))
		return 0;
	struct aegis_exception_net_key key = { .prefixlen = 32 + 128, .family = dest->space & 0xff };
	__builtin_memcpy(key.addr, dest->addr, 16);
	__builtin_memcpy(key.port, &port_be, 2);
	__u16 number = exception_number(bpf_map_lookup_elem(&exception_nets, &key));
	if (number || !port_be)
		return number;
	__builtin_memset(key.port, 0, 2);
	return exception_number(bpf_map_lookup_elem(&exception_nets, &key));
}
