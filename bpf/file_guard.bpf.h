/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The file guard: the ways around an inode rule that an attacker tries first,
 * closed with BPF-LSM. Included at the end of aegis.bpf.c, whose maps and
 * decisions it uses.
 *
 * - Loader and mappings: an exec-denied inode cannot be mapped executable
 *   (`ld.so BIN`, dlopen, mmap or mprotect with PROT_EXEC).
 * - Stolen descriptors: a file-denied inode cannot be received (pidfd_getfd,
 *   SCM_RIGHTS).
 * - Fileless exec: with exec.denyMemfd, a file with no name (memfd,
 *   O_TMPFILE, deleted) cannot be executed.
 * - Rules that follow a replace: an inode renamed over a denied one inherits
 *   its rules in the rename hook itself.
 * - Scope escape: a task in scope cannot move a task out of it.
 * - Kill on deny: deny_signal() for every LSM denial.
 */

#define PROT_EXEC_ 0x4
#define MAP_TYPE_ 0x0f
#define MAP_PRIVATE_ 0x02
#define MAY_WRITE_ 0x2
#define CGROUP2_SUPER_MAGIC_ 0x63677270
#define PF_KTHREAD_ 0x00200000
#define CGROUP_FILE_NAME_LEN 16

/* Inodes that replaced a denied inode by rename: see struct aegis_inherit. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, AEGIS_INHERITED_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct aegis_inode_key);
	__type(value, struct aegis_inherit);
} inherited SEC(".maps");

/* ---- kill on deny -------------------------------------------------------- */

/*
 * Sends the configured signal (AEGIS_CFG_ENFORCE_SIGNAL) to the current task,
 * which a hook is denying: never to PID 1 or a kernel thread. Returns the
 * signal sent, 0 when none. Tasks of exempt cgroups are never denied, so never
 * reach here.
 */
static __always_inline __u8 deny_signal(void)
{
	__u64 sig = config_word(AEGIS_CFG_ENFORCE_SIGNAL);
	if (sig != AEGIS_SIGNAL_TERM && sig != AEGIS_SIGNAL_KILL)
		return 0;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	if (BPF_CORE_READ(task, tgid) == 1 || (BPF_CORE_READ(task, flags) & PF_KTHREAD_))
		return 0;
	if (bpf_send_signal((__u32)sig))
		return 0;
	return (__u8)sig;
}

/* ---- rules that follow a replace ----------------------------------------- */

enum { IN_GEN_GUARDED = 1, IN_GEN_ALLOWED = 2 };

/*
 * What (ino, dev) has in either generation (both are live mid-apply): IN_GEN_GUARDED for a file, exec or
 * protect rule, IN_GEN_ALLOWED for an exec.allow entry.
 */
static __always_inline int has_rule(void *map, __u64 ino, __u32 dev, __u32 kind)
{
	struct aegis_rule_key key = { .a = ino, .b = dev, .kind = kind };
	return bpf_map_lookup_elem(map, &key) != 0;
}

static __always_inline int rules_in_a_generation(__u64 ino, __u32 dev)
{
	int found = 0;
#pragma unroll
	for (__u32 gen = 0; gen < 2; gen++) {
		__u32 slot = gen;
		void *map = bpf_map_lookup_elem(&rules, &slot);
		if (!map)
			continue;
		if (has_rule(map, ino, dev, AEGIS_RULE_FILE) || has_rule(map, ino, dev, AEGIS_RULE_EXEC) ||
		    has_rule(map, ino, dev, AEGIS_RULE_PROTECT))
			found |= IN_GEN_GUARDED;
		if (has_rule(map, ino, dev, AEGIS_RULE_EXEC_ALLOW))
			found |= IN_GEN_ALLOWED;
	}
	return found;
}

/*
 * The writer entry that lets the current task do what `scope` (AEGIS_WRITER_*) names, 0 when none: change
 * protected files (files.writers), or pass an allowance by rename (files.writers, trust: dpkg). Asked only
 * once a rule matched, and only when the generation has writers (AEGIS_RULE_WRITERS): the task's subjects
 * (its exe's, its ancestors' with children: true) each looked up as a writer, in order.
 */
static __always_inline __u32 trusted_writer(const struct aegis_state *s, __u32 scope)
{
	if (!exact_rule(s, AEGIS_RULE_WRITERS, 0, 0))
		return 0;
	struct task_subjects subjects = {};
	aegis_task_subjects(s->gen, 0, &subjects);
	for (int i = 0; i < AEGIS_SUBJECT_SLOTS; i++) {
		if (i >= subjects.count)
			break;
		struct aegis_rule *writer = exact_rule(s, AEGIS_RULE_WRITER, subject_at(&subjects, i), 0);
		if (writer && (writer->action & scope))
			return writer->rule_id;
	}
	return 0;
}

/*
 * Whether the rule found for (ino, dev) was made for this very inode: the i_generation recorded at apply
 * (AEGIS_RULE_INODE_GEN) is the inode's, or the filesystem showed none. A file that reuses the number of a
 * deleted protected or allowed one has another i_generation (ext4, tmpfs), and no rule.
 */
static __always_inline int same_inode(const struct aegis_state *s, struct inode *inode, const struct inode_id *id)
{
	struct aegis_rule *stamp = exact_rule(s, AEGIS_RULE_INODE_GEN, id->ino, id->dev);
	return !stamp || stamp->rule_id == BPF_CORE_READ(inode, i_generation);
}

/* The inheritance of `inode`, when it still is the inode that inherited (same i_generation). */
static __always_inline struct aegis_inherit *inheritance(struct inode *inode, __u64 ino, __u32 dev)
{
	struct aegis_inode_key key = { .ino = ino, .dev = dev };
	struct aegis_inherit *entry = bpf_map_lookup_elem(&inherited, &key);
	if (entry && entry->generation != BPF_CORE_READ(inode, i_generation))
		return 0;
	return entry;
}

/*
 * The live generation's rule of `kind` for the inode `inode` replaced, if it replaced a denied or protected
 * one; an exec.allow entry's only when a trusted writer made the replace.
 */
static __always_inline struct aegis_rule *inherited_rule(const struct aegis_state *s, __u32 kind, struct inode *inode,
							 const struct inode_id *id)
{
	struct aegis_inherit *entry = inheritance(inode, id->ino, id->dev);
	if (!entry)
		return 0;
	if (kind == AEGIS_RULE_EXEC_ALLOW && !(entry->flags & AEGIS_INHERIT_WRITER))
		return 0;
	return exact_rule(s, kind, entry->src_ino, entry->src_dev);
}

/* Whether the current task is a writer of the live generation whose renames pass an exec.allow allowance. */
static __always_inline int renamed_by_writer(void)
{
	struct aegis_state s;
	load_rules(&s);
	return trusted_writer(&s, AEGIS_WRITER_ALLOWED) != 0;
}

/*
 * An inode renamed over a denied or protected one (passwd, dpkg, sed -i, editors: write a new file, rename
 * it over the old) is denied or protected as the one it replaces, from this hook on, before the rename
 * takes effect: there is no moment when the path names an unguarded inode. Over an exec.allow inode, the
 * new one is allowed as the old one was only when a trusted writer (files.writers) renames: anyone else's
 * replacement is a new, untrusted inode (a sha256 entry's replacement is not the hashed content: it stays
 * refused as hash-mismatch until an apply hashes it again). The inheritance goes to the root of a chain of
 * replaces, so the entry names an inode the rules hold. Nothing is ever taken away: the replaced inode
 * keeps its own rule, an exchange makes both denied. Returns 1 when the rename must fail: the inheritance
 * cannot be recorded (table full) in enforce mode, so a rename never un-denies a path.
 */
static __always_inline int inherit_on_rename(struct inode *target, struct inode *incoming)
{
	if (!target || !incoming || target == incoming)
		return 0;
	struct inode_id src = { .ino = BPF_CORE_READ(target, i_ino), .dev = BPF_CORE_READ(target, i_sb, s_dev) };
	int found = rules_in_a_generation(src.ino, src.dev);
	int guarded = found & IN_GEN_GUARDED;
	int allowed = found & IN_GEN_ALLOWED;
	if (!guarded && !allowed) {
		struct aegis_inherit *chained = inheritance(target, src.ino, src.dev);
		if (!chained)
			return 0;
		src.ino = chained->src_ino;
		src.dev = chained->src_dev;
		guarded = 1; /* a chain is followed whoever renames: what it carries is decided at its root */
		allowed = chained->flags & AEGIS_INHERIT_WRITER;
	}
	__u32 flags = allowed && renamed_by_writer() ? AEGIS_INHERIT_WRITER : 0;
	if (!guarded && !flags)
		return 0;
	struct aegis_inode_key key = { .ino = BPF_CORE_READ(incoming, i_ino),
				       .dev = BPF_CORE_READ(incoming, i_sb, s_dev) };
	struct aegis_inherit value = { .src_ino = src.ino, .src_dev = src.dev,
				       .generation = BPF_CORE_READ(incoming, i_generation), .flags = flags };
	/* Before the entry: a hook that sees the entry's effect (the rename done) sees the word too. */
	__u32 word = AEGIS_CFG_INHERITED;
	__u64 *any_inherited = bpf_map_lookup_elem(&aegis_cfg, &word);
	if (any_inherited && !*any_inherited)
		*any_inherited = 1;
	if (!bpf_map_update_elem(&inherited, &key, &value, BPF_ANY))
		return 0;
	struct aegis_state s;
	return load_state(&s) && effective_mode(&s) == AEGIS_MODE_ENFORCE;
}

/*
 * Called twice for RENAME_EXCHANGE, once each way. A task in scope cannot
 * rename a file-denied inode, nor rename another over it (file.change,
 * file_change.bpf.h), nor a protected inode, nor into or out of a protected
 * directory (file.write, file_protect.bpf.h); a rename that goes ahead (out
 * of scope, audit, exec rules) passes the rules on.
 */
SEC("lsm/inode_rename")
int BPF_PROG(aegis_inode_rename, struct inode *old_dir, struct dentry *old_dentry, struct inode *new_dir,
	     struct dentry *new_dentry)
{
	struct inode *source = BPF_CORE_READ(old_dentry, d_inode);
	struct inode *target = BPF_CORE_READ(new_dentry, d_inode);
	if (inode_denied_op(AEGIS_RULE_FILE, AEGIS_HOOK_FILE_CHANGE, source, AEGIS_FILE_OP_RENAME))
		return -EPERM;
	if (inode_denied_op(AEGIS_RULE_FILE, AEGIS_HOOK_FILE_CHANGE, target, AEGIS_FILE_OP_RENAME))
		return -EPERM;
	/* files.protect: the inodes, and the entries of both directories (out of one, into the other). */
	if (protect_denied(source, AEGIS_FILE_OP_RENAME) || protect_denied(target, AEGIS_FILE_OP_RENAME))
		return -EPERM;
	if (protect_denied(old_dir, AEGIS_FILE_OP_RENAME))
		return -EPERM;
	if (old_dir != new_dir && protect_denied(new_dir, AEGIS_FILE_OP_RENAME))
		return -EPERM;
	if (inherit_on_rename(target, source))
		return -EPERM;
	return 0;
}

/* ---- loader, mappings, fileless exec ------------------------------------- */

/*
 * A file with no name in any directory (i_nlink 0), on any filesystem:
 * memfd_create makes exactly these; so do O_TMPFILE and a file deleted while
 * open, on tmpfs, ext4, overlay or any other, which are the same thing to an
 * attacker: nothing on disk names what runs. The caller reads i_nlink (with
 * a plain load where the hook handed the inode over), and asks for the rule
 * only for a file with no name: a named file, nearly every exec and mapping,
 * costs no lookup here.
 */
static __always_inline struct aegis_rule *memfd_rule(const struct aegis_state *s, __u32 nlink, struct inode *inode,
						     struct inode_id *id)
{
	if (nlink != 0)
		return 0;
	struct aegis_rule *rule = exact_rule(s, AEGIS_RULE_MEMFD_EXEC, 0, 0);
	if (!rule)
		return 0;
	id->ino = BPF_CORE_READ(inode, i_ino);
	id->dev = BPF_CORE_READ(inode, i_sb, s_dev);
	return rule;
}

/* The audit fallback (sched_process_exec): an executable with no name is reported as a would-deny. */
static __always_inline void audit_memfd_exec(struct inode *inode)
{
	struct aegis_state s;
	struct inode_id id;
	if (!inode || !load_state(&s))
		return;
	struct aegis_rule *rule = memfd_rule(&s, BPF_CORE_READ(inode, i_nlink), inode, &id);
	if (rule && in_scope(&s))
		inode_decision(&s, AEGIS_HOOK_EXEC, rule, &id, AEGIS_MODE_AUDIT);
}

/* exec.denyMemfd: running a file with no name fails. */
SEC("lsm/bprm_check_security")
int BPF_PROG(aegis_memfd_exec, struct linux_binprm *bprm)
{
	struct inode *inode = bprm->file->f_inode;
	struct aegis_state s;
	struct inode_id id;
	if (!inode || inode->i_nlink != 0)
		return 0;
	load_rules(&s);
	struct aegis_rule *rule = memfd_rule(&s, 0, inode, &id);
	if (!rule || !load_info(&s) || !in_scope(&s))
		return 0;
	if (inode_decision(&s, AEGIS_HOOK_EXEC, rule, &id, effective_mode(&s)))
		return -EPERM;
	return 0;
}

static __always_inline struct inode *own_executable(void)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct mm_struct *mm = task->mm;
	if (!mm || !mm->exe_file)
		return 0;
	return mm->exe_file->f_inode;
}

/*
 * An executable mapping of `file`: denied when its inode is exec-denied (the
 * dynamic loader run on a denied binary, dlopen of a denied library, mmap or
 * mprotect to PROT_EXEC), or, for a private mapping, when it has no name
 * and exec.denyMemfd is on (the loader run on a memfd). The task's own
 * executable is skipped: bprm_check_security decided it already, and the ELF
 * loader maps it once per segment.
 */
static __always_inline int exec_mapping_denied(struct file *file, int private_mapping)
{
	struct aegis_state s;
	if (!file || !file->f_inode)
		return 0;
	/* Plain loads: both hooks hand the file over as a kernel object (see hook_inode_denied). */
	struct inode *inode = file->f_inode;
	struct inode_id id = { .ino = inode->i_ino, .dev = inode->i_sb->s_dev };
	load_rules(&s);
	struct aegis_rule *rule = inode_rule(&s, AEGIS_RULE_EXEC, inode, &id);
	if (!rule && private_mapping)
		rule = memfd_rule(&s, inode->i_nlink, inode, &id);
	if (!rule)
		return exec_allow_denied(file, -1, 1); /* exec_allow.bpf.h */
	/* The task's own executable and the scope are read last: most mappings name no rule. */
	if (inode == own_executable() || !load_info(&s) || !in_scope(&s))
		return 0;
	return inode_decision(&s, AEGIS_HOOK_EXEC, rule, &id, effective_mode(&s));
}

SEC("lsm/mmap_file")
int BPF_PROG(aegis_mmap_file, struct file *file, unsigned long reqprot, unsigned long prot, unsigned long flags)
{
	if ((prot & PROT_EXEC_) && exec_mapping_denied(file, (flags & MAP_TYPE_) == MAP_PRIVATE_))
		return -EPERM;
	return 0;
}

SEC("lsm/file_mprotect")
int BPF_PROG(aegis_file_mprotect, struct vm_area_struct *vma, unsigned long reqprot, unsigned long prot)
{
	if (!(prot & PROT_EXEC_))
		return 0;
	int private_mapping = !(vma->vm_flags & 0x8); /* VM_SHARED */
	if (exec_mapping_denied(vma->vm_file, private_mapping))
		return -EPERM;
	return 0;
}

/* ---- stolen descriptors -------------------------------------------------- */

/* pidfd_getfd and SCM_RIGHTS: a descriptor of a denied file, opened before apply, cannot change hands. */
SEC("lsm/file_receive")
int BPF_PROG(aegis_file_receive, struct file *file)
{
	if (hook_inode_denied(AEGIS_RULE_FILE, AEGIS_HOOK_FILE_OPEN, file->f_inode))
		return -EPERM;
	return 0;
}

/* ---- scope escape -------------------------------------------------------- */

/* kernfs_node.parent before 6.15 renamed it __parent. */
struct kernfs_node___parent {
	struct kernfs_node *parent;
} __attribute__((preserve_access_index));

static __always_inline struct kernfs_node *kernfs_parent(struct kernfs_node *kn)
{
	if (bpf_core_field_exists(struct kernfs_node___parent, parent))
		return BPF_CORE_READ((struct kernfs_node___parent *)kn, parent);
	return BPF_CORE_READ(kn, __parent);
}

/* Whether the cgroup whose directory is `kn` lies inside the rule set's scope (in_scope for another cgroup). */
static __always_inline int cgroup_in_scope(const struct aegis_state *s, struct kernfs_node *kn)
{
	int included = s->info->scope_include == 0;
	for (int level = 0; level < MAX_CGROUP_DEPTH && kn; level++) {
		struct aegis_rule *entry = exact_rule(s, AEGIS_RULE_SCOPE, BPF_CORE_READ(kn, id), 0);
		if (entry) {
			if (entry->action == AEGIS_SCOPE_EXEMPT)
				return 0;
			included = 1;
		}
		kn = kernfs_parent(kn);
	}
	return included;
}

static __always_inline int is_attach_file(const char *name)
{
	const char procs[] = "cgroup.procs";
	const char threads[] = "cgroup.threads";
	int procs_match = 1, threads_match = 1;
#pragma unroll
	for (int i = 0; i < sizeof(threads); i++) {
		if (i < sizeof(procs) && name[i] != procs[i])
			procs_match = 0;
		if (name[i] != threads[i])
			threads_match = 0;
	}
	return procs_match || threads_match;
}

/*
 * Moving a task into a cgroup needs write permission on that cgroup's
 * cgroup.procs (or cgroup.threads), checked as an inode permission whether the
 * task is moved by a write to it or created there by clone3(CLONE_INTO_CGROUP):
 * a task in scope is refused that permission for a cgroup outside the scope
 * (or exempt). 1 when denied.
 */
static __always_inline int scope_escape_denied(struct inode *inode)
{
	struct aegis_state s;
	if (!load_state(&s) || (!s.info->scope_include && !s.info->scope_exempt))
		return 0;
	struct aegis_rule *rule = exact_rule(&s, AEGIS_RULE_SCOPE_GUARD, 0, 0);
	if (!rule)
		return 0;
	struct kernfs_node *kn = BPF_CORE_READ(inode, i_private);
	char name[CGROUP_FILE_NAME_LEN] = {};
	if (!kn || bpf_probe_read_kernel_str(name, sizeof(name), BPF_CORE_READ(kn, name)) < 0 || !is_attach_file(name))
		return 0;
	struct kernfs_node *cgroup_dir = kernfs_parent(kn);
	if (!cgroup_dir || !in_scope(&s) || cgroup_in_scope(&s, cgroup_dir))
		return 0;
	__u32 mode = effective_mode(&s);
	__u8 sig = mode == AEGIS_MODE_ENFORCE ? deny_signal() : 0;
	struct aegis_event *e = record(&s, AEGIS_HOOK_SCOPE, mode, rule->rule_id, current_pid(), 1);
	if (e) {
		e->ino = BPF_CORE_READ(cgroup_dir, id); /* the cgroup the task was to move to */
		e->signal = sig;
		bpf_ringbuf_submit(e, 0);
	}
	return mode == AEGIS_MODE_ENFORCE;
}

/* A hot hook (every path walk): everything but a write permission returns at the first test. */
SEC("lsm/inode_permission")
int BPF_PROG(aegis_scope_guard, struct inode *inode, int mask)
{
	if (!(mask & MAY_WRITE_) || BPF_CORE_READ(inode, i_sb, s_magic) != CGROUP2_SUPER_MAGIC_)
		return 0;
	if (scope_escape_denied(inode))
		return -EPERM;
	return 0;
}
