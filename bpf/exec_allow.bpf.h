/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The exec allowlist (exec.default: deny): in scope, only the inodes exec.allow resolved to at apply may be
 * run (bprm_check_security) or mapped executable (mmap_file, file_mprotect: shared libraries, `ld.so BIN`).
 * Included by aegis.bpf.c after file_guard.bpf.h; its hooks and aegis.bpf.c's call it (declared there).
 *
 * - Behind a switch: the AEGIS_RULE_EXEC_DEFAULT_DENY entry of the live generation. Without it, an exec or
 *   an executable mapping costs one more hash lookup than before, and nothing else.
 * - Inode-exact: (ino, dev) as file rules are, and i_generation where the filesystem shows one (a file that
 *   reuses a deleted allowed file's number is not allowed). A copy is a new inode; so is a file renamed
 *   over an allowed one, which is allowed only when a trusted writer (files.writers) renamed it (an
 *   upgrade: file_guard.bpf.h); a sha256 entry's replacement is refused as hash-mismatch all the same, a
 *   trust: dpkg file's (AEGIS_EXEC_ALLOW_PACKAGED) is allowed: the package manager installed it.
 * - A file with no name (memfd, O_TMPFILE, deleted) is never allowed.
 * - A sha256 entry's inode must still have the ctime it had when its content was hashed at apply
 *   (AEGIS_RULE_EXEC_STAMP): a write, truncate, chmod, chown or new link since sets ctime to the time of
 *   that change, and a ctime never repeats unless the clock is set back.
 * - Anonymous executable memory (no file: JIT compilers, the agent's own runtime among them) and the vDSO
 *   are not inodes and are not judged here.
 */

/* inode ctime across kernels: a timespec64 `i_ctime` (to 6.5), `__i_ctime` (6.6 to 6.10), two fields (6.11 on). */
struct inode___ctime_ts {
	struct timespec64 i_ctime;
} __attribute__((preserve_access_index));
struct inode___ctime_mg {
	struct timespec64 __i_ctime;
} __attribute__((preserve_access_index));
struct inode___ctime_split {
	time64_t i_ctime_sec;
	__u32 i_ctime_nsec;
} __attribute__((preserve_access_index));

/* Nanoseconds fit in 30 bits; 6.13 keeps a flag in the top bit of i_ctime_nsec (multigrain timestamps). */
#define CTIME_NSEC_MASK 0x3fffffff

static __always_inline __u64 inode_ctime_ns(struct inode *inode)
{
	__s64 sec;
	__u32 nsec;
	if (bpf_core_field_exists(struct inode___ctime_split, i_ctime_sec)) {
		sec = BPF_CORE_READ((struct inode___ctime_split *)inode, i_ctime_sec);
		nsec = BPF_CORE_READ((struct inode___ctime_split *)inode, i_ctime_nsec);
	} else if (bpf_core_field_exists(struct inode___ctime_mg, __i_ctime)) {
		sec = BPF_CORE_READ((struct inode___ctime_mg *)inode, __i_ctime.tv_sec);
		nsec = BPF_CORE_READ((struct inode___ctime_mg *)inode, __i_ctime.tv_nsec);
	} else {
		sec = BPF_CORE_READ((struct inode___ctime_ts *)inode, i_ctime.tv_sec);
		nsec = BPF_CORE_READ((struct inode___ctime_ts *)inode, i_ctime.tv_nsec);
	}
	return (__u64)sec * 1000000000ULL + (nsec & CTIME_NSEC_MASK);
}

/*
 * Why the inode may not run under the allowlist (AEGIS_EXEC_*), 0 when it may; `*allow` is set to its
 * allow entry when it has one.
 */
static __always_inline __u8 exec_untrusted(const struct aegis_state *s, struct inode *inode,
					   const struct inode_id *id, struct aegis_rule **allow)
{
	if (BPF_CORE_READ(inode, i_nlink) == 0)
		return AEGIS_EXEC_UNTRUSTED;
	struct aegis_rule *entry = exact_rule(s, AEGIS_RULE_EXEC_ALLOW, id->ino, id->dev);
	if (entry && !same_inode(s, inode, id))
		entry = 0;
	/* A trusted writer's replace by rename (an upgrade) passed the allowance on (file_guard.bpf.h). */
	int inherited = 0;
	if (!entry && config_word(AEGIS_CFG_INHERITED)) {
		entry = inherited_rule(s, AEGIS_RULE_EXEC_ALLOW, inode, id);
		inherited = entry != 0;
	}
	*allow = entry;
	if (!entry)
		return AEGIS_EXEC_UNTRUSTED;
	if (entry->action == AEGIS_EXEC_ALLOW_INODE)
		return 0;
	/*
	 * A trust: dpkg file the package manager replaced: its database holds the new content, which the agent's
	 * next resolve (the dpkg hook) stamps; a sha256 entry's replacement is not the content hashed.
	 */
	if (inherited && entry->action == AEGIS_EXEC_ALLOW_PACKAGED)
		return 0;
	if (!exact_rule(s, AEGIS_RULE_EXEC_STAMP, inode_ctime_ns(inode), (__u32)id->ino))
		return AEGIS_EXEC_HASH_MISMATCH;
	return 0;
}

/*
 * Counts and reports a refusal of the allowlist: the rule is exec.default (untrusted) or the sha256 entry
 * (hash-mismatch); `op` says which, and the record's address bytes carry the file's name, which no rule
 * names. 1 when the access must fail.
 */
static __always_inline int exec_allow_decision(const struct aegis_state *s, __u32 rule_id, __u8 reason,
					       struct file *file, const struct inode_id *id, __u32 mode)
{
	__u16 exception = inode_exception(AEGIS_EXCEPTION_EXEC, id);
	int deny = mode == AEGIS_MODE_ENFORCE && !exception;
	/* Signalled before the record is reserved: 6.1's verifier loses a reference checked across a call. */
	__u8 sig = deny ? deny_signal() : 0;
	struct aegis_event *e = record_decision(s, AEGIS_HOOK_EXEC, mode, deny ? AEGIS_DECISION_DENY : AEGIS_DECISION_AUDIT,
						rule_id, current_pid(), 1);
	if (e) {
		e->ino = id->ino;
		e->dev = id->dev;
		e->signal = sig;
		e->op = reason;
		e->exception = exception;
		const unsigned char *name = BPF_CORE_READ(file, f_path.dentry, d_name.name);
		/* daddr and saddr are adjacent: 32 bytes for the name, NUL included. */
		bpf_probe_read_kernel_str((char *)e->daddr, sizeof(e->daddr) + sizeof(e->saddr), name);
		bpf_ringbuf_submit(e, 0);
	}
	barrier_var(deny); /* see inode_decision_op */
	return deny;
}

/*
 * The allowlist's verdict on running (`mapping` 0) or mapping `file` executable, in `mode_override` (the
 * audit fallback) or the mode in force (-1). 1 when it must fail. The switch is looked up first: a
 * generation without an allowlist costs that one lookup. A mapping of the task's own executable is not
 * judged again: bprm_check_security judged it, and the ELF loader maps it once per segment.
 */
static __always_inline int exec_allow_denied(struct file *file, int mode_override, int mapping)
{
	struct aegis_state s;
	if (!file)
		return 0;
	load_rules(&s);
	struct aegis_rule *gate = exact_rule(&s, AEGIS_RULE_EXEC_DEFAULT_DENY, 0, 0);
	if (!gate)
		return 0;
	__u32 gate_id = gate->rule_id;
	struct inode *inode = BPF_CORE_READ(file, f_inode);
	if (!inode || (mapping && inode == own_executable()))
		return 0;
	struct inode_id id;
	read_inode_id(inode, &id);
	struct aegis_rule *allow = 0;
	__u8 reason = exec_untrusted(&s, inode, &id, &allow);
	if (!reason || !load_info(&s) || !in_scope(&s))
		return 0;
	__u32 rule_id = reason == AEGIS_EXEC_HASH_MISMATCH && allow ? allow->rule_id : gate_id;
	__u32 mode = mode_override >= 0 ? (__u32)mode_override : effective_mode(&s);
	return exec_allow_decision(&s, rule_id, reason, file, &id, mode);
}
