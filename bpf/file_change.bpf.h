/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * A file deny rule makes the inode unchangeable as well as unreadable: a task
 * in scope cannot truncate it, unlink it, link it, change its mode, owner,
 * times or extended attributes (rename: lsm/inode_rename in
 * file_guard.bpf.h). Each hook judges with the file-open lookup (the inode's
 * own rule, or the one it inherited by replacing a denied inode) and reports
 * a file.change event whose `op` byte says what was tried (AEGIS_FILE_OP_*).
 * The same hooks refuse the same operations on a protected inode, and entry
 * changes in a protected directory (file.write, file_protect.bpf.h).
 * Included at the end of aegis.bpf.c.
 */

#define ATTR_MODE_ (1 << 0)
#define ATTR_UID_ (1 << 1)
#define ATTR_GID_ (1 << 2)
#define ATTR_SIZE_ (1 << 3)
#define ATTR_ATIME_ (1 << 4)
#define ATTR_MTIME_ (1 << 5)

/* 1 when operation `op` on `inode` must fail: a file rule's (file.change) or files.protect's (file.write). */
static __always_inline int change_denied(__u8 op, struct inode *inode)
{
	return inode_denied_op(AEGIS_RULE_FILE, AEGIS_HOOK_FILE_CHANGE, inode, op) || protect_denied(inode, op);
}

/* The operation an attribute change stands for, by what it changes first (a truncate also sets times). */
static __always_inline __u8 setattr_op(__u32 valid)
{
	if (valid & ATTR_SIZE_)
		return AEGIS_FILE_OP_TRUNCATE;
	if (valid & (ATTR_UID_ | ATTR_GID_))
		return AEGIS_FILE_OP_CHOWN;
	if (valid & ATTR_MODE_)
		return AEGIS_FILE_OP_CHMOD;
	if (valid & (ATTR_ATIME_ | ATTR_MTIME_))
		return AEGIS_FILE_OP_UTIMES;
	return AEGIS_FILE_OP_SETATTR;
}

/*
 * Every attribute change goes through notify_change() and this hook: truncate
 * by path or descriptor, chmod, chown, utimes. Its arguments differ between
 * kernels (6.8 put a mnt_idmap first): the dentry and the iattr are the last
 * two, found by the argument count.
 */
SEC("lsm/inode_setattr")
int aegis_inode_setattr(unsigned long long *ctx)
{
	__u64 count = bpf_get_func_arg_cnt(ctx);
	__u64 dentry_arg = 0, attr_arg = 0;
	if (count < 2 || bpf_get_func_arg(ctx, count - 2, &dentry_arg) || bpf_get_func_arg(ctx, count - 1, &attr_arg))
		return 0;
	struct dentry *dentry = (struct dentry *)dentry_arg;
	struct iattr *attr = (struct iattr *)attr_arg;
	if (change_denied(setattr_op(BPF_CORE_READ(attr, ia_valid)), BPF_CORE_READ(dentry, d_inode)))
		return -EPERM;
	return 0;
}

SEC("lsm/inode_unlink")
int BPF_PROG(aegis_inode_unlink, struct inode *dir, struct dentry *dentry)
{
	if (change_denied(AEGIS_FILE_OP_UNLINK, BPF_CORE_READ(dentry, d_inode)))
		return -EPERM;
	if (protect_denied(dir, AEGIS_FILE_OP_UNLINK)) /* an entry of a protected directory */
		return -EPERM;
	return 0;
}

/* A second name for the denied inode: one that no rule path resolves, and that an unlink leaves behind. */
SEC("lsm/inode_link")
int BPF_PROG(aegis_inode_link, struct dentry *old_dentry, struct inode *dir, struct dentry *new_dentry)
{
	if (change_denied(AEGIS_FILE_OP_LINK, BPF_CORE_READ(old_dentry, d_inode)))
		return -EPERM;
	if (protect_denied(dir, AEGIS_FILE_OP_LINK)) /* a new entry in a protected directory */
		return -EPERM;
	return 0;
}

/* The first argument is a user_namespace (6.1) or a mnt_idmap (6.3 on): only the dentry after it is read. */
SEC("lsm/inode_setxattr")
int BPF_PROG(aegis_inode_setxattr, void *idmap, struct dentry *dentry)
{
	if (change_denied(AEGIS_FILE_OP_SETXATTR, BPF_CORE_READ(dentry, d_inode)))
		return -EPERM;
	return 0;
}

SEC("lsm/inode_removexattr")
int BPF_PROG(aegis_inode_removexattr, void *idmap, struct dentry *dentry)
{
	if (change_denied(AEGIS_FILE_OP_REMOVEXATTR, BPF_CORE_READ(dentry, d_inode)))
		return -EPERM;
	return 0;
}

/*
 * POSIX ACLs: from 6.2 on, setting or removing one (setfacl, or setxattr(2) of system.posix_acl_access or
 * _default) no longer passes inode_setxattr but these hooks. Kernels before have neither (the loader skips
 * them there: lib/kernel/load.ts optionalLsmPrograms); their ACL changes pass inode_setxattr above.
 */
SEC("lsm/inode_set_acl")
int BPF_PROG(aegis_inode_set_acl, void *idmap, struct dentry *dentry)
{
	if (change_denied(AEGIS_FILE_OP_SETXATTR, BPF_CORE_READ(dentry, d_inode)))
		return -EPERM;
	return 0;
}

SEC("lsm/inode_remove_acl")
int BPF_PROG(aegis_inode_remove_acl, void *idmap, struct dentry *dentry)
{
	if (change_denied(AEGIS_FILE_OP_REMOVEXATTR, BPF_CORE_READ(dentry, d_inode)))
		return -EPERM;
	return 0;
}
