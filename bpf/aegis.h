/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Every struct and constant that crosses the kernel boundary. Fixed-width
 * types, explicit padding and a size assert for each struct; constants are
 * enums so that they reach the object's BTF. ffi/layout.ts and ffi/constants.ts
 * mirror them, and a unit test checks both mirrors against that BTF.
 */
#ifndef AEGIS_H
#define AEGIS_H

/* Bumped whenever a pinned map's definition or meaning changes. */
enum aegis_layout { AEGIS_LAYOUT_VERSION = 22 };

enum aegis_mode { AEGIS_MODE_AUDIT = 0, AEGIS_MODE_ENFORCE = 1 };

enum aegis_decision { AEGIS_DECISION_DENY = 0, AEGIS_DECISION_AUDIT = 1 };

enum aegis_action { AEGIS_ACTION_DENY = 0, AEGIS_ACTION_ALLOW = 1 };

/* Hooks, used as event types and as counter rows. */
enum aegis_hook {
	AEGIS_HOOK_FILE_OPEN = 0,
	AEGIS_HOOK_EXEC = 1,
	AEGIS_HOOK_CONNECT = 2,
	AEGIS_HOOK_SENDMSG = 3,
	AEGIS_HOOK_BIND = 4,
	AEGIS_HOOK_INGRESS = 5,
	/* file guard (bpf/file_guard.bpf.h) */
	AEGIS_HOOK_SCOPE = 6, /* a task in scope moving a task out of it (cgroup.procs, cgroup.threads, clone3) */
	/* net_guard.bpf.h (network bypasses): */
	AEGIS_HOOK_PACKET = 7, /* an outgoing packet of a raw, ping, SCTP or connected UDP-Lite socket */
	AEGIS_HOOK_SOCKET = 8, /* creating a socket (AF_PACKET with network.egress.denyPacketSockets) */
	/* second round of bypasses */
	AEGIS_HOOK_PTRACE = 9,       /* a task in scope tracing, or writing the memory of, a task outside it */
	AEGIS_HOOK_FILE_CHANGE = 10, /* truncate, unlink, rename or attribute change of a denied file */
	AEGIS_HOOK_ROUTE = 11,       /* setting a routing header or a source-route option in scope */
	AEGIS_HOOK_FORWARD = 12,     /* a forwarded packet (network.egress.forwarded) */
	AEGIS_HOOK_FILE_WRITE = 13,  /* a write, change or entry change of a protected inode (files.protect) */
	AEGIS_HOOK_IDENTITY = 14,    /* a task in scope changing the executable it is known by (prctl PR_SET_MM) */
	AEGIS_HOOK_COUNT = 15,
};

/*
 * Per-CPU counter slots: [hook][decision], then event accounting. Every
 * matched decision counts once in its [hook][decision] slot, and reaches user
 * space as one of: its own event, part of a later event's `count` (suppressed
 * by the rate limit), or EVENTS_LOST (a record the ring buffer had no room
 * for, weighted by the decisions it carried). EVENTS_SUPPRESSED counts
 * suppressions for metrics only.
 */
enum aegis_counter {
	AEGIS_COUNTER_EVENTS_LOST = AEGIS_HOOK_COUNT * 2,
	AEGIS_COUNTER_EVENTS_SUPPRESSED = AEGIS_HOOK_COUNT * 2 + 1,
	AEGIS_COUNTER_SLOTS = AEGIS_HOOK_COUNT * 2 + 2,
};

enum aegis_family {
	AEGIS_FAMILY_IPV4 = 4,
	AEGIS_FAMILY_IPV6 = 6,
	AEGIS_FAMILY_PACKET = 17, /* AF_PACKET: net.socket events; no address */
	AEGIS_FAMILY_XDP = 44,    /* AF_XDP: net.socket events; no address */
};

/* Values of a scope entry (its rule's `action` field). */
enum aegis_scope { AEGIS_SCOPE_INCLUDE = 1, AEGIS_SCOPE_EXEMPT = 2 };

/* What a user entry's ports are (its rule's `action` field). */
enum aegis_user_ports { AEGIS_USER_PORTS_DENIED = 0, AEGIS_USER_PORTS_ALLOWED = 1 };

/* Event rate limit per (rule, generation, pid): a burst per window, then suppressed and counted. */
enum aegis_rate_limit {
	AEGIS_RATE_WINDOW_SHIFT = 30, /* windows of 2^30 ns (1.07 s) of CLOCK_BOOTTIME */
	AEGIS_RATE_BURST = 8,
};

enum aegis_event_flag {
	/* Not a decision of its own: `count` decisions suppressed in a window that has ended. */
	AEGIS_EVENT_SUMMARY = 1,
	/* The packet or socket option carried an IPv4 source route (LSRR/SSRR) / an IPv6 routing header. */
	AEGIS_EVENT_SRCROUTE = 2,
	AEGIS_EVENT_RTHDR = 4,
	/* A network event of a policy with rules by program: ino and dev hold the task's executable. */
	AEGIS_EVENT_EXE = 8,
};

/* Values of the break-glass word below its deadlines: audit everywhere, until turned off. */
enum aegis_break_glass { AEGIS_BREAK_GLASS_OFF = 0, AEGIS_BREAK_GLASS_ON = 1 };

enum aegis_sizes { AEGIS_COMM_LEN = 16 };

/*
 * The config map is an array of __u64 words, one per setting, so that each
 * writer (a flip, break-glass, the deadman) writes only its own word and
 * never rewrites another's with a stale value.
 */
enum aegis_cfg_word {
	AEGIS_CFG_ACTIVE_GEN = 0,  /* 0 or 1: the rule generation the hooks read */
	AEGIS_CFG_FORCE_AUDIT = 1, /* non-zero: `run --audit`, audit whatever the policy says */
	AEGIS_CFG_BREAK_GLASS = 2, /* AEGIS_BREAK_GLASS_*, or the CLOCK_BOOTTIME ns until which it is on */
	AEGIS_CFG_DEADMAN = 3,     /* CLOCK_BOOTTIME ns after which hooks audit; 0 = no deadman */
	AEGIS_CFG_LAYOUT = 4,      /* AEGIS_LAYOUT_VERSION of the object that made the pins */
	AEGIS_CFG_ENFORCE_SIGNAL = 5, /* 0, or the AEGIS_SIGNAL_* the LSM hooks send to a task they deny */
	AEGIS_CFG_INHERITED = 6,   /* non-zero once an inode inherited a rule (map `inherited` holds entries) */
	AEGIS_CFG_WORDS = 7,
};

/*
 * Rule maps. Each is an ARRAY_OF_MAPS with one inner map per generation: an
 * apply fills fresh inner maps, installs them in the inactive slot and flips
 * AEGIS_CFG_ACTIVE_GEN. The kinds below share the two inner map types.
 */
enum aegis_rule_kind {
	AEGIS_RULE_FILE = 1,          /* a = ino, b = dev (kernel encoding) */
	AEGIS_RULE_EXEC = 2,          /* a = ino, b = dev */
	AEGIS_RULE_SCOPE = 3,         /* a = cgroup id; action = AEGIS_SCOPE_* */
	AEGIS_RULE_USER_UID = 4,      /* b = effective uid; action = AEGIS_USER_PORTS_* */
	AEGIS_RULE_USER_GID = 5,      /* b = effective gid; action = AEGIS_USER_PORTS_* */
	AEGIS_RULE_USER_UID_PORT = 6, /* a = destination port, b = uid: listed */
	AEGIS_RULE_USER_GID_PORT = 7, /* a = destination port, b = gid: listed */
	AEGIS_RULE_BIND = 8,          /* a = port, b = protocol */
	AEGIS_RULE_FAILSAFE = 9,      /* a = port, b = protocol */
	AEGIS_RULE_IFACE = 10,        /* b = ifindex; action = default, rule_id = rule of default drops */
	/* Network bypasses (net_guard.bpf.h): policy-level switches and prefixes, kinds 16..31. */
	AEGIS_RULE_NAT64_PREFIX = 16, /* a = bytes 0-7, b = bytes 8-11 of a /96 NAT64 prefix (memory order) */
	AEGIS_RULE_DENY_PACKET_SOCKETS = 17, /* present: AF_PACKET sockets refused in scope; rule_id reports */
	AEGIS_RULE_ROUTE_GUARD = 18, /* present when egress rules exist: no source routes in scope */
	AEGIS_RULE_FORWARDED = 19,   /* present: network.egress.forwarded, egress rules judge forwarded packets */
	/* File guard switches (bpf/file_guard.bpf.h): one entry each, a = b = 0, present when on. */
	AEGIS_RULE_MEMFD_EXEC = 32,  /* exec.denyMemfd: no exec of a file that lives only in memory */
	AEGIS_RULE_SCOPE_GUARD = 33, /* present with a scope: tasks in scope cannot move out of it */
	AEGIS_RULE_PTRACE_GUARD = 34, /* present with a scope: tasks in scope cannot trace tasks outside it */
	/* files.protect (bpf/file_protect.bpf.h): kinds 40..47. */
	AEGIS_RULE_PROTECT = 40,    /* a = ino, b = dev: read and run, never written; a directory's entries fixed */
	AEGIS_RULE_PROTECT_ON = 41, /* a = b = 0, present when the policy protects anything: the hooks look */
	/* files.writers: a = a subject number (task_subject.bpf.h); rule_id = the writer entry. */
	AEGIS_RULE_WRITER = 42, /* a = subject; action = AEGIS_WRITER_* bits: what the writer may change */
	AEGIS_RULE_WRITERS = 43, /* a = b = 0, present when the policy has writers: the hooks ask the task */
	/*
	 * a = ino, b = dev of a protected or allowed inode; rule_id = its i_generation at apply, where the
	 * filesystem shows one: a later inode that reuses the number (another i_generation) has no rule.
	 */
	AEGIS_RULE_INODE_GEN = 44,
	/* The exec allowlist (bpf/exec_allow.bpf.h), kinds 48..55. */
	AEGIS_RULE_EXEC_DEFAULT_DENY = 48, /* present: exec.default deny, a = b = 0; rule_id reports untrusted execs */
	AEGIS_RULE_EXEC_ALLOW = 49,        /* a = ino, b = dev: an exec.allow inode; action = AEGIS_EXEC_ALLOW_* */
	/*
	 * a = the inode's ctime in ns (sec * 10^9 + nsec), b = its ino's low 32 bits: what a sha256 entry's inode
	 * was when its content was hashed. Any write, truncate, chmod, chown or link changes ctime to the time of
	 * that change, which never equals a ctime from before it unless the clock is set back.
	 */
	AEGIS_RULE_EXEC_STAMP = 50,
	/*
	 * Subjects (bpf/task_subject.bpf.h): rules that name a program (`exe`). Each distinct (exe, children) of
	 * a generation has a subject number 1..AEGIS_SUBJECT_MAX; its egress CIDR rules sit in net_rules spaces
	 * shifted by it (AEGIS_SUBJECT_NET_SHIFT), its users entries have a = subject (port entries a = port |
	 * subject << 16), its bind rules a = port | subject << 16. Subject 0 is "every program", as before.
	 */
	AEGIS_RULE_SUBJECT = 56,      /* a = ino, b = dev of an exe; rule_id = its subject (children: false) */
	AEGIS_RULE_SUBJECT_TREE = 57, /* a = ino, b = dev of an exe; rule_id = its subject (children: true) */
	/* (Kind 58 is free: the switch of subjects is gen_info.subject_switch.) */
	/* a = b = 0, present when any rule names an exe: tasks in scope cannot change their mm->exe_file */
	AEGIS_RULE_IDENTITY_GUARD = 59,
	/*
	 * Egress rules by host name (bpf/name_guard.bpf.h), kinds 60..71: a = the host key of a name (FNV-1a 64
	 * of its canonical text, lower case without a trailing dot) or of a wildcard's domain (its labels'
	 * FNV-1a folded from the last: lib/policy/host_name.ts domainKey), b = port << 8 | protocol (port 0:
	 * every port; protocol 0: every protocol). An address learned for a name (map `learned`) is matched by them.
	 */
	AEGIS_RULE_HOST = 60,          /* a = key of an exact name */
	AEGIS_RULE_HOST_WILDCARD = 61, /* a = key of a wildcard's domain ("*.example.com": "example.com") */
	/*
	 * Names learned from DNS answers in the kernel (bpf/dns_learn.bpf.h): one entry per pattern some rule
	 * by name has, whatever its ports (a = the key as above; b = 0 an exact name, 1 a wildcard's domain;
	 * rule_id = the TTL floor: the least seconds an address learned for it is kept), so that an answer's name
	 * is looked up once per parent suffix. Present with the rules by name only. (Kind 63 is free.)
	 */
	AEGIS_RULE_HOST_PATTERN = 62,
	/*
	 * Rules by name that name a program (`host` with `exe`): a pattern's rules for one subject, in two steps
	 * (the key has no room for a host key, a subject, a port and a protocol at once). HOST_SUBJECT: a = the
	 * pattern's host key, b = subject << 1 | 1 for a wildcard's domain; rule_id = a number of the pair
	 * (1 up, per generation), action = the levels its rules have none of (AEGIS_SUBJECT_PAIR_NO_*).
	 * HOST_SUBJECT_RULE: a = that number, b = port << 8 | protocol as above; the rule. Whether a subject has
	 * such rules at all, the hooks learn from its AEGIS_SUBJECT_NO_NAMES bit. (Kind 66 is free.)
	 */
	AEGIS_RULE_HOST_SUBJECT = 64,
	AEGIS_RULE_HOST_SUBJECT_RULE = 65,
};

/*
 * What a trusted writer may change (its AEGIS_RULE_WRITER entry's `action`): files.writers entries both;
 * the package manager `trust: dpkg` names only passes allowance (its upgrades keep binaries runnable),
 * never writes protected files unless files.writers names it too.
 */
enum aegis_writer_scope {
	AEGIS_WRITER_PROTECTED = 1, /* may change protected files and directories (files.protect) */
	AEGIS_WRITER_ALLOWED = 2,   /* its rename over an exec.allow inode passes the allowance */
};

/*
 * The switch's bits (gen_info.subject_switch), a subject entry's action (AEGIS_RULE_SUBJECT / _TREE), and
 * the limits of the subject walk. The NO_* bits say what rules a subject has none of (on the switch: the rules
 * naming no program, subject 0), so that an egress decision skips the lookups that cannot match; 0, as an
 * older release wrote, looks everything up.
 */
enum aegis_subjects {
	AEGIS_SUBJECT_TREE = 1,       /* switch bit: some rule has children: true, the task's ancestors are walked */
	AEGIS_SUBJECT_NO_NET = 2,     /* no egress CIDR rule (net_rules entry) */
	AEGIS_SUBJECT_NO_NAMES = 4,   /* no egress rule by name */
	AEGIS_SUBJECT_NO_USERS = 8,   /* no users entry */
	/* A rule-by-name pair's (AEGIS_RULE_HOST_SUBJECT) action: which levels of its rules it has none of. */
	AEGIS_SUBJECT_PAIR_NO_PORT = 16,     /* no rule with a port */
	AEGIS_SUBJECT_PAIR_NO_PROTOCOL = 32, /* no rule with a protocol and no port */
	AEGIS_SUBJECT_PAIR_NO_ANY = 64,      /* no rule with neither */
	AEGIS_SUBJECT_ON = 128,       /* switch bit: some rule names an exe (the switch is 0 when none does) */
	AEGIS_SUBJECT_DEPTH = 16,     /* ancestors walked for children: true (parent, grandparent, ...) */
	AEGIS_SUBJECT_SLOTS = 4,      /* subjects one task holds at most: its exe's two, then nearest ancestors' */
	AEGIS_SUBJECT_MAX = 65535,    /* subject numbers are 16 bits */
	AEGIS_SUBJECT_NET_SHIFT = 16, /* struct aegis_net_key.space = subject << 16 | space << 8 | family */
};

/* What an AEGIS_RULE_EXEC_ALLOW entry allows (its rule's `action` field). */
enum aegis_exec_allow {
	AEGIS_EXEC_ALLOW_INODE = 1,  /* the inode, whatever it holds */
	AEGIS_EXEC_ALLOW_HASHED = 2, /* the inode as hashed at apply: also an AEGIS_RULE_EXEC_STAMP entry */
	/*
	 * An inode trust: dpkg allowed, stamped as HASHED; the inode a trusted writer (the package manager)
	 * renamed over it inherits it unstamped: the package manager's upgrade, allowed as packaged content.
	 */
	AEGIS_EXEC_ALLOW_PACKAGED = 3,
};

/*
 * Why an exec event's file was refused (struct aegis_event.op of AEGIS_HOOK_EXEC). With UNTRUSTED and
 * HASH_MISMATCH, daddr and saddr (32 bytes) hold the file's name in its directory, NUL-terminated
 * (truncated to 31 bytes): no rule names the file, so the rule table has no path for it.
 */
enum aegis_exec_reason {
	AEGIS_EXEC_DENIED = 0,        /* an exec.deny rule (or exec.denyMemfd) */
	AEGIS_EXEC_UNTRUSTED = 1,     /* exec.default deny: not in the allowed set (or a file with no name) */
	AEGIS_EXEC_HASH_MISMATCH = 2, /* a sha256 entry's inode changed since apply (its ctime differs) */
};

/*
 * process.ptrace events (bpf/process_guard.bpf.h): what the tracer tried, in the event's `op` byte. The
 * record's process fields are the tracer's (also for traceme, where the tracee makes the call); `ino` holds
 * the target's cgroup id and `dev` the target's pid (tgid).
 */
enum aegis_ptrace_op {
	AEGIS_PTRACE_OP_ATTACH = 1,      /* ptrace(2) PTRACE_ATTACH or PTRACE_SEIZE */
	AEGIS_PTRACE_OP_TRACEME = 2,     /* PTRACE_TRACEME: a task outside the scope asks its parent in scope */
	AEGIS_PTRACE_OP_VM_READ = 3,     /* process_vm_readv */
	AEGIS_PTRACE_OP_VM_WRITE = 4,    /* process_vm_writev */
	AEGIS_PTRACE_OP_PROC_OPEN = 5,   /* an open of /proc/PID/mem (or another file that needs attach access) */
	AEGIS_PTRACE_OP_PIDFD_GETFD = 6, /* pidfd_getfd: taking a descriptor of the target */
	AEGIS_PTRACE_OP_OTHER = 7,       /* another system call that needs attach access */
};

/*
 * process.identity events (bpf/process_guard.bpf.h): the prctl(PR_SET_MM) operation that would have changed
 * the executable the task is known by (struct aegis_event.op; the values are prctl's own). The event's
 * process.exe is the program the task ran when it asked.
 */
enum aegis_identity_op {
	AEGIS_IDENTITY_OP_EXE_FILE = 13, /* PR_SET_MM_EXE_FILE */
	AEGIS_IDENTITY_OP_MM_MAP = 14,   /* PR_SET_MM_MAP (checkpoint/restore: every field at once, exe_fd among them) */
};

/*
 * What a file.change event's task tried on a file-denied inode, or a file.write event's task on a protected
 * one (struct aegis_event.op). For an entry change in a protected directory (create, unlink, rename, link
 * into it), the event's inode is the directory's.
 */
enum aegis_file_op {
	AEGIS_FILE_OP_TRUNCATE = 1,    /* truncate(2), ftruncate(2): a size change */
	AEGIS_FILE_OP_UNLINK = 2,
	AEGIS_FILE_OP_RENAME = 3,      /* the denied inode renamed, or another renamed over it */
	AEGIS_FILE_OP_LINK = 4,        /* a new hard link to the denied inode */
	AEGIS_FILE_OP_CHMOD = 5,
	AEGIS_FILE_OP_CHOWN = 6,
	AEGIS_FILE_OP_UTIMES = 7,      /* access or modification time set */
	AEGIS_FILE_OP_SETATTR = 8,     /* another attribute change (ctime, privileges dropped) */
	AEGIS_FILE_OP_SETXATTR = 9,
	AEGIS_FILE_OP_REMOVEXATTR = 10,
	/* files.protect only */
	AEGIS_FILE_OP_OPEN_WRITE = 11, /* an open for writing (O_WRONLY, O_RDWR) or with O_TRUNC */
	AEGIS_FILE_OP_CREATE = 12,     /* a new file (open O_CREAT, mknod of a regular file) */
	AEGIS_FILE_OP_MKDIR = 13,
	AEGIS_FILE_OP_SYMLINK = 14,
	AEGIS_FILE_OP_MKNOD = 15,      /* a device, FIFO or socket node */
	AEGIS_FILE_OP_RMDIR = 16,
	AEGIS_FILE_OP_MOUNT = 17,      /* a mount over the protected inode's path (mount, bind, move_mount) */
};

/* Signals the kill-on-deny word may hold (Linux x86-64 numbers). */
enum aegis_signal { AEGIS_SIGNAL_NONE = 0, AEGIS_SIGNAL_KILL = 9, AEGIS_SIGNAL_TERM = 15 };

/* Most inodes that inherit a rule by replacing a denied, protected or (by a writer) allowed one. */
enum aegis_inherit_limits { AEGIS_INHERITED_ENTRIES = 65536 };

/*
 * Spaces of the network rule trie (struct aegis_net_key.space = subject << 16 | space << 8 | family, subject
 * 0 for rules that name no program).
 */
enum aegis_net_space {
	AEGIS_NET_EGRESS_PORT = 1, /* destination rules that name a port */
	AEGIS_NET_EGRESS_ANY = 2,  /* destination rules for every port */
	AEGIS_NET_INGRESS_PORT = 3,
	AEGIS_NET_INGRESS_ANY = 4,
};

/*
 * gen_info.host_rules: 0 when the generation has no rule by name; else AEGIS_HOST_ANY, AEGIS_HOST_EXACT when a
 * pattern is an exact name, bit n (2 to 8) when a wildcard's domain has n labels (the DNS answer parser looks
 * a name up by those suffixes only), and, shifted by AEGIS_HOST_LEVELS_SHIFT, the AEGIS_SUBJECT_PAIR_NO_*
 * levels the rules by name that name no program have none of (not looked up).
 */
enum aegis_host_shape { AEGIS_HOST_LEVELS_SHIFT = 16, AEGIS_HOST_EXACT = 0x10000, AEGIS_HOST_ANY = 0x40000000 };

/* Bits of gen_info.ingress_absent: the ingress trie holds no rule of this shape. */
enum aegis_ingress_absent {
	AEGIS_INGRESS_NO_PORT = 1,     /* no rule that names a port (space AEGIS_NET_INGRESS_PORT) */
	AEGIS_INGRESS_NO_PROTOCOL = 2, /* no port-less rule that names a protocol */
	AEGIS_INGRESS_NO_ANY = 4,      /* no rule for every protocol (protocol 0 of AEGIS_NET_INGRESS_ANY) */
};

/* Most entries one generation's inner map may hold (checked before writing). */
enum aegis_capacity {
	AEGIS_CAPACITY_RULES = 1 << 20,
	AEGIS_CAPACITY_NET_RULES = 1 << 21,
};

/*
 * The build that made the pins (array map `aegis_build`, one entry, written and read by user space only):
 * the SHA-256 of the object the programs pinned under progs/ were loaded from, and which sets of them are
 * pinned (AEGIS_BUILD_* bits: a load pins the sets of the areas it serves, a later command of the same
 * build loads and adds a set it lacks). Zeroed before a load of another object changes those pins, written
 * after it pinned all of them: a command adopts a pinned set without loading it only where the record names
 * this very object and the set.
 */
enum aegis_build_programs {
	AEGIS_BUILD_FILE_LSM = 1,     /* file: the BPF-LSM programs */
	AEGIS_BUILD_FILE_AUDIT = 2,   /* file: the audit tracepoints, for where BPF-LSM does not load */
	AEGIS_BUILD_LSM_REFUSED = 4,  /* BPF-LSM programs refused in this boot, with lsm_errno (a lasting one) */
	AEGIS_BUILD_SWEEP = 8,        /* the sweep's iterators, loaded by the first sweep */
	AEGIS_BUILD_LIST = 16,        /* the listing iterators, loaded by the first listing (health) */
	AEGIS_BUILD_EXEC_LSM = 32,    /* exec: the BPF-LSM programs */
	AEGIS_BUILD_EXEC_AUDIT = 64,  /* exec: the audit tracepoint */
	AEGIS_BUILD_RENAME_LSM = 128, /* file or exec with BPF-LSM: the rename hook */
	AEGIS_BUILD_GUARDS_LSM = 256, /* any area with BPF-LSM: the ptrace and scope guards */
	AEGIS_BUILD_EGRESS = 512,     /* egress: the cgroup programs */
	AEGIS_BUILD_EGRESS_LSM = 1024, /* egress with BPF-LSM: packet sockets, SCTP */
	AEGIS_BUILD_EGRESS_AUDIT = 2048, /* egress without: the packet socket tracepoint */
	AEGIS_BUILD_BIND = 4096,      /* bind: the cgroup programs */
	AEGIS_BUILD_BIND_LSM = 8192,  /* bind with BPF-LSM: SCTP binds */
	AEGIS_BUILD_INGRESS = 16384,  /* ingress: XDP and the rate limiter's flush */
	AEGIS_BUILD_FORWARD = 32768,  /* forwarded packets (tc), loaded when a policy first needs it */
	AEGIS_BUILD_IDENTITY_AUDIT = 262144, /* egress, bind or file without BPF-LSM: the identity guard's tracepoint */
};
struct aegis_build {
	__u8 object_sha256[32];
	__u32 programs; /* AEGIS_BUILD_* bits; 0: no record */
	__u32 lsm_errno; /* with AEGIS_BUILD_LSM_REFUSED: the errno of the refused load */
};
_Static_assert(sizeof(struct aegis_build) == 40, "aegis_build size");

/* Per-generation facts of a rule set (array map indexed by generation). */
struct aegis_gen_info {
	__u32 mode;                /* AEGIS_MODE_*: what the policy asks for */
	__u32 scope_include;       /* number of scope.cgroups entries: 0 = every task */
	__u32 scope_exempt;        /* number of scope.exempt entries */
	__u32 task_rules;          /* users entries plus programs rules name: non-zero when egress must read the task */
	__u32 ingress_port_denies; /* ingress deny rules that name ports */
	__u32 rules_entries;       /* entries of this generation's `rules` inner map */
	__u32 net_rules_entries;   /* entries of this generation's `net_rules` inner map */
	/*
	 * Bit (port & 31) set where no ingress failsafe port has those low five bits: XDP skips the failsafe
	 * lookup for such a port. 0 (as an older release left the word) looks every port up.
	 */
	__u32 failsafe_absent;
	__u32 host_rules; /* AEGIS_HOST_* and label-count bits: non-zero when egress consults learned names */
	/*
	 * AEGIS_INGRESS_NO_* bits: shapes of ingress rule the generation's trie has none of, whose lookups XDP
	 * skips. 0 (as an older release left the word) looks every shape up.
	 */
	__u32 ingress_absent;
	/* The same bits for the egress spaces (every subject's): the egress lookups skip those shapes. */
	__u32 egress_absent;
	__u32 net_exact_entries; /* entries of this generation's `net_exact` inner map */
	/*
	 * AEGIS_SUBJECT_ON | AEGIS_SUBJECT_TREE and the NO_* bits of the rules naming no program, where some rule
	 * names an exe; 0 where none does, and then no hook reads the task's program.
	 */
	__u32 subject_switch;
	__u32 _pad0;
	/*
	 * Random and never 0, written at each staging: names these contents of the generation's slot, for the
	 * caches of a decision (xdp_matches) that must not outlive them. 0 (never written) caches nothing.
	 */
	__u64 stamp;
};
_Static_assert(sizeof(struct aegis_gen_info) == 64, "aegis_gen_info size");

/* Key of the `rules` hash: exact-match rules of every kind. */
struct aegis_rule_key {
	__u64 a;
	__u32 b;
	__u32 kind; /* AEGIS_RULE_* */
};
_Static_assert(sizeof(struct aegis_rule_key) == 16, "aegis_rule_key size");

/*
 * LPM trie key for egress and ingress CIDR rules, IPv4 and IPv6 alike.
 * prefixlen = 32 (space) + 8 (protocol) + 16 (port) + CIDR length. Spaces of
 * port-less rules store port 0; IPv4 addresses sit in the first 4 bytes.
 * A rule of a whole address (/32, /128) is in the `net_exact` hash instead,
 * keyed as every lookup is: prefixlen the full 184 bits, the bytes past an
 * IPv4 address and the padding zero.
 */
struct aegis_net_key {
	__u32 prefixlen;
	__u32 space; /* AEGIS_NET_* << 8 | AEGIS_FAMILY_* */
	__u8 protocol;
	__u8 port[2]; /* big-endian */
	__u8 addr[16];
	__u8 _pad0;
};
_Static_assert(sizeof(struct aegis_net_key) == 28, "aegis_net_key size");

/* What a matched rule carries back to the hook. */
struct aegis_rule {
	__u32 rule_id;
	__u8 action;     /* AEGIS_ACTION_*, or the kind's own values */
	__u8 prefix_len; /* CIDR length, to pick the most specific of two matches */
	__u8 _pad0[2];
};
_Static_assert(sizeof(struct aegis_rule) == 8, "aegis_rule size");

/*
 * Temporary ingress allow entries (API sessions), outside the generations so
 * a policy flip keeps them. prefixlen = 32 + 16 + 16 + CIDR length.
 */
struct aegis_session_key {
	__u32 prefixlen;
	__u32 ifindex;
	__u8 port[2]; /* big-endian destination port; 0 = any */
	__u8 family;
	__u8 _pad0;
	__u8 addr[16];
};
_Static_assert(sizeof(struct aegis_session_key) == 28, "aegis_session_key size");

struct aegis_session {
	__u64 expires_boot_ns;
	__u32 session_id;
	__u32 _pad0;
};
_Static_assert(sizeof(struct aegis_session) == 16, "aegis_session size");

/*
 * Per-rule decision counters (map rule_hits, per CPU): by generation, rule and
 * decision, cleared when a generation is staged again, so that a rule id always
 * counts for the rule of the generation that holds it.
 */
/*
 * rule_hits.decision beyond AEGIS_DECISION_*: a connect or sendmsg of a task in scope that a rule by name
 * allowed by a learned address (the per-name hits; its denials count as AEGIS_DECISION_DENY or _AUDIT).
 */
enum aegis_rule_hit { AEGIS_RULE_HIT_NAME_ALLOW = 2 };

struct aegis_rule_hit_key {
	__u32 rule_id;
	__u8 gen;
	__u8 decision; /* AEGIS_DECISION_*, or AEGIS_RULE_HIT_NAME_ALLOW */
	__u8 _pad0[2];
};
_Static_assert(sizeof(struct aegis_rule_hit_key) == 8, "aegis_rule_hit_key size");

/* Packets the XDP program saw (map xdp_stats, per CPU): by interface and verdict. */
struct aegis_xdp_stat_key {
	__u32 ifindex;
	__u32 action; /* XDP_DROP (1) or XDP_PASS (2) */
};
_Static_assert(sizeof(struct aegis_xdp_stat_key) == 8, "aegis_xdp_stat_key size");

/*
 * Packets the XDP program saw on one interface, by verdict (map xdp_slots, per CPU, indexed by ifindex %
 * AEGIS_XDP_STAT_SLOTS): an array slot costs the packet a few loads where a hash entry costs a hash of its
 * key. The first interface a CPU counts in a slot keeps it on that CPU; another whose index falls on the
 * same slot is counted in xdp_stats instead.
 */
struct aegis_xdp_slot {
	__u32 ifindex; /* 0: free */
	__u32 _pad0;
	__u64 dropped; /* XDP_DROP */
	__u64 passed;  /* XDP_PASS */
};
_Static_assert(sizeof(struct aegis_xdp_slot) == 24, "aegis_xdp_slot size");

/*
 * The interfaces XDP filters, by generation and slot (map ingress_ifaces, index gen * AEGIS_XDP_STAT_SLOTS +
 * ifindex % AEGIS_XDP_STAT_SLOTS), written with the generation: an array slot costs a packet a few loads where
 * the interface's AEGIS_RULE_IFACE entry costs a hash of its key. The first interface of a rule set on a slot
 * holds it; another on the same slot is found by its AEGIS_RULE_IFACE entry, which every interface has.
 */
struct aegis_iface_slot {
	__u32 ifindex; /* 0: none */
	__u32 _pad0;
	struct aegis_rule rule; /* as its AEGIS_RULE_IFACE entry */
};
_Static_assert(sizeof(struct aegis_iface_slot) == 16, "aegis_iface_slot size");

/*
 * Per-rule decision counters of ingress (deny, audit) and of the connects and sends a rule by name allowed
 * (AEGIS_RULE_HIT_NAME_ALLOW), in map rule_hit_slots (per CPU), beside rule_hits: the slot of (gen, decision,
 * rule_id % AEGIS_RULE_HIT_SLOTS) at index (gen * AEGIS_RULE_HIT_ROWS + decision) * AEGIS_RULE_HIT_SLOTS +
 * rule_id % AEGIS_RULE_HIT_SLOTS. An array slot costs a dropped packet or a connect a few loads where a
 * rule_hits entry costs a hash of its key. The first rule that counts in a slot on a CPU keeps it there; another whose id falls on the same
 * slot is counted in rule_hits instead. Cleared with rule_hits when a generation is staged again.
 */
struct aegis_rule_hit_slot {
	__u64 owner; /* AEGIS_RULE_HIT_OWNED | rule_id; 0: free */
	__u64 count;
};
_Static_assert(sizeof(struct aegis_rule_hit_slot) == 16, "aegis_rule_hit_slot size");

/* Entries of the statistics maps: rules that fired, (interface, verdict) pairs, and interface slots. */
enum aegis_stat_limits {
	AEGIS_RULE_HIT_ENTRIES = 65536,
	AEGIS_XDP_STAT_ENTRIES = 1024,
	AEGIS_XDP_STAT_SLOTS = 256,
	AEGIS_RULE_HIT_SLOTS = 256, /* per generation and decision */
	AEGIS_RULE_HIT_ROWS = 3,    /* decisions with slots: deny, audit, name allow (rule_hit_slots: 2 gens) */
};
#define AEGIS_RULE_HIT_OWNED (1ULL << 32)

struct aegis_rate_key {
	__u32 rule_id;
	__u32 who; /* pid, or the source address for ingress */
	__u32 gen; /* the generation whose rule id this is */
};
_Static_assert(sizeof(struct aegis_rate_key) == 12, "aegis_rate_key size");

/*
 * Rate limit state, changed only with atomic instructions. `window` is the
 * window index (boot ns >> AEGIS_RATE_WINDOW_SHIFT) in the high 32 bits and
 * the events emitted in it in the low 32, so that one compare-and-swap moves
 * both. The last suppressed decision's facts go into the summary event.
 */
struct aegis_rate {
	__u64 window;
	__u32 suppressed;
	__u32 pid;
	__u8 hook;
	__u8 decision;
	__u8 mode;
	__u8 _pad0[5];
};
_Static_assert(sizeof(struct aegis_rate) == 24, "aegis_rate size");

/*
 * An inode that replaced a denied one by rename (map `inherited`, keyed by
 * struct aegis_inode_key): it is denied as the inode it replaced (`src_*`)
 * is in the live generation, as long as its i_generation still matches (so a
 * reused inode number does not inherit).
 */
struct aegis_inode_key {
	__u64 ino;
	__u32 dev;
	__u32 _pad0;
};
_Static_assert(sizeof(struct aegis_inode_key) == 16, "aegis_inode_key size");

struct aegis_inherit {
	__u64 src_ino;
	__u32 src_dev;
	__u32 generation; /* i_generation of the inheriting inode */
	__u32 flags;      /* AEGIS_INHERIT_* */
	__u32 _pad0;
};
_Static_assert(sizeof(struct aegis_inherit) == 24, "aegis_inherit size");

/* struct aegis_inherit.flags */
enum aegis_inherit_flag {
	/* A trusted writer made the replace: the new inode also takes an exec.allow entry's allowance. */
	AEGIS_INHERIT_WRITER = 1,
};

/*
 * The learned-address table (map `learned`, an LRU hash outside the generations: a flip keeps it): an
 * address that a name some rule covers was resolved to, until `expires_boot_ns` (CLOCK_BOOTTIME), with the
 * pattern that covered the name when it was learned. Written by user space (names resolved at apply and
 * refreshed per TTL); an expired entry decides nothing.
 */
struct aegis_learned_key {
	__u32 family; /* AEGIS_FAMILY_IPV4 or _IPV6 */
	__u8 addr[16]; /* IPv4 in the first 4 bytes, the rest zero */
};
_Static_assert(sizeof(struct aegis_learned_key) == 20, "aegis_learned_key size");

struct aegis_learned {
	__u64 expires_boot_ns;
	__u64 host_key; /* the `a` of the rules of the most specific pattern covering the name learned */
	__u32 kind;     /* AEGIS_RULE_HOST (the name itself) or AEGIS_RULE_HOST_WILDCARD (the longest wildcard) */
	__u32 _pad0;
};
_Static_assert(sizeof(struct aegis_learned) == 24, "aegis_learned size");

/* Entries of the learned-address table (the oldest is evicted when it is full). */
enum aegis_learned_limits { AEGIS_LEARNED_ENTRIES = 65536 };

/*
 * Expiring exceptions (bpf/exception.bpf.h, `aegisbpf exception`): temporary allows that beat the policy's
 * deny for one match, outside the generations (a flip keeps them), each with its CLOCK_BOOTTIME expiry: an
 * expired entry decides nothing, with or without an agent. Map `exceptions` holds exec and file matches by
 * inode, map `exception_nets` egress destinations, map `exception_kinds` (one __u32) the kinds with entries:
 * a denied access asks the table only when its kind's bit is set.
 */
enum aegis_exception_kind {
	AEGIS_EXCEPTION_EXEC = 1,   /* an exec deny, exec.default deny or hash mismatch of the inode */
	AEGIS_EXCEPTION_FILE = 2,   /* a file rule's open, change or files.protect's write of the inode */
	AEGIS_EXCEPTION_EGRESS = 4, /* an egress deny (connect, sendmsg) of the destination */
};

enum aegis_exception_limits {
	AEGIS_EXCEPTION_ENTRIES = 4096,
	AEGIS_EXCEPTION_ID_MAX = 65535, /* exception numbers are 16 bits in an event */
};

struct aegis_exception_key {
	__u64 ino;
	__u32 dev;
	__u32 kind; /* AEGIS_EXCEPTION_EXEC or _FILE */
};
_Static_assert(sizeof(struct aegis_exception_key) == 16, "aegis_exception_key size");

/* prefixlen = 8 (family) + 8 + 16 (port) + CIDR length; port 0: every port. IPv4 in the first 4 bytes. */
struct aegis_exception_net_key {
	__u32 prefixlen;
	__u8 family; /* AEGIS_FAMILY_IPV4 or _IPV6 */
	__u8 _pad0;
	__u8 port[2]; /* big-endian */
	__u8 addr[16];
};
_Static_assert(sizeof(struct aegis_exception_net_key) == 24, "aegis_exception_net_key size");

struct aegis_exception {
	__u64 expires_boot_ns;
	__u64 cgroup_id;    /* 0: every task; else only tasks in this cgroup or below it */
	__u32 id;           /* the exception's number, reported in the events it lets through */
	__u32 cgroup_level; /* the cgroup's depth below the root: its ancestor id at this level is cgroup_id */
};
_Static_assert(sizeof(struct aegis_exception) == 24, "aegis_exception size");

/*
 * What learning from DNS answers counts (per-CPU array `dns_stats`, one __u64 per slot): addresses learned
 * (new ones, and ones already in the table refreshed), answers not learned from and why.
 */
enum aegis_dns_stat {
	AEGIS_DNS_LEARNED = 0,     /* addresses written into `learned` from answers */
	AEGIS_DNS_INSERTED = 1,    /* of them, addresses not in the table before (with the table's entries: evictions) */
	AEGIS_DNS_MALFORMED = 2,   /* answers cut short, truncated (TC), too large, or not parsable */
	AEGIS_DNS_UNSOLICITED = 3, /* answers to no query tracked (id, client port, server, question) */
	AEGIS_DNS_FOREIGN = 4,     /* answers from a server the scope's egress rules do not allow on port 53 */
	AEGIS_DNS_ANSWERS = 5,     /* answers parsed to the end */
	/* addresses new to the table that apply and the agent wrote (user space counts them, on CPU 0's slot) */
	AEGIS_DNS_USER_INSERTED = 6,
	AEGIS_DNS_STATS = 7,
};

/* Queries tracked while their answer is awaited (LRU), and the largest answer parsed. */
enum aegis_dns_limits { AEGIS_DNS_PENDING_ENTRIES = 8192, AEGIS_DNS_MESSAGE_MAX = 2048 };

/* One ring buffer record. */
struct aegis_event {
	__u64 ts_boot_ns; /* bpf_ktime_get_boot_ns() */
	__u64 cgroup_id;
	__u64 ino;
	__u32 dev;
	__u32 pid;
	__u32 ppid;
	__u32 uid; /* effective */
	__u32 gid; /* effective */
	__u32 rule_id;
	__u32 count; /* decisions this record stands for: 1 + suppressed before it, or a summary's total */
	__u32 ifindex;
	__u16 dport; /* host order */
	__u16 sport; /* host order */
	__u8 hook;     /* AEGIS_HOOK_* */
	__u8 decision; /* AEGIS_DECISION_* */
	__u8 mode;     /* AEGIS_MODE_* in force when decided */
	__u8 family;   /* AEGIS_FAMILY_* or 0 */
	__u8 protocol; /* IPPROTO_* or 0 */
	__u8 gen;      /* rule generation that decided: names the policy the rule id belongs to */
	__u8 flags;    /* AEGIS_EVENT_* */
	__u8 signal;   /* AEGIS_SIGNAL_* the kernel sent to the task it denied, 0 when none */
	__u8 op;       /* what the task tried, for hooks that judge several operations (file.change, ...); else 0 */
	__u8 _pad0;
	__u16 exception; /* the expiring exception (bpf/exception.bpf.h) that let a denied access through, else 0 */
	__u8 daddr[16];
	__u8 saddr[16];
	char comm[AEGIS_COMM_LEN];
};
_Static_assert(sizeof(struct aegis_event) == 120, "aegis_event size");

/*
 * Network bypasses (net_guard.bpf.h): one record of the connection sweep, written by the socket
 * iterators to their seq_file for each TCP or connected UDP socket whose destination the active rules
 * deny, in scope.
 */
struct aegis_conn {
	__u64 cgroup_id;
	__u32 rule_id;
	__u32 uid;    /* the socket's owner */
	__u16 dport;  /* host order */
	__u16 sport;  /* host order */
	__u8 family;  /* AEGIS_FAMILY_*: the view of the address that was denied */
	__u8 protocol;
	__u8 closed;  /* 1: bpf_sock_destroy closed it (6.5+, enforce) */
	__u8 gen;
	__u8 daddr[16];
	__u8 saddr[16];
};
_Static_assert(sizeof(struct aegis_conn) == 56, "aegis_conn size");

#endif /* AEGIS_H */
