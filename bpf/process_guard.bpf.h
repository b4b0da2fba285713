/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The ptrace guard: a task in scope cannot reach into a task outside it (or in
 * an exempt cgroup) to make that task do what the rules refuse the task in
 * scope. Included at the end of aegis.bpf.c, after file_guard.bpf.h, whose
 * cgroup_in_scope() and deny_signal() it uses.
 *
 * Every way of controlling another task's execution or memory asks
 * ptrace_may_access() for PTRACE_MODE_ATTACH: ptrace(PTRACE_ATTACH/SEIZE),
 * process_vm_readv/writev, opening /proc/PID/mem, pidfd_getfd. The kernel
 * calls the ptrace_access_check LSM hook there after its own (uid, dumpable,
 * Yama) checks have passed. PTRACE_MODE_READ (ps, /proc/PID/stat, environ,
 * maps, fd listings) gives facts, not control, and is left alone: refusing it
 * would break ps and top in scope. PTRACE_TRACEME is the other direction: the
 * tracee asks its parent to trace it, judged by ptrace_traceme.
 */

#define PTRACE_MODE_ATTACH_ 0x02
/* x86-64 system call numbers, to name what the tracer tried (a 32-bit task's calls read as "other") */
#define NR_OPEN_ 2
#define NR_PTRACE_ 101
#define NR_OPENAT_ 257
#define NR_PROCESS_VM_READV_ 310
#define NR_PROCESS_VM_WRITEV_ 311
#define NR_OPENAT2_ 437
#define NR_PIDFD_GETFD_ 438

/* The directory of the task's cgroup v2 cgroup (its id is the cgroup id). */
static __always_inline struct kernfs_node *task_cgroup_dir(struct task_struct *task)
{
	return BPF_CORE_READ(task, cgroups, dfl_cgrp, kn);
}

/* What the current task's system call is, as AEGIS_PTRACE_OP_* (attach-mode access only). */
static __always_inline __u8 attach_op(void)
{
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	switch (BPF_CORE_READ(regs, orig_ax)) {
	case NR_PTRACE_:
		return AEGIS_PTRACE_OP_ATTACH;
	case NR_PROCESS_VM_READV_:
		return AEGIS_PTRACE_OP_VM_READ;
	case NR_PROCESS_VM_WRITEV_:
		return AEGIS_PTRACE_OP_VM_WRITE;
	case NR_OPEN_:
	case NR_OPENAT_:
	case NR_OPENAT2_:
		return AEGIS_PTRACE_OP_PROC_OPEN;
	case NR_PIDFD_GETFD_:
		return AEGIS_PTRACE_OP_PIDFD_GETFD;
	default:
		return AEGIS_PTRACE_OP_OTHER;
	}
}

/* The process fields of an event from `task` rather than the current task (traceme: the tracer). */
static __always_inline void tracer_facts(struct aegis_event *e, struct task_struct *task)
{
	e->pid = BPF_CORE_READ(task, tgid);
	e->ppid = BPF_CORE_READ(task, real_parent, tgid);
	e->uid = BPF_CORE_READ(task, cred, euid.val);
	e->gid = BPF_CORE_READ(task, cred, egid.val);
	e->cgroup_id = BPF_CORE_READ(task, cgroups, dfl_cgrp, kn, id);
	bpf_probe_read_kernel_str(e->comm, sizeof(e->comm), task->comm);
}

/*
 * Whether `tracer` (the current task unless `traceme`) in scope may not reach `target`, a task outside the
 * scope or in an exempt cgroup, while the policy has a scope. Decided, counted and reported here; 1 when
 * the access must fail. `traceme` is a constant at each call, so that each program carries only its own
 * branch through the verifier.
 */
static __always_inline int ptrace_out_of_scope(struct task_struct *tracer, struct task_struct *target, __u8 op,
					       const int traceme)
{
	struct aegis_state s;
	if (!load_state(&s) || (!s.info->scope_include && !s.info->scope_exempt))
		return 0;
	struct aegis_rule *rule = exact_rule(&s, AEGIS_RULE_PTRACE_GUARD, 0, 0);
	if (!rule)
		return 0;
	if (traceme ? !cgroup_in_scope(&s, task_cgroup_dir(tracer)) : !in_scope(&s))
		return 0;
	struct kernfs_node *target_dir = task_cgroup_dir(target);
	if (!target_dir || cgroup_in_scope(&s, target_dir))
		return 0;
	__u32 mode = effective_mode(&s);
	/* Kill on deny hits the tracer; for traceme the caller is the task outside the scope: no signal. */
	__u8 sig = mode == AEGIS_MODE_ENFORCE && !traceme ? deny_signal() : 0;
	struct aegis_event *e = record(&s, AEGIS_HOOK_PTRACE, mode, rule->rule_id, BPF_CORE_READ(tracer, tgid), 1);
	if (e) {
		if (traceme)
			tracer_facts(e, tracer);
		e->ino = BPF_CORE_READ(target_dir, id);
		e->dev = BPF_CORE_READ(target, tgid);
		e->op = op;
		e->signal = sig;
		bpf_ringbuf_submit(e, 0);
	}
	return mode == AEGIS_MODE_ENFORCE;
}

/* Called on every /proc/PID read of ps and top as well: anything but attach access returns at once. */
SEC("lsm/ptrace_access_check")
int BPF_PROG(aegis_ptrace_access, struct task_struct *child, unsigned int mode)
{
	if (!(mode & PTRACE_MODE_ATTACH_))
		return 0;
	if (ptrace_out_of_scope((struct task_struct *)bpf_get_current_task(), child, attach_op(), 0))
		return -EPERM;
	return 0;
}

SEC("lsm/ptrace_traceme")
int BPF_PROG(aegis_ptrace_traceme, struct task_struct *parent)
{
	if (ptrace_out_of_scope(parent, (struct task_struct *)bpf_get_current_task(), AEGIS_PTRACE_OP_TRACEME, 1))
		return -EPERM;
	return 0;
}

/*
 * The identity guard. Rules that name a program (`exe`) know a task by its mm->exe_file
 * (task_subject.bpf.h), which prctl(PR_SET_MM, PR_SET_MM_EXE_FILE or PR_SET_MM_MAP) can point at another
 * file: a task with CAP_SYS_RESOURCE, or CAP_CHECKPOINT_RESTORE for the map, in its user namespace (so any
 * user where unprivileged user namespaces are allowed) could pass for a program a rule allows, or stop
 * being the one a rule denies. While the live policy names programs (AEGIS_RULE_IDENTITY_GUARD), a task in
 * scope may not: the call fails with EPERM (checkpoint/restore tools that restore in scope with it too).
 */
#define PR_SET_MM_ 35

/* 1 when the current task's prctl(PR_SET_MM, `op`) must fail; decided, counted and reported here. */
static __always_inline int identity_change_refused(__u8 op, __u32 mode_cap)
{
	struct aegis_state s;
	if (!load_state(&s))
		return 0;
	struct aegis_rule *rule = exact_rule(&s, AEGIS_RULE_IDENTITY_GUARD, 0, 0);
	if (!rule || !in_scope(&s))
		return 0;
	__u32 mode = effective_mode(&s);
	if (mode_cap == AEGIS_MODE_AUDIT)
		mode = AEGIS_MODE_AUDIT;
	struct aegis_event *e = record(&s, AEGIS_HOOK_IDENTITY, mode, rule->rule_id, current_pid(), 1);
	if (e) {
		e->op = op;
		e->signal = mode == AEGIS_MODE_ENFORCE ? deny_signal() : 0;
		event_subject(e);
		bpf_ringbuf_submit(e, 0);
	}
	return mode == AEGIS_MODE_ENFORCE;
}

/*
 * Every prctl(2) passes here. Not a hook where 0 allows: an LSM that returns anything but -ENOSYS answers
 * the prctl itself (the kernel then returns that value without doing the call), so -ENOSYS is "no opinion".
 */
SEC("lsm/task_prctl")
int BPF_PROG(aegis_task_prctl, int option, unsigned long arg2)
{
	if (option != PR_SET_MM_ || (arg2 != AEGIS_IDENTITY_OP_EXE_FILE && arg2 != AEGIS_IDENTITY_OP_MM_MAP))
		return -ENOSYS;
	if (identity_change_refused(arg2, AEGIS_MODE_ENFORCE))
		return -EPERM;
	return -ENOSYS;
}

/* Where BPF-LSM does not load: the attempt reported as "would deny", at the system call's entry. */
SEC("tracepoint/syscalls/sys_enter_prctl")
int aegis_tp_prctl(struct trace_event_raw_sys_enter *ctx)
{
	if (ctx->args[0] != PR_SET_MM_ ||
	    (ctx->args[1] != AEGIS_IDENTITY_OP_EXE_FILE && ctx->args[1] != AEGIS_IDENTITY_OP_MM_MAP))
		return 0;
	identity_change_refused(ctx->args[1], AEGIS_MODE_AUDIT);
	return 0;
}
