/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Subjects: which program a task is, for the rules that name one (`exe: PATH`, `children: true`). Included
 * by aegis.bpf.c before the network hooks; any hook that runs in the task's own context (cgroup sock_addr,
 * BPF-LSM, tracepoints) may call aegis_task_subjects(), and the rule kinds that key on a subject number use it.
 *
 * How the kernel knows the program: the inode of the task's mm->exe_file, read at the hook through
 * bpf_get_current_task() and probe reads (both callable from cgroup sock_addr, LSM and tracing programs on
 * 6.1 and later). Nothing is kept from exec and fork, so a process started before the programs were loaded
 * is known at once, and a hard link, a symlink or a rename of the binary is the same inode. A script is the
 * interpreter that runs it (the kernel's exe_file), a copy of a binary is another inode: another program.
 *
 * children: true walks the task's parent chain (real_parent, up to AEGIS_SUBJECT_DEPTH levels) and takes
 * the subject of each ancestor whose exe a rule names with children: true. A process whose ancestor has
 * exited was reparented (to init or a subreaper) and is no longer its child: the walk sees what the process
 * tree says now.
 *
 * Subject numbers are per generation: the `rules` map holds (AEGIS_RULE_SUBJECT / _TREE, ino, dev) -> the
 * number, and gen_info.subject_switch is non-zero only when some rule names an exe, so that a policy without
 * exe rules never reads the task (a word of gen_info, which every hook has read already: no lookup).
 */

/*
 * In precedence order: own exe, own exe's tree, nearest ancestors first. Each slot holds the subject's number
 * (low 16 bits) and its entry's AEGIS_SUBJECT_NO_* bits (above them); `absent` holds the switch's, those of
 * the rules naming no program.
 */
struct task_subjects {
	__u32 s[AEGIS_SUBJECT_SLOTS];
	__u16 count;
	__u16 absent;
};

#define SUBJECT_BITS_SHIFT 16

/* The subject switch of the generation (s->info loaded): 0 when no rule names an exe. */
static __always_inline __u32 subject_switch(const struct aegis_state *s)
{
	return s->info ? s->info->subject_switch : 0;
}

/* aegis_task_subjects' `known`: the switch was read (its bits but AEGIS_SUBJECT_ON in the low byte). */
#define SUBJECT_SWITCH_KNOWN 0x80000000u

/* The switch as aegis_task_subjects takes it from a caller that read it: 0 when it is off. */
static __always_inline __u32 subject_switch_word(const struct aegis_state *s)
{
	__u32 on = subject_switch(s);
	return on ? SUBJECT_SWITCH_KNOWN | (on & (AEGIS_SUBJECT_ON - 1)) : 0;
}

/*
 * Appends the subject of `rule` (when there is one and a slot is free). The count is read back from memory
 * (`out` is a global function's argument, memory the verifier does not track), so every path through a
 * level of the walk leaves the same state and the verifier checks each level once, not once per count.
 */
static __always_inline void add_subject(struct task_subjects *out, const struct aegis_rule *rule)
{
	if (!rule)
		return;
	__u32 count = *(volatile __u16 *)&out->count;
	if (count >= AEGIS_SUBJECT_SLOTS)
		return;
	out->s[count & (AEGIS_SUBJECT_SLOTS - 1)] =
		(rule->rule_id & AEGIS_SUBJECT_MAX) | (__u32)rule->action << SUBJECT_BITS_SHIFT;
	out->count = count + 1;
}

/*
 * The inode of the program the current task runs; 0 for a kernel thread (no mm). Through the task's BTF
 * pointer (bpf_get_current_task_btf): each field is a plain load the JIT guards, not a helper call, and a
 * NULL on the way (no mm, no exe_file) reads as 0.
 */
static __always_inline int current_exe(struct inode_id *id)
{
	struct inode *inode = bpf_get_current_task_btf()->mm->exe_file->f_inode;
	if (!inode)
		return 0;
	id->ino = inode->i_ino;
	id->dev = inode->i_sb->s_dev;
	return 1;
}

/*
 * The same for an ancestor of the current task, read through probe reads: a walk of BTF pointers over the
 * parents made the verifier check each level once per state (the egress and bind programs took 230 ms each
 * to load instead of 20), where probe reads give it plain values.
 */
static __always_inline int ancestor_exe(struct task_struct *task, struct inode_id *id)
{
	struct inode *inode = BPF_CORE_READ(task, mm, exe_file, f_inode);
	if (!inode)
		return 0;
	read_inode_id(inode, id);
	return 1;
}

/*
 * The subjects of the current task in generation `gen`: none when no rule names an exe; its exe's, then,
 * when some rule has children: true (the switch's AEGIS_SUBJECT_TREE), its ancestors' tree subjects. 1 when
 * the generation has subjects. A global function: each program that asks verifies the walk once, whatever
 * number of callers and states lead to it.
 */
__noinline int aegis_task_subjects(__u32 gen, __u32 known, struct task_subjects *out)
{
	struct aegis_state s;
	if (!out)
		return 0;
	out->count = 0;
	out->absent = 0;
	out->s[0] = out->s[1] = out->s[2] = out->s[3] = 0;
	if (!load_generation(&s, gen))
		return 0;
	/* The switch, unless the caller looked it up already (SUBJECT_SWITCH_KNOWN, its action below). */
	if (!(known & SUBJECT_SWITCH_KNOWN))
		known = subject_switch_word(&s);
	if (!known)
		return 0;
	__u32 action = known & 0xff;
	out->absent = action;
	struct inode_id id;
	/* Without children: true (the switch's AEGIS_SUBJECT_TREE) no exe has a tree subject. */
	__u32 tree = action & AEGIS_SUBJECT_TREE;
	if (current_exe(&id)) {
		add_subject(out, exact_rule(&s, AEGIS_RULE_SUBJECT, id.ino, id.dev));
		if (tree)
			add_subject(out, exact_rule(&s, AEGIS_RULE_SUBJECT_TREE, id.ino, id.dev));
	}
	if (!tree)
		return 1;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	for (int level = 0; level < AEGIS_SUBJECT_DEPTH; level++) {
		struct task_struct *parent = BPF_CORE_READ(task, real_parent);
		/* The idle task (pid 0, init's parent) is its own parent. */
		if (!parent || parent == task)
			break;
		task = parent;
		if (ancestor_exe(task, &id))
			add_subject(out, exact_rule(&s, AEGIS_RULE_SUBJECT_TREE, id.ino, id.dev));
	}
	return 1;
}

/* Subject `i` of a walk's answer (`i` a loop's constant): its number. */
static __always_inline __u32 subject_at(const struct task_subjects *t, __u32 i)
{
	return t->s[i & (AEGIS_SUBJECT_SLOTS - 1)] & AEGIS_SUBJECT_MAX;
}

/* Whether subject `i` of a walk's answer has rules of the kind `none` (an AEGIS_SUBJECT_NO_* bit) says. */
static __always_inline int subject_has(const struct task_subjects *t, __u32 i, __u32 none)
{
	return !((t->s[i & (AEGIS_SUBJECT_SLOTS - 1)] >> SUBJECT_BITS_SHIFT) & none);
}

/*
 * An event of a policy with subjects carries the program of the task it judged: its exe's ino and dev, and
 * AEGIS_EVENT_EXE says so (a record without it has no program, whatever its ino holds).
 */
static __always_inline void event_subject(struct aegis_event *e)
{
	struct inode_id id;
	if (current_exe(&id)) {
		e->ino = id.ino;
		e->dev = id.dev;
		e->flags |= AEGIS_EVENT_EXE;
	}
}

/*
 * The best egress rule found so far for one view of a destination. It lives in a global function's
 * argument (memory the verifier does not track), and is read back with volatile loads: every path through
 * a lookup leaves the same state, so the verifier checks each lookup once, not once per combination of
 * the lookups before it (the subjects' loop was 60,000 of connect4's 78,000 verified instructions).
 */
struct net_best {
	__u32 rule_id;
	__u32 action;
	__s32 rank;  /* -1: no rule matched */
	__u32 named; /* 1: the rule is a rule by name (aegis_subject_name_rule) */
};

/* Takes `rule` (a rule word) when it matches more specifically than the best so far (ties keep the earlier one). */
static __always_inline void net_consider(struct net_best *best, __u64 rule, int rank)
{
	if (!rule || rank <= *(volatile __s32 *)&best->rank)
		return;
	best->rank = rank;
	best->rule_id = word_rule_id(rule);
	best->action = word_action(rule);
}

/*
 * What an egress hook asks aegis_subject_egress_deny: the destination's first view (the second, when
 * has_alt, is passed apart), the task's subjects, and the answer.
 */
struct subject_query {
	struct aegis_net_key key; /* in: the destination; out: the view that was denied */
	struct net_best best;     /* scratch: the rule that matches the view being checked */
	struct net_best named;    /* scratch: the rule by name that matches it */
	struct task_subjects subjects; /* the current task's (aegis_task_subjects), asked by the caller */
	__u32 gen;
	__u32 rule_id; /* out: the rule that denied */
	__u32 name_allow; /* out: when nothing denied, the rule by name that allowed (0: none) */
	__u16 port_be;
	__u8 has_alt;
	__u8 _pad0;
};

/*
 * The rules of one pattern (`kind`, `a`) that match: the port rule (rank 2), the protocol's (rank 1),
 * every protocol's (rank 0), each considered as net_consider() does (ties keep the earlier); the levels
 * `none` (AEGIS_SUBJECT_PAIR_NO_* bits) says the pattern has no rule of are not looked up.
 */
static __always_inline void name_levels(const struct aegis_state *s, __u32 kind, __u64 a, __u32 port,
					__u32 protocol, __u32 none, struct net_best *best)
{
	if (port && !(none & AEGIS_SUBJECT_PAIR_NO_PORT))
		net_consider(best, rule_word(exact_rule(s, kind, a, port << 8 | protocol)), 2);
	if (protocol && !(none & AEGIS_SUBJECT_PAIR_NO_PROTOCOL))
		net_consider(best, rule_word(exact_rule(s, kind, a, protocol)), 1);
	if (!(none & AEGIS_SUBJECT_PAIR_NO_ANY))
		net_consider(best, rule_word(exact_rule(s, kind, a, 0)), 0);
}

/*
 * The rule by name that decides `view` (its family in view->space, as match_net() leaves it) for a task of
 * q->subjects: the pattern its address was learned under, then the most specific level (a port, then a
 * protocol, then neither) among the rules of the task's subjects (in precedence order: kinds 64 and 65, of
 * the subjects whose AEGIS_SUBJECT_NO_NAMES is clear) and the rules naming no program (kinds 60 and 61; last, at equal level),
 * matched in q->named (scratch in the query: memory the verifier does not track, so the lookups leave one
 * state). Found: it replaces q->best (named = 1) and 1 is returned; else q->best stays. A global function:
 * verified once for both views of the query.
 */
__noinline int aegis_subject_name_rule(struct subject_query *q, const struct aegis_net_key *view)
{
	struct aegis_state state;
	if (!q || !view || !load_generation(&state, q->gen))
		return 0;
	const struct aegis_state *s = &state;
	const struct task_subjects *subjects = &q->subjects;
	struct net_best *best = &q->best;
	struct net_best *named = &q->named;
	__u16 port_be = q->port_be;
	/* The task's subjects with rules by name (the switch's bit: the rules naming no program have some). */
	__u32 with_names = !(subjects->absent & AEGIS_SUBJECT_NO_NAMES);
	__u32 subjects_with_names = 0;
	for (int i = 0; i < AEGIS_SUBJECT_SLOTS; i++) {
		if (i >= subjects->count)
			break;
		subjects_with_names |= subject_has(subjects, i, AEGIS_SUBJECT_NO_NAMES);
	}
	if (!with_names && !subjects_with_names)
		return 0;
	struct aegis_learned_key lk = { .family = view->space & 0xff };
	__builtin_memcpy(lk.addr, view->addr, 16);
	struct aegis_learned *entry = bpf_map_lookup_elem(&learned, &lk);
	if (!entry || entry->expires_boot_ns <= boot_ns_this_tick())
		return 0;
	__u32 kind = entry->kind;
	__u64 host = entry->host_key;
	__u32 protocol = view->protocol;
	__u32 port = bpf_ntohs(port_be);
	named->rank = -1;
	named->named = 1;
	if (subjects_with_names) {
		__u32 wildcard = kind == AEGIS_RULE_HOST_WILDCARD ? 1 : 0;
		for (int i = 0; i < AEGIS_SUBJECT_SLOTS; i++) {
			if (i >= subjects->count)
				break;
			if (!subject_has(subjects, i, AEGIS_SUBJECT_NO_NAMES))
				continue;
			struct aegis_rule *pair =
				exact_rule(s, AEGIS_RULE_HOST_SUBJECT, host, subject_at(subjects, i) << 1 | wildcard);
			if (pair)
				name_levels(s, AEGIS_RULE_HOST_SUBJECT_RULE, pair->rule_id, port, protocol, pair->action,
					    named);
		}
	}
	if (with_names)
		name_levels(s, kind, host, port, protocol, s->info ? s->info->host_rules >> AEGIS_HOST_LEVELS_SHIFT : 0,
			    named);
	if (*(volatile __s32 *)&named->rank < 0)
		return 0;
	*best = *named;
	return 1;
}

/*
 * The egress rules of `subject` that match `key`, considered as match_net() ranks them: CIDR length * 4,
 * plus 2 for a port rule, plus 1 for a port-less rule naming the protocol. The shapes `absent` says no
 * egress rule has (gen_info.egress_absent, for the rules naming no program; 0 for a subject's, which are
 * looked up only for a subject that has some) are not looked up.
 */
static __always_inline void subject_net_match(const struct aegis_state *s, __u32 subject, struct aegis_net_key *key,
					      __u16 port_be, struct net_best *best, __u32 absent)
{
	if (!has_net_rules(s))
		return;
	__u32 family = key->space & 0xff;
	__u32 shifted = subject << AEGIS_SUBJECT_NET_SHIFT;
	__u64 rule;
	key->prefixlen = NET_KEY_FULL_PREFIX;
	if (port_be && !(absent & AEGIS_INGRESS_NO_PORT)) {
		key->space = shifted | AEGIS_NET_EGRESS_PORT << 8 | family;
		__builtin_memcpy(key->port, &port_be, 2);
		rule = net_lookup(s, key);
		net_consider(best, rule, word_prefix_len(rule) * 4 + 2);
	}
	key->space = shifted | AEGIS_NET_EGRESS_ANY << 8 | family;
	key->port[0] = 0;
	key->port[1] = 0;
	__u8 protocol = key->protocol;
	rule = protocol && (absent & AEGIS_INGRESS_NO_PROTOCOL) ? 0 : net_lookup(s, key);
	net_consider(best, rule, word_prefix_len(rule) * 4 + (protocol ? 1 : 0));
	if (protocol && !(absent & AEGIS_INGRESS_NO_ANY)) {
		key->protocol = 0;
		rule = net_lookup(s, key);
		net_consider(best, rule, word_prefix_len(rule) * 4);
		key->protocol = protocol;
	}
	key->space = family;
}

/*
 * The egress rule that decides one view of a destination for a task of `subjects`, in `best`: the most
 * specific (highest rank); at equal rank the first in precedence order (own exe, ancestors nearest first),
 * and a rule naming no program last. best->rank -1: no rule matches.
 */
static __always_inline void subjects_net_rule(const struct aegis_state *s, struct subject_query *q,
					      struct aegis_net_key *key)
{
	const struct task_subjects *subjects = &q->subjects;
	struct net_best *best = &q->best;
	__u16 port_be = q->port_be;
	best->rank = -1;
	best->rule_id = 0;
	best->action = 0;
	best->named = 0;
	for (int i = 0; i < AEGIS_SUBJECT_SLOTS; i++) {
		if (i >= subjects->count)
			break;
		if (subject_has(subjects, i, AEGIS_SUBJECT_NO_NET))
			subject_net_match(s, subject_at(subjects, i), key, port_be, best, 0);
	}
	if (!(subjects->absent & AEGIS_SUBJECT_NO_NET))
		subject_net_match(s, 0, key, port_be, best, s->info ? s->info->egress_absent : 0);
	/*
	 * Rules by name (where the generation has some): the address's learned name decides unless a CIDR rule
	 * of the address itself (a /32 or /128, of any subject) matched, as on the path without subjects.
	 */
	__u32 full = (key->space & 0xff) == AEGIS_FAMILY_IPV4 ? 32 : 128;
	if (s->info->host_rules && *(volatile __s32 *)&best->rank < (__s32)(full * 4))
		aegis_subject_name_rule(q, key);
}


/*
 * egress_cidr_deny() for the current task's subjects (q->subjects), with the learned names: 1 when a rule
 * denies either view (its id in q->rule_id, the view in q->key); `alt` is the IPv6 view of an embedded IPv4
 * destination, read when q->has_alt (the caller's own, not a copy in the query: connect6's stack). A global
 * function: the verifier checks the rule lookups once.
 */
__noinline int aegis_subject_egress_deny(struct subject_query *q, const struct aegis_net_key *alt)
{
	struct aegis_state s;
	if (!q || !alt || !load_generation(&s, q->gen))
		return 0;
	/* Copies on the stack: 6.1 takes no global function argument's memory as a map key. */
	struct aegis_net_key key = q->key;
	q->name_allow = 0;
	subjects_net_rule(&s, q, &key);
	if (q->best.rank >= 0 && q->best.action != AEGIS_ACTION_ALLOW) {
		q->rule_id = q->best.rule_id;
		q->key = key;
		return 1;
	}
	if (q->best.rank >= 0 && q->best.named)
		q->name_allow = q->best.rule_id;
	if (!q->has_alt)
		return 0;
	key = *alt;
	subjects_net_rule(&s, q, &key);
	if (q->best.rank < 0 || q->best.action == AEGIS_ACTION_ALLOW) {
		if (q->best.rank >= 0 && q->best.named && !q->name_allow)
			q->name_allow = q->best.rule_id;
		return 0;
	}
	q->rule_id = q->best.rule_id;
	q->key = key;
	return 1;
}

/*
 * The users entry of `ids` for `subject`: the uid's, else the gid's; `port_kind` and `id` say where its
 * ports are listed.
 */
static __always_inline struct aegis_rule *user_entry(const struct aegis_state *s, __u64 ids, __u32 subject,
						     __u32 *port_kind, __u32 *id)
{
	*id = (__u32)ids;
	*port_kind = AEGIS_RULE_USER_UID_PORT;
	struct aegis_rule *entry = exact_rule(s, AEGIS_RULE_USER_UID, subject, *id);
	if (entry)
		return entry;
	*id = ids >> 32;
	*port_kind = AEGIS_RULE_USER_GID_PORT;
	return exact_rule(s, AEGIS_RULE_USER_GID, subject, *id);
}

/* The entry itself when it denies `port`: an allowlist denies every port it does not list, a denylist those it lists. */
static __always_inline struct aegis_rule *user_entry_denies(const struct aegis_state *s, struct aegis_rule *entry,
							    __u32 port_kind, __u32 id, __u32 subject, __u16 port)
{
	int listed = exact_rule(s, port_kind, (__u64)subject << 16 | port, id) != 0;
	if (entry->action == AEGIS_USER_PORTS_ALLOWED)
		return listed ? 0 : entry;
	return listed ? entry : 0;
}

/*
 * The users entry that decides `port` for a task of `subjects` (aegis_task_subjects, the caller's): the first
 * subject in precedence order that has an entry for its uid or gid, then the entries naming no program; the
 * subjects without users entries (their AEGIS_SUBJECT_NO_USERS) are not looked up. Its id when it denies,
 * else 0. Global.
 */
__noinline __u32 aegis_subject_user_rule(const struct task_subjects *subjects, __u32 gen, __u16 port)
{
	struct aegis_state s;
	if (!subjects || !load_generation(&s, gen))
		return 0;
	/* The task's euid and egid are read only when a subject, or the rules naming no program, have users entries. */
	__u32 users = !(subjects->absent & AEGIS_SUBJECT_NO_USERS);
	for (int i = 0; i < AEGIS_SUBJECT_SLOTS; i++) {
		if (i >= subjects->count)
			break;
		users |= subject_has(subjects, i, AEGIS_SUBJECT_NO_USERS);
	}
	if (!users)
		return 0;
	__u64 ids = current_euid_egid();
	__u32 port_kind, id;
	for (int i = 0; i < AEGIS_SUBJECT_SLOTS; i++) {
		if (i >= subjects->count)
			break;
		if (!subject_has(subjects, i, AEGIS_SUBJECT_NO_USERS))
			continue;
		__u32 subject = subject_at(subjects, i);
		struct aegis_rule *entry = user_entry(&s, ids, subject, &port_kind, &id);
		if (entry) {
			struct aegis_rule *denies = user_entry_denies(&s, entry, port_kind, id, subject, port);
			return denies ? denies->rule_id : 0;
		}
	}
	if (subjects->absent & AEGIS_SUBJECT_NO_USERS)
		return 0;
	struct aegis_rule *entry = user_entry(&s, ids, 0, &port_kind, &id);
	if (!entry)
		return 0;
	struct aegis_rule *denies = user_entry_denies(&s, entry, port_kind, id, 0, port);
	return denies ? denies->rule_id : 0;
}

/* The bind rule of one of the current task's subjects for (port, protocol): its id, or 0. Global. */
__noinline __u32 aegis_subject_bind_rule(__u32 gen, __u16 port, __u8 protocol)
{
	struct aegis_state s;
	if (!load_generation(&s, gen))
		return 0;
	struct task_subjects subjects;
	if (!aegis_task_subjects(gen, 0, &subjects))
		return 0;
	for (int i = 0; i < AEGIS_SUBJECT_SLOTS; i++) {
		if (i >= subjects.count)
			break;
		struct aegis_rule *rule =
			exact_rule(&s, AEGIS_RULE_BIND, (__u64)subject_at(&subjects, i) << 16 | port, protocol);
		if (rule)
			return rule->rule_id;
	}
	return 0;
}
