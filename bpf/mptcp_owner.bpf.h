/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * MPTCP subflows are judged as the connection they belong to. Included by aegis.bpf.c before the egress
 * hooks.
 *
 * A user's MPTCP connection (an MPTCP socket, the "msk") sends over TCP subflows the kernel makes for it.
 * The first is connected in the user's connect(); every further one (a peer's ADD_ADDR, a local endpoint)
 * is connected by the MPTCP worker, a kernel thread in the root cgroup running as root, or by a userspace
 * path manager over netlink. The connect hooks still run for them (each subflow inherits the msk's cgroup
 * data, which picks the programs), but the current task is then not the connection's owner: judging it
 * would put every subflow after the first outside any scope and out of reach of the users entries.
 *
 * So for a subflow the subject is always the msk's owner, not the current task: the msk's cgroup (where
 * the task that made it was) for the scope, and its owner's uid (sk_uid) and socket group (the group of
 * its socket inode: the fsgid that made it) for users entries. That is equally right for the first
 * subflow, whose connect runs in the owner's context, and the same rule for all of them means a
 * connection is never judged twice by two different subjects. Every other socket keeps the current task
 * as its subject: a task is what scopes name, and a socket made elsewhere and passed to a task in scope is
 * still judged as that task's.
 *
 * The connection sweep (iter/tcp) needs nothing more: a subflow's cgroup data is its connection's, and the
 * kernel gives the subflow's socket inode the MPTCP socket's owner, which is the uid the iterator reports.
 */

#define NO_GID 0xffffffffu /* (gid_t)-1: never a group's id, so no gid entry matches it */

/* net_guard.bpf.h: the scope of a socket, from its cgroup up. */
static __always_inline int sock_in_scope(const struct aegis_state *s, struct sock *sk, __u64 *cgroup_id);

/* The MPTCP socket a subflow belongs to; NULL for any other socket (and where the kernel has no MPTCP). */
static __always_inline struct sock *subflow_connection(void *sk)
{
	return (struct sock *)bpf_skc_to_mptcp_sock(sk);
}

/* The owner of an MPTCP socket as the users entries see it: sk_uid, and its socket inode's group. */
static __always_inline __u64 connection_owner_ids(struct sock *msk)
{
	__u32 uid = BPF_CORE_READ(msk, sk_uid.val);
	struct socket *sock = BPF_CORE_READ(msk, sk_socket);
	__u32 gid = sock ? BPF_CORE_READ((struct socket_alloc *)sock, vfs_inode.i_gid.val) : NO_GID;
	return (__u64)gid << 32 | uid;
}

