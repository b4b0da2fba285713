/**
 * The enums of bpf/aegis.h, the one source of kernel constants on this side. Names are the C names
 * without their enum's prefix; `constants_test.ts` checks every value against the object's BTF, so a
 * change on either side fails the unit suite.
 */

export const LAYOUT = { VERSION: 22 } as const;

export const MODE = { AUDIT: 0, ENFORCE: 1 } as const;

export const DECISION = { DENY: 0, AUDIT: 1 } as const;
/** rule_hits' decision beyond DECISION: an allow by a rule by name, by a learned address (name_guard.bpf.h). */
export const RULE_HIT = { NAME_ALLOW: 2 } as const;

export const ACTION = { DENY: 0, ALLOW: 1 } as const;

export const HOOK = {
  FILE_OPEN: 0,
  EXEC: 1,
  CONNECT: 2,
  SENDMSG: 3,
  BIND: 4,
  INGRESS: 5,
  // file guard
  SCOPE: 6,
  // network bypasses
  PACKET: 7,
  SOCKET: 8,
  // second round of bypasses
  PTRACE: 9,
  FILE_CHANGE: 10,
  ROUTE: 11,
  FORWARD: 12,
  // files.protect
  FILE_WRITE: 13,
  // rules that name programs: a task changing the executable it is known by
  IDENTITY: 14,
  COUNT: 15,
} as const;

export const COUNTER = { EVENTS_LOST: 30, EVENTS_SUPPRESSED: 31, SLOTS: 32 } as const;

export const FAMILY = { IPV4: 4, IPV6: 6, PACKET: 17, XDP: 44 } as const;

export const SCOPE = { INCLUDE: 1, EXEMPT: 2 } as const;

export const USER_PORTS = { DENIED: 0, ALLOWED: 1 } as const;

export const RATE = { WINDOW_SHIFT: 30, BURST: 8 } as const;

export const EVENT = { SUMMARY: 1, SRCROUTE: 2, RTHDR: 4, EXE: 8 } as const;

export const BREAK_GLASS = { OFF: 0, ON: 1 } as const;

export const SIZES = { COMM_LEN: 16 } as const;

export const CFG = {
  ACTIVE_GEN: 0,
  FORCE_AUDIT: 1,
  BREAK_GLASS: 2,
  DEADMAN: 3,
  LAYOUT: 4,
  ENFORCE_SIGNAL: 5,
  INHERITED: 6,
  WORDS: 7,
} as const;

export const RULE = {
  FILE: 1,
  EXEC: 2,
  SCOPE: 3,
  USER_UID: 4,
  USER_GID: 5,
  USER_UID_PORT: 6,
  USER_GID_PORT: 7,
  BIND: 8,
  FAILSAFE: 9,
  IFACE: 10,
  NAT64_PREFIX: 16,
  DENY_PACKET_SOCKETS: 17,
  ROUTE_GUARD: 18,
  FORWARDED: 19,
  // file guard switches
  MEMFD_EXEC: 32,
  SCOPE_GUARD: 33,
  PTRACE_GUARD: 34,
  // files.protect
  PROTECT: 40,
  PROTECT_ON: 41,
  // files.writers, and the i_generation of allowed and protected inodes
  WRITER: 42,
  WRITERS: 43,
  INODE_GEN: 44,
  // the exec allowlist
  EXEC_DEFAULT_DENY: 48,
  EXEC_ALLOW: 49,
  EXEC_STAMP: 50,
  // subjects (bpf/task_subject.bpf.h)
  SUBJECT: 56,
  SUBJECT_TREE: 57,
  IDENTITY_GUARD: 59,
  // egress rules by host name (bpf/name_guard.bpf.h)
  HOST: 60,
  HOST_WILDCARD: 61,
  // names learned from DNS answers (bpf/dns_learn.bpf.h); then rules by name that name a program
  HOST_PATTERN: 62,
  HOST_SUBJECT: 64,
  HOST_SUBJECT_RULE: 65,
} as const;

/** The learned-address table's capacity (bpf/name_guard.bpf.h). */
export const LEARNED_LIMITS = { LEARNED_ENTRIES: 65536 } as const;

/** What learning from DNS answers counts: the slots of the per-CPU array `dns_stats` (bpf/dns_learn.bpf.h). */
export const DNS_STAT = {
  LEARNED: 0,
  INSERTED: 1,
  MALFORMED: 2,
  UNSOLICITED: 3,
  FOREIGN: 4,
  ANSWERS: 5,
  USER_INSERTED: 6,
} as const;
/** The number of `dns_stats` slots. */
export const DNS_STATS = 7;

/** Queries tracked awaiting their answer, and the largest answer learned from (bpf/dns_learn.bpf.h). */
export const DNS_LIMITS = { DNS_PENDING_ENTRIES: 8192, DNS_MESSAGE_MAX: 2048 } as const;

/**
 * The subject switch's bits, a subject entry's (NO_*: what rules it has none of; on the switch, the rules naming
 * no program) and the limits of subjects (bpf/task_subject.bpf.h).
 */
export const SUBJECTS = {
  TREE: 1,
  NO_NET: 2,
  NO_NAMES: 4,
  NO_USERS: 8,
  PAIR_NO_PORT: 16,
  PAIR_NO_PROTOCOL: 32,
  PAIR_NO_ANY: 64,
  ON: 128,
  DEPTH: 16,
  SLOTS: 4,
  MAX: 65535,
  NET_SHIFT: 16,
} as const;

/** What an EXEC_ALLOW entry allows (its value's action): any content of the inode, or the content hashed. */
export const EXEC_ALLOW = { INODE: 1, HASHED: 2, PACKAGED: 3 } as const;

/** struct aegis_inherit.flags: how an inode came to inherit a rule by rename. */
export const INHERIT_FLAG = { WRITER: 1 } as const;

/** Why an exec event's file was refused (the event's `op` byte). */
export const EXEC_REASON = { DENIED: 0, UNTRUSTED: 1, HASH_MISMATCH: 2 } as const;

/** What a file.change or file.write event's task tried (the event's `op` byte). */
export const FILE_OP = {
  TRUNCATE: 1,
  UNLINK: 2,
  RENAME: 3,
  LINK: 4,
  CHMOD: 5,
  CHOWN: 6,
  UTIMES: 7,
  SETATTR: 8,
  SETXATTR: 9,
  REMOVEXATTR: 10,
  // files.protect only
  OPEN_WRITE: 11,
  CREATE: 12,
  MKDIR: 13,
  SYMLINK: 14,
  MKNOD: 15,
  RMDIR: 16,
  MOUNT: 17,
} as const;

/**
 * Which program sets are pinned from the recorded build (bits of the `aegis_build` map's `programs` word):
 * a plane loads the sets of its areas (lib/kernel/load.ts PROGRAM_SETS), a walk of connections its
 * iterators (lib/kernel/connections.ts); LSM_REFUSED is not a set but what the kernel said of BPF-LSM.
 */
export const BUILD_PROGRAMS = {
  FILE_LSM: 1,
  FILE_AUDIT: 2,
  LSM_REFUSED: 4,
  SWEEP: 8,
  LIST: 16,
  EXEC_LSM: 32,
  EXEC_AUDIT: 64,
  RENAME_LSM: 128,
  GUARDS_LSM: 256,
  EGRESS: 512,
  EGRESS_LSM: 1024,
  EGRESS_AUDIT: 2048,
  BIND: 4096,
  BIND_LSM: 8192,
  INGRESS: 16384,
  FORWARD: 32768,
  IDENTITY_AUDIT: 262144,
} as const;

/** Signals the kill-on-deny word may hold. */
export const SIGNAL = { NONE: 0, KILL: 9, TERM: 15 } as const;

export const INHERITED = { ENTRIES: 65536 } as const;

/**
 * Entries of the statistics maps `rule_hits`, `xdp_stats` and `xdp_slots`, and slots of `rule_hit_slots` per
 * generation and decision.
 */
export const STAT_LIMITS = {
  RULE_HIT_ENTRIES: 65536,
  XDP_STAT_ENTRIES: 1024,
  XDP_STAT_SLOTS: 256,
  RULE_HIT_SLOTS: 256,
  RULE_HIT_ROWS: 3,
} as const;

/** What a trusted writer may change (its AEGIS_RULE_WRITER entry's action bits). */
export const WRITER_SCOPE = { PROTECTED: 1, ALLOWED: 2 } as const;

/** What a process.identity event's task tried (the event's `op` byte: prctl's own PR_SET_MM_* number). */
export const IDENTITY_OP = { EXE_FILE: 13, MM_MAP: 14 } as const;

/** What a process.ptrace event's tracer tried (the event's `op` byte). */
export const PTRACE_OP = {
  ATTACH: 1,
  TRACEME: 2,
  VM_READ: 3,
  VM_WRITE: 4,
  PROC_OPEN: 5,
  PIDFD_GETFD: 6,
  OTHER: 7,
} as const;

/** Kinds of expiring exception (bits of map exception_kinds). */
export const EXCEPTION_KIND = { EXEC: 1, FILE: 2, EGRESS: 4 } as const;

export const EXCEPTION_LIMITS = { EXCEPTION_ENTRIES: 4096, EXCEPTION_ID_MAX: 65535 } as const;

export const NET = { EGRESS_PORT: 1, EGRESS_ANY: 2, INGRESS_PORT: 3, INGRESS_ANY: 4 } as const;

/** Bits of gen_info.ingress_absent: shapes of ingress rule a generation's trie has none of (XDP skips them). */
export const INGRESS_ABSENT = { NO_PORT: 1, NO_PROTOCOL: 2, NO_ANY: 4 } as const;

/**
 * gen_info.host_rules: HOST_ANY with rules by name, HOST_EXACT when a pattern is an exact name, bit n when a
 * wildcard's domain has n labels (2 to 8), and the SUBJECTS.PAIR_NO_* levels the rules by name naming no
 * program have none of, shifted by HOST_LEVELS_SHIFT.
 */
export const HOST_SHAPE = { HOST_LEVELS_SHIFT: 16, HOST_EXACT: 0x10000, HOST_ANY: 0x40000000 } as const;

export const CAPACITY = { RULES: 1 << 20, NET_RULES: 1 << 21 } as const;

/** Every enum of bpf/aegis.h: C enum name → (C prefix, values). */
export const KERNEL_ENUMS = {
  aegis_layout: { prefix: "AEGIS_LAYOUT_", values: LAYOUT },
  aegis_mode: { prefix: "AEGIS_MODE_", values: MODE },
  aegis_decision: { prefix: "AEGIS_DECISION_", values: DECISION },
  aegis_action: { prefix: "AEGIS_ACTION_", values: ACTION },
  aegis_hook: { prefix: "AEGIS_HOOK_", values: HOOK },
  aegis_counter: { prefix: "AEGIS_COUNTER_", values: COUNTER },
  aegis_family: { prefix: "AEGIS_FAMILY_", values: FAMILY },
  aegis_scope: { prefix: "AEGIS_SCOPE_", values: SCOPE },
  aegis_user_ports: { prefix: "AEGIS_USER_PORTS_", values: USER_PORTS },
  aegis_rate_limit: { prefix: "AEGIS_RATE_", values: RATE },
  aegis_event_flag: { prefix: "AEGIS_EVENT_", values: EVENT },
  aegis_break_glass: { prefix: "AEGIS_BREAK_GLASS_", values: BREAK_GLASS },
  aegis_sizes: { prefix: "AEGIS_", values: SIZES },
  aegis_cfg_word: { prefix: "AEGIS_CFG_", values: CFG },
  aegis_rule_kind: { prefix: "AEGIS_RULE_", values: RULE },
  aegis_net_space: { prefix: "AEGIS_NET_", values: NET },
  aegis_ingress_absent: { prefix: "AEGIS_INGRESS_", values: INGRESS_ABSENT },
  aegis_host_shape: { prefix: "AEGIS_", values: HOST_SHAPE },
  aegis_capacity: { prefix: "AEGIS_CAPACITY_", values: CAPACITY },
  aegis_signal: { prefix: "AEGIS_SIGNAL_", values: SIGNAL },
  aegis_inherit_limits: { prefix: "AEGIS_INHERITED_", values: INHERITED },
  aegis_inherit_flag: { prefix: "AEGIS_INHERIT_", values: INHERIT_FLAG },
  aegis_stat_limits: { prefix: "AEGIS_", values: STAT_LIMITS },
  aegis_ptrace_op: { prefix: "AEGIS_PTRACE_OP_", values: PTRACE_OP },
  aegis_file_op: { prefix: "AEGIS_FILE_OP_", values: FILE_OP },
  aegis_exec_allow: { prefix: "AEGIS_EXEC_ALLOW_", values: EXEC_ALLOW },
  aegis_exec_reason: { prefix: "AEGIS_EXEC_", values: EXEC_REASON },
  aegis_build_programs: { prefix: "AEGIS_BUILD_", values: BUILD_PROGRAMS },
  aegis_subjects: { prefix: "AEGIS_SUBJECT_", values: SUBJECTS },
  aegis_identity_op: { prefix: "AEGIS_IDENTITY_OP_", values: IDENTITY_OP },
  aegis_writer_scope: { prefix: "AEGIS_WRITER_", values: WRITER_SCOPE },
  aegis_learned_limits: { prefix: "AEGIS_", values: LEARNED_LIMITS },
  aegis_exception_kind: { prefix: "AEGIS_EXCEPTION_", values: EXCEPTION_KIND },
  aegis_exception_limits: { prefix: "AEGIS_", values: EXCEPTION_LIMITS },
  aegis_dns_stat: { prefix: "AEGIS_DNS_", values: { ...DNS_STAT, STATS: DNS_STATS } },
  aegis_dns_limits: { prefix: "AEGIS_", values: DNS_LIMITS },
  aegis_rule_hit: { prefix: "AEGIS_RULE_HIT_", values: RULE_HIT },
} as const;

/** Event types by hook number: the product's names for AEGIS_HOOK_*. */
export const HOOK_EVENT_TYPES = [
  "file.open",
  "exec",
  "net.connect",
  "net.sendmsg",
  "net.bind",
  "net.ingress",
  "scope.escape",
  "net.packet",
  "net.socket",
  "process.ptrace",
  "file.change",
  "net.route",
  "net.forward",
  "file.write",
  "process.identity",
] as const;

/** Hook names as counters and metrics label them, by hook number. */
export const HOOK_NAMES = [
  "file_open",
  "exec",
  "connect",
  "sendmsg",
  "bind",
  "ingress",
  "scope",
  "packet",
  "socket",
  "ptrace",
  "file_change",
  "route",
  "forward",
  "file_write",
  "identity",
] as const;
