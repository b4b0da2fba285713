/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * files.protect: a protected inode may be read and run, never written. Each
 * hook that changes an inode or a directory's entries asks protect_denied()
 * and reports a file.write event whose `op` byte says what was tried
 * (AEGIS_FILE_OP_*):
 *
 * - the inode itself: open for writing or with O_TRUNC (lsm/file_open, in
 *   aegis.bpf.c), truncate, chmod, chown, utimes (inode_setattr), xattrs,
 *   unlink, rmdir, rename (away, or another over it), a new hard link;
 * - a protected directory's entries: create, mkdir, symlink, mknod, unlink,
 *   rmdir, rename into or out of it, link into it;
 * - its path: nothing is mounted over a protected file or directory (a
 *   tmpfs over /etc/cron.d would show other files at the path without
 *   writing a protected inode). The apply protects every
 *   directory of a recursive entry by inode, so a file cannot appear below
 *   it after apply either (nothing can be created, linked or renamed in).
 *
 * The generation's AEGIS_RULE_PROTECT_ON entry is the switch: with no
 * files.protect in the policy, each hook stops after that one lookup.
 * Included in aegis.bpf.c before file_change.bpf.h, whose hooks call it.
 */

#define FMODE_WRITE_ 0x2
#define O_TRUNC_ 01000

/* The protect rule of `inode`: its own (for this very inode), or the one it inherited by a replace. */
static __always_inline struct aegis_rule *protect_rule(const struct aegis_state *s, struct inode *inode,
						       const struct inode_id *id)
{
	struct aegis_rule *rule = exact_rule(s, AEGIS_RULE_PROTECT, id->ino, id->dev);
	if (rule && same_inode(s, inode, id))
		return rule;
	if (!config_word(AEGIS_CFG_INHERITED))
		return 0;
	return inherited_rule(s, AEGIS_RULE_PROTECT, inode, id);
}

/*
 * With the generation `s` read (its rules only) and the switch seen on: 1 when operation `op` on `inode`
 * (identified as `id`) must fail. A trusted writer's change is allowed, and not reported.
 */
static __always_inline int protect_decide(struct aegis_state *s, struct inode *inode, const struct inode_id *id,
					  __u8 op)
{
	struct aegis_rule *rule = protect_rule(s, inode, id);
	if (!rule || !load_info(s) || !in_scope(s) || trusted_writer(s))
		return 0;
	return inode_decision_op(s, AEGIS_HOOK_FILE_WRITE, rule, id, effective_mode(s), op);
}

/* 1 when operation `op` on the protected `inode` (a file, or a directory whose entries change) must fail. */
static __always_inline int protect_denied(struct inode *inode, __u8 op)
{
	struct aegis_state s;
	struct inode_id id;
	if (!inode)
		return 0;
	load_rules(&s);
	if (!exact_rule(&s, AEGIS_RULE_PROTECT_ON, 0, 0))
		return 0;
	read_inode_id(inode, &id);
	return protect_decide(&s, inode, &id, op);
}

/*
 * An open that may write: FMODE_WRITE (O_WRONLY, O_RDWR), or O_TRUNC, which truncates even a read-only open.
 * Plain loads through the LSM hook's trusted file pointer: this runs for every open, read-only ones included.
 */
static __always_inline int hook_opens_for_write(struct file *file)
{
	return (file->f_mode & FMODE_WRITE_) || (file->f_flags & O_TRUNC_);
}

/* The audit fallback (sys_exit_open*): an open for writing of a protected inode, reported as a would-deny. */
static __always_inline void audit_protect_open(struct file *file)
{
	struct aegis_state s;
	struct inode_id id;
	/* O_TRUNC is cleared from f_flags once the open is done: only the write mode is seen here. */
	if (!(BPF_CORE_READ(file, f_mode) & FMODE_WRITE_))
		return;
	load_rules(&s);
	if (!exact_rule(&s, AEGIS_RULE_PROTECT_ON, 0, 0))
		return;
	struct inode *inode = BPF_CORE_READ(file, f_inode);
	if (!inode)
		return;
	read_inode_id(inode, &id);
	struct aegis_rule *rule = protect_rule(&s, inode, &id);
	if (rule && load_info(&s) && in_scope(&s) && !trusted_writer(&s))
		inode_decision_op(&s, AEGIS_HOOK_FILE_WRITE, rule, &id, AEGIS_MODE_AUDIT, AEGIS_FILE_OP_OPEN_WRITE);
}

/* ---- a protected directory's entries ------------------------------------- */

/* open(O_CREAT) of a new file, and mknod of a regular file. */
SEC("lsm/inode_create")
int BPF_PROG(aegis_inode_create, struct inode *dir, struct dentry *dentry, umode_t mode)
{
	if (protect_denied(dir, AEGIS_FILE_OP_CREATE))
		return -EPERM;
	return 0;
}

SEC("lsm/inode_mkdir")
int BPF_PROG(aegis_inode_mkdir, struct inode *dir, struct dentry *dentry, umode_t mode)
{
	if (protect_denied(dir, AEGIS_FILE_OP_MKDIR))
		return -EPERM;
	return 0;
}

SEC("lsm/inode_symlink")
int BPF_PROG(aegis_inode_symlink, struct inode *dir, struct dentry *dentry, const char *old_name)
{
	if (protect_denied(dir, AEGIS_FILE_OP_SYMLINK))
		return -EPERM;
	return 0;
}

SEC("lsm/inode_mknod")
int BPF_PROG(aegis_inode_mknod, struct inode *dir, struct dentry *dentry, umode_t mode, dev_t dev)
{
	if (protect_denied(dir, AEGIS_FILE_OP_MKNOD))
		return -EPERM;
	return 0;
}

/* ---- mounts over a protected path ------------------------------------------ */

/* mount(2): a new mount, a bind mount, a move, a remount or a propagation change of the mount at `path`. */
SEC("lsm/sb_mount")
int BPF_PROG(aegis_sb_mount, const char *dev_name, const struct path *path, const char *type, unsigned long flags,
	     void *data)
{
	if (protect_denied(BPF_CORE_READ(path, dentry, d_inode), AEGIS_FILE_OP_MOUNT))
		return -EPERM;
	return 0;
}

/* The new mount API: open_tree or fsmount, then move_mount onto `to_path`. */
SEC("lsm/move_mount")
int BPF_PROG(aegis_move_mount, const struct path *from_path, const struct path *to_path)
{
	if (protect_denied(BPF_CORE_READ(to_path, dentry, d_inode), AEGIS_FILE_OP_MOUNT))
		return -EPERM;
	return 0;
}

/* A protected directory cannot be removed, nor a directory inside one. */
SEC("lsm/inode_rmdir")
int BPF_PROG(aegis_inode_rmdir, struct inode *dir, struct dentry *dentry)
{
	if (protect_denied(BPF_CORE_READ(dentry, d_inode), AEGIS_FILE_OP_RMDIR))
		return -EPERM;
	if (protect_denied(dir, AEGIS_FILE_OP_RMDIR))
		return -EPERM;
	return 0;
}
