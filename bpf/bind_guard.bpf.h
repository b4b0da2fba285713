/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Bind rules for SCTP, included at the end of aegis.bpf.c after net_guard.bpf.h. The cgroup bind4/bind6
 * hooks run inside inet_bind, which a protocol with a bind of its own skips: SCTP (sctp_bind, and
 * sctp_bindx through setsockopt) never reaches them. Where BPF-LSM runs:
 *
 * - aegis_socket_bind (lsm/socket_bind): bind() of an SCTP socket;
 * - aegis_sctp_bindx (lsm/sctp_bind_connect): sctp_bindx(SCTP_BINDX_ADD_ADDR) with its packed address list.
 *
 * Both judge each local address as the cgroup hooks do (bind_allowed: port and protocol, then scope).
 * Without BPF-LSM nothing judges SCTP binds (docs/policy.md says so).
 */

#define SCTP_SOCKOPT_BINDX_ADD_ 100

/* One local address of an SCTP bind: 1 when it must be refused; `*size` is its sockaddr's length, 0 for an unknown family. */
static __always_inline int sctp_bind_denied(const void *address, __u32 *size)
{
	__u16 family = 0;
	__u32 addr[4] = {};
	*size = 0;
	if (bpf_probe_read_kernel(&family, sizeof(family), address))
		return 0;
	if (family == AF_INET_) {
		struct sockaddr_in sin;
		if (bpf_probe_read_kernel(&sin, sizeof(sin), address))
			return 0;
		*size = sizeof(sin);
		addr[0] = sin.sin_addr.s_addr;
		return !bind_allowed(AEGIS_FAMILY_IPV4, IPPROTO_SCTP_, bpf_ntohs(sin.sin_port), addr);
	}
	if (family == AF_INET6_) {
		struct sockaddr_in6 sin6;
		if (bpf_probe_read_kernel(&sin6, sizeof(sin6), address))
			return 0;
		*size = sizeof(sin6);
		__builtin_memcpy(addr, &sin6.sin6_addr, 16);
		return !bind_allowed(AEGIS_FAMILY_IPV6, IPPROTO_SCTP_, bpf_ntohs(sin6.sin6_port), addr);
	}
	return 0;
}

SEC("lsm/socket_bind")
int BPF_PROG(aegis_socket_bind, struct socket *sock, struct sockaddr *address, int addrlen)
{
	struct sock *sk = BPF_CORE_READ(sock, sk);
	if (!sk || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_SCTP_)
		return 0;
	__u32 size;
	return sctp_bind_denied(address, &size) ? -EPERM : 0;
}

/* One walk over sctp_bindx's packed address list, for bpf_loop (as sctp_walk_one for connectx). */
struct sctp_bind_walk {
	__u64 address;
	__u32 addrlen;
	__u32 offset;
	int denied;
};

static long sctp_bind_walk_one(__u32 index, struct sctp_bind_walk *walk)
{
	__u32 size;
	if (walk->offset >= walk->addrlen)
		return 1;
	if (sctp_bind_denied((const void *)(walk->address + walk->offset), &size))
		walk->denied = 1;
	if (!size)
		return 1;
	walk->offset += size;
	return 0;
}

/* sctp_bindx(SCTP_BINDX_ADD_ADDR): every address listed (up to SCTP_MAX_ADDRS) must be allowed. */
SEC("lsm/sctp_bind_connect")
int BPF_PROG(aegis_sctp_bindx, struct sock *sk, int optname, struct sockaddr *address, int addrlen)
{
	if (optname != SCTP_SOCKOPT_BINDX_ADD_)
		return 0;
	struct sctp_bind_walk walk = { .addrlen = addrlen };
	if (bpf_probe_read_kernel(&walk.address, sizeof(walk.address), &ctx[2]))
		return 0;
	bpf_loop(SCTP_MAX_ADDRS, sctp_bind_walk_one, &walk, 0);
	return walk.denied ? -EPERM : 0;
}
