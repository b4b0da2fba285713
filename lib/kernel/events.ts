import {
  type AddressWords,
  addressWords,
  AEGIS_EVENT,
  bootTimeNs,
  DECISION,
  decodeEventAt,
  EVENT,
  EXEC_REASON,
  FAMILY,
  FILE_OP,
  HOOK,
  HOOK_EVENT_TYPES,
  IDENTITY_OP,
  MODE,
  PTRACE_OP,
  type RawEvent,
  SIGNAL,
} from "../../ffi/mod.ts";
import { RingBuffer, type RingBufferMap, RingWaiter } from "../../ffi/ring_buffer.ts";
import type { RuleInfo } from "../policy/plan.ts";
import type { RuleTable } from "../policy/rule_table.ts";

/** Event types by hook number: the product's names of AEGIS_HOOK_*. */
export const EVENT_TYPES = HOOK_EVENT_TYPES;
export type KernelEventType = typeof EVENT_TYPES[number];

export type PolicyRef = { name: string; version: number; sha256: string };

/** The process of an event; a summary names only the pid of its last suppressed decision. */
export type EventProcess = {
  pid: number;
  ppid: number;
  uid: number;
  gid: number;
  comm: string;
  cgroup: { id: number; path?: string };
  /**
   * The program the kernel judged (the inode of the task's executable): on network events of a policy
   * whose rules name programs (`exe`). `path` only in lines written by hand for explain and simulate.
   */
  exe?: { dev: number; ino: number; path?: string };
};

/**
 * An event as SPEC section 6 prints it, plus two fields of this implementation:
 * - `summary: true` marks a record that stands for `count` decisions the rate limit suppressed in a window
 *   that ended with no later event to carry them (AEGIS_EVENT_SUMMARY). The kernel keeps only the pid,
 *   hook, decision, mode and rule of those decisions, so a summary has `process: {pid}` (none for ingress)
 *   and no `file` or `net`.
 * - `unresolved` says why `rule` is a number (`#N`) instead of an id: "generation" when the rule table of
 *   the generation that decided is not known here (never another generation's table), "rule" when that
 *   table has no such rule.
 */
export type AegisEvent = {
  ts: string;
  host: string;
  type: KernelEventType;
  decision: "deny" | "audit";
  mode: "enforce" | "audit";
  rule: string;
  unresolved?: "generation" | "rule";
  policy?: PolicyRef;
  /** The program the deciding rule names (its `exe`), when it names one. */
  subject?: string;
  /** The host name the deciding rule names (its `host`), when it decided by name. */
  hostName?: string;
  /** The deciding rule's `tags` (e.g. MITRE ATT&CK techniques), when it has some. */
  tags?: string[];
  process?: EventProcess | { pid: number };
  /**
   * `name`: the file's name in its directory (at most 31 bytes), for an exec no rule names the file of
   * (reason `untrusted`, `hash-mismatch`): find it with `find / -xdev -inum INO`.
   */
  file?: { path?: string; name?: string; dev: number; ino: number };
  /** exec: why it was refused (an exec.deny rule, not in exec.allow's set, a sha256 entry's file changed). */
  reason?: ExecReason;
  net?: {
    /**
     * "packet" and "xdp" only for net.socket (an AF_PACKET or AF_XDP socket refused): no address, protocol
     * the socket type, "raw", "dgram" or "packet" (socket(AF_INET, SOCK_PACKET)).
     */
    family: "ipv4" | "ipv6" | "packet" | "xdp";
    protocol: string;
    daddr?: string;
    dport?: number;
    saddr?: string;
    sport?: number;
    interface?: string;
    /** The packet or socket option carried a route: an IPv4 source route (LSRR/SSRR) or an IPv6 routing header. */
    route?: "srcroute" | "rthdr";
    /** net.forward: the interface the forwarded packet came in on (`interface`: the one it leaves by). */
    inInterface?: string;
  };
  /** scope.escape: the cgroup a task in scope was refused to move (a task) to. */
  move?: { to: { id: number; path?: string } };
  /** process.ptrace: what the tracer (`process`) tried on which task, outside the scope or exempt. */
  ptrace?: { op: PtraceOp; target: { pid: number; cgroup: { id: number; path?: string } } };
  /**
   * file.change: what the task tried on the denied file; file.write: on the protected inode (for an entry
   * change in a protected directory, `file` is the directory); process.identity: the prctl(PR_SET_MM)
   * operation that would have changed the task's executable (`process.exe` is the one it runs).
   */
  op?: FileChangeOp | FileWriteOp | IdentityOp;
  /** The signal sent to the denied task (kill on deny), and who sent it. */
  signal?: { name: SignalName; by: "kernel" | "agent" };
  /** The expiring exception (`aegisbpf exception list`) that let this denied access through. */
  exception?: number;
  count: number;
  summary?: true;
};

export type SignalName = "SIGTERM" | "SIGKILL";

/** process.ptrace operations by AEGIS_PTRACE_OP_* number. */
export const PTRACE_OPS = {
  [PTRACE_OP.ATTACH]: "attach",
  [PTRACE_OP.TRACEME]: "traceme",
  [PTRACE_OP.VM_READ]: "vm_readv",
  [PTRACE_OP.VM_WRITE]: "vm_writev",
  [PTRACE_OP.PROC_OPEN]: "proc_open",
  [PTRACE_OP.PIDFD_GETFD]: "pidfd_getfd",
  [PTRACE_OP.OTHER]: "other",
} as const;
export type PtraceOp = typeof PTRACE_OPS[keyof typeof PTRACE_OPS];
/** process.identity operations by prctl's PR_SET_MM_* number (AEGIS_IDENTITY_OP_*). */
export const IDENTITY_OPS = {
  [IDENTITY_OP.EXE_FILE]: "set_mm_exe_file",
  [IDENTITY_OP.MM_MAP]: "set_mm_map",
} as const;
export type IdentityOp = typeof IDENTITY_OPS[keyof typeof IDENTITY_OPS];
/** What a file.change event's task tried, by the kernel's AEGIS_FILE_OP_* number. */
export const FILE_CHANGE_OPS = {
  [FILE_OP.TRUNCATE]: "truncate",
  [FILE_OP.UNLINK]: "unlink",
  [FILE_OP.RENAME]: "rename",
  [FILE_OP.LINK]: "link",
  [FILE_OP.CHMOD]: "chmod",
  [FILE_OP.CHOWN]: "chown",
  [FILE_OP.UTIMES]: "utimes",
  [FILE_OP.SETATTR]: "setattr",
  [FILE_OP.SETXATTR]: "setxattr",
  [FILE_OP.REMOVEXATTR]: "removexattr",
} as const;
export type FileChangeOp = typeof FILE_CHANGE_OPS[keyof typeof FILE_CHANGE_OPS];
/** Why an exec was refused, by the kernel's AEGIS_EXEC_* number (the exec event's `op` byte). */
export const EXEC_REASONS = {
  [EXEC_REASON.DENIED]: "denied",
  [EXEC_REASON.UNTRUSTED]: "untrusted",
  [EXEC_REASON.HASH_MISMATCH]: "hash-mismatch",
} as const;
export type ExecReason = typeof EXEC_REASONS[keyof typeof EXEC_REASONS];
/**
 * What a file.write event's task tried on a protected inode, by AEGIS_FILE_OP_* number: attribute changes
 * (mode, owner, times) are one `setattr`, new entries of every kind (file, directory, symlink, node) one
 * `create`, and a removed directory an `unlink`.
 */
export const FILE_WRITE_OPS = {
  [FILE_OP.OPEN_WRITE]: "open-write",
  [FILE_OP.TRUNCATE]: "truncate",
  [FILE_OP.UNLINK]: "unlink",
  [FILE_OP.RMDIR]: "unlink",
  [FILE_OP.RENAME]: "rename",
  [FILE_OP.LINK]: "link",
  [FILE_OP.CHMOD]: "setattr",
  [FILE_OP.CHOWN]: "setattr",
  [FILE_OP.UTIMES]: "setattr",
  [FILE_OP.SETATTR]: "setattr",
  [FILE_OP.SETXATTR]: "setxattr",
  [FILE_OP.REMOVEXATTR]: "removexattr",
  [FILE_OP.CREATE]: "create",
  [FILE_OP.MKDIR]: "create",
  [FILE_OP.SYMLINK]: "create",
  [FILE_OP.MKNOD]: "create",
  [FILE_OP.MOUNT]: "mount",
} as const;
export type FileWriteOp = typeof FILE_WRITE_OPS[keyof typeof FILE_WRITE_OPS];

/** Signal names by number, of the signals kill on deny sends. */
export const SIGNAL_NAMES: Readonly<Record<number, SignalName>> = {
  [SIGNAL.TERM]: "SIGTERM",
  [SIGNAL.KILL]: "SIGKILL",
};

/** What one rule generation holds: the rule table (by rule id) and the policy of the apply that wrote it. */
export type GenerationTable = { rules: RuleTable; policy?: PolicyRef };

export type EventContext = {
  host: string;
  /** By generation (0 and 1); undefined when this process does not know what the generation holds. */
  generations: readonly [GenerationTable | undefined, GenerationTable | undefined];
  /** Wall-clock ns minus CLOCK_BOOTTIME ns, to date kernel timestamps. */
  bootToWallNs: bigint;
  /** The path of a cgroup id (ids of cgroup v2 on 64-bit kernels are well below 2^53). */
  cgroupPath?: (id: number) => string | undefined;
  interfaceName?: (ifindex: number) => string | undefined;
};

/** A record whose values this version does not know: reported with the raw values, never guessed. */
export class EventDecodeError extends RangeError {
  override name = "EventDecodeError";
  /** The field whose value is unknown, in RawEvent's names. */
  readonly field: string;
  readonly raw: {
    hook: number;
    decision: number;
    mode: number;
    family: number;
    gen: number;
    flags: number;
    signal: number;
    ruleId: number;
  };

  constructor(field: string, raw: RawEvent) {
    const value = (raw as unknown as Record<string, number>)[field];
    super(`Unknown ${field} ${value} in event record: hook ${raw.hook}, rule ${raw.ruleId}, gen ${raw.gen}`);
    this.field = field;
    this.raw = {
      hook: raw.hook,
      decision: raw.decision,
      mode: raw.mode,
      family: raw.family,
      gen: raw.gen,
      flags: raw.flags,
      signal: raw.signal,
      ruleId: raw.ruleId,
    };
  }
}

/** Wall-clock minus boot-clock offset, measured now. */
export function bootToWallOffsetNs(): bigint {
  const wall = BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e6));
  return wall - bootTimeNs();
}

const NS_PER_S = 1_000_000_000;

/** The boot-to-wall offset as whole seconds and nanoseconds, converted once per offset. */
let offsetKey: bigint | undefined;
let offsetSeconds = 0;
let offsetNanos = 0;
/** The "YYYY-MM-DDTHH:MM:SS." of the last second formatted: a flood stays in one second for a while. */
let secondsKey = -1;
let secondsText = "";

/** What bootWallTime answers: one object, overwritten by each call. */
const wallTime = { seconds: 0, nanos: 0 };

/**
 * Unix seconds and nanoseconds of boot-clock ns (as high and low 32-bit halves) plus `offsetNs`, with
 * integer math only: 2^32 ns = 4 s + 294,967,296 ns and 2^48 ns = 281,474 s + 976,710,656 ns keep every
 * partial sum below 2^53. The object returned is the same at each call (read it before the next).
 */
export function bootWallTime(
  hi: number,
  lo: number,
  offsetNs: bigint,
): Readonly<{ seconds: number; nanos: number }> {
  if (offsetNs !== offsetKey) {
    offsetKey = offsetNs;
    const seconds = offsetNs / 1_000_000_000n - (offsetNs < 0n && offsetNs % 1_000_000_000n !== 0n ? 1n : 0n);
    offsetSeconds = Number(seconds);
    offsetNanos = Number(offsetNs - seconds * 1_000_000_000n);
  }
  const high = Math.floor(hi / 65536), low = hi % 65536;
  const rest = high * 976_710_656 + low * 294_967_296 + lo + offsetNanos;
  const restSeconds = Math.floor(rest / NS_PER_S);
  wallTime.seconds = high * 281_474 + low * 4 + restSeconds + offsetSeconds;
  wallTime.nanos = rest - restSeconds * NS_PER_S;
  return wallTime;
}

/** "YYYY-MM-DDTHH:MM:SS." of Unix seconds: what an RFC 3339 timestamp of them holds before the fraction. */
export function rfc3339Seconds(seconds: number): string {
  if (seconds !== secondsKey) {
    secondsKey = seconds;
    secondsText = new Date(seconds * 1000).toISOString().slice(0, 20);
  }
  return secondsText;
}

/** RFC 3339 UTC with nanoseconds of boot-clock ns (as high and low 32-bit halves) plus `offsetNs`. */
export function rfc3339FromBoot(hi: number, lo: number, offsetNs: bigint): string {
  const { seconds, nanos } = bootWallTime(hi, lo, offsetNs);
  return `${rfc3339Seconds(seconds)}${String(NS_PER_S + nanos).slice(1)}Z`;
}

/** RFC 3339 UTC with exactly nine fraction digits of Unix-epoch nanoseconds. */
export function rfc3339Nanos(epochNs: bigint): string {
  return rfc3339FromBoot(Number(epochNs >> 32n), Number(epochNs & 0xffff_ffffn), 0n);
}

/** Protocol names by IP protocol number; another number is written as its digits. */
export const PROTOCOLS: Readonly<Record<number, string>> = {
  1: "icmp",
  6: "tcp",
  17: "udp",
  33: "dccp",
  58: "icmpv6",
  132: "sctp",
  136: "udplite",
  255: "raw",
};

const SOCKET_TYPES: Readonly<Record<number, string>> = { 2: "dgram", 3: "raw", 10: "packet" };

/** Hooks whose events carry `net`. */
export const NETWORK_HOOKS: ReadonlySet<number> = new Set([
  HOOK.CONNECT,
  HOOK.SENDMSG,
  HOOK.BIND,
  HOOK.INGRESS,
  HOOK.PACKET,
  HOOK.SOCKET,
  HOOK.ROUTE,
  HOOK.FORWARD,
]);
/** Hooks that decide without a task: a packet arriving or being forwarded. */
export const PACKET_HOOKS: ReadonlySet<number> = new Set([HOOK.INGRESS, HOOK.FORWARD]);
/** The record flags this version knows: any other is an EventDecodeError. */
export const KNOWN_FLAGS = EVENT.SUMMARY | EVENT.SRCROUTE | EVENT.RTHDR | EVENT.EXE;

/**
 * Turns a kernel record into the SPEC event. Pure: everything it needs is in `context`. A value this
 * version does not know (hook, decision, mode, family of a network event, generation, flag) throws an
 * EventDecodeError.
 */
export function formatEvent(raw: RawEvent, context: EventContext): AegisEvent {
  const type = EVENT_TYPES[raw.hook];
  if (type === undefined || raw.hook >= HOOK.COUNT) throw new EventDecodeError("hook", raw);
  if (raw.decision !== DECISION.DENY && raw.decision !== DECISION.AUDIT) {
    throw new EventDecodeError("decision", raw);
  }
  if (raw.mode !== MODE.ENFORCE && raw.mode !== MODE.AUDIT) throw new EventDecodeError("mode", raw);
  if (raw.gen !== 0 && raw.gen !== 1) throw new EventDecodeError("gen", raw);
  if ((raw.flags & ~KNOWN_FLAGS) !== 0) throw new EventDecodeError("flags", raw);
  const summary = (raw.flags & EVENT.SUMMARY) !== 0;
  if (raw.signal !== 0 && SIGNAL_NAMES[raw.signal] === undefined) throw new EventDecodeError("signal", raw);
  const network = NETWORK_HOOKS.has(raw.hook);
  const families: readonly number[] = raw.hook === HOOK.SOCKET
    ? [FAMILY.PACKET, FAMILY.XDP]
    : [FAMILY.IPV4, FAMILY.IPV6];
  if (network && !summary && !families.includes(raw.family)) {
    throw new EventDecodeError("family", raw);
  }

  const table = context.generations[raw.gen];
  const rule = table?.rules.get(raw.ruleId);
  const event: AegisEvent = {
    ts: rfc3339FromBoot(raw.tsHi, raw.tsLo, context.bootToWallNs),
    host: context.host,
    type,
    decision: raw.decision === DECISION.DENY ? "deny" : "audit",
    mode: raw.mode === MODE.ENFORCE ? "enforce" : "audit",
    rule: rule?.id ?? `#${raw.ruleId}`,
  } as AegisEvent;
  if (rule === undefined) event.unresolved = table === undefined ? "generation" : "rule";
  if (table?.policy) event.policy = table.policy;
  if (rule?.exe !== undefined) event.subject = rule.exe;
  if (rule?.host !== undefined) event.hostName = rule.host;
  if (rule?.tags !== undefined) event.tags = rule.tags;
  if (summary) {
    if (!PACKET_HOOKS.has(raw.hook)) event.process = { pid: raw.pid };
  } else {
    if (!PACKET_HOOKS.has(raw.hook)) {
      event.process = processOf(raw, context, network || raw.hook === HOOK.IDENTITY);
    }
    if (network) event.net = netOf(raw, type, context);
    else if (raw.hook === HOOK.SCOPE) event.move = moveOf(raw, context);
    else if (raw.hook === HOOK.PTRACE) event.ptrace = ptraceOf(raw, context);
    else if (raw.hook === HOOK.IDENTITY) event.op = fileOp(IDENTITY_OPS, raw);
    else event.file = fileOf(raw, rule);
    if (raw.hook === HOOK.FILE_CHANGE) event.op = fileOp(FILE_CHANGE_OPS, raw);
    if (raw.hook === HOOK.FILE_WRITE) event.op = fileOp(FILE_WRITE_OPS, raw);
    if (raw.hook === HOOK.EXEC) event.reason = execReason(raw);
  }
  const signal = SIGNAL_NAMES[raw.signal];
  if (signal) event.signal = { name: signal, by: "kernel" };
  if (raw.exception !== 0) event.exception = raw.exception;
  event.count = raw.count;
  if (summary) event.summary = true;
  return event;
}

function processOf(raw: RawEvent, context: EventContext, network: boolean): EventProcess {
  const id = raw.cgroupIdHi * 2 ** 32 + raw.cgroupIdLo;
  const path = context.cgroupPath?.(id);
  const process: EventProcess = {
    pid: raw.pid,
    ppid: raw.ppid,
    uid: raw.uid,
    gid: raw.gid,
    comm: raw.comm,
    cgroup: path === undefined ? { id } : { id, path },
  };
  // A network (or identity) record's inode fields are the program's where the kernel says so (under rules
  // naming programs).
  if (network && (raw.flags & EVENT.EXE) !== 0) {
    process.exe = { dev: raw.dev, ino: raw.inoHi * 2 ** 32 + raw.inoLo };
  }
  return process;
}

function fileOp<T extends string>(ops: Readonly<Record<number, T>>, raw: RawEvent): T {
  const op = ops[raw.op];
  if (op === undefined) throw new EventDecodeError("op", raw);
  return op;
}

function execReason(raw: RawEvent): ExecReason {
  const reason = (EXEC_REASONS as Readonly<Record<number, ExecReason>>)[raw.op];
  if (reason === undefined) throw new EventDecodeError("op", raw);
  return reason;
}

function fileOf(raw: RawEvent, rule: RuleInfo | undefined): NonNullable<AegisEvent["file"]> {
  const ino = raw.inoHi * 2 ** 32 + raw.inoLo;
  const name = raw.hook === HOOK.EXEC && raw.op !== EXEC_REASON.DENIED ? execFileName(raw) : undefined;
  const file: NonNullable<AegisEvent["file"]> = rule?.path ? { path: rule.path, dev: raw.dev, ino } : {
    dev: raw.dev,
    ino,
  };
  return name === undefined ? file : { ...rule?.path && { path: rule.path }, name, dev: raw.dev, ino };
}

const NAME_DECODER = new TextDecoder();

/** The name an untrusted exec's record carries in its address bytes (daddr, then saddr), up to its NUL. */
export function execFileName(raw: RawEvent): string {
  const bytes = new Uint8Array(32);
  bytes.set(raw.daddr, 0);
  bytes.set(raw.saddr, 16);
  const end = bytes.indexOf(0);
  return NAME_DECODER.decode(bytes.subarray(0, end < 0 ? 32 : end));
}

/** The kernel puts the cgroup a scope.escape was refused into the record's inode field. */
function moveOf(raw: RawEvent, context: EventContext): NonNullable<AegisEvent["move"]> {
  const id = raw.inoHi * 2 ** 32 + raw.inoLo;
  const path = context.cgroupPath?.(id);
  return { to: path === undefined ? { id } : { id, path } };
}

/** The kernel puts the target's cgroup id into the record's inode field and its pid into `dev`. */
function ptraceOf(raw: RawEvent, context: EventContext): NonNullable<AegisEvent["ptrace"]> {
  const op = (PTRACE_OPS as Readonly<Record<number, PtraceOp>>)[raw.op];
  if (op === undefined) throw new EventDecodeError("op", raw);
  const id = raw.inoHi * 2 ** 32 + raw.inoLo;
  const path = context.cgroupPath?.(id);
  return { op, target: { pid: raw.dev, cgroup: path === undefined ? { id } : { id, path } } };
}

function netOf(raw: RawEvent, type: KernelEventType, context: EventContext): NonNullable<AegisEvent["net"]> {
  // A refused AF_PACKET or AF_XDP socket: the kernel reports its type (SOCK_RAW 3, SOCK_DGRAM 2,
  // SOCK_PACKET 10) as the protocol.
  if (type === "net.socket") {
    const family = raw.family === FAMILY.XDP ? "xdp" : "packet";
    return { family, protocol: SOCKET_TYPES[raw.protocol] ?? String(raw.protocol) };
  }
  const family = raw.family === FAMILY.IPV6 ? "ipv6" : "ipv4";
  const net: NonNullable<AegisEvent["net"]> = {
    family,
    protocol: PROTOCOLS[raw.protocol] ?? String(raw.protocol),
  };
  if (type === "net.route") {
    // setsockopt: no port; daddr is the route's first hop.
    net.daddr = formatAddressWords(raw.daddrWords, family);
  } else if (type !== "net.bind") {
    net.daddr = formatAddressWords(raw.daddrWords, family);
    net.dport = raw.dport;
  }
  if (type === "net.bind" || type === "net.ingress" || type === "net.forward") {
    net.saddr = formatAddressWords(raw.saddrWords, family);
    net.sport = raw.sport;
  }
  const name = raw.ifindex ? context.interfaceName?.(raw.ifindex) : undefined;
  if (name) net.interface = name;
  if (raw.flags & EVENT.RTHDR) net.route = "rthdr";
  else if (raw.flags & EVENT.SRCROUTE) net.route = "srcroute";
  // The kernel puts the interface a forwarded packet came in on into the record's device field.
  const inName = type === "net.forward" && raw.dev ? context.interfaceName?.(raw.dev) : undefined;
  if (inName) net.inInterface = inName;
  return net;
}

/** Dotted quad for IPv4 (first 4 bytes), RFC 5952 text for IPv6. */
export function formatAddress(bytes: Uint8Array, family: "ipv4" | "ipv6"): string {
  return formatAddressWords(addressWords(bytes), family);
}

/** formatAddress for an address as network-order words. */
export function formatAddressWords(words: AddressWords, family: "ipv4" | "ipv6"): string {
  const first = words[0];
  if (family === "ipv4") {
    return `${first >>> 24}.${(first >>> 16) & 0xff}.${(first >>> 8) & 0xff}.${first & 0xff}`;
  }
  // Longest run of two or more zero groups becomes "::" (RFC 5952 section 4.2); the first of equal runs.
  let bestStart = -1, bestLength = 0, runStart = -1;
  for (let i = 0; i <= 8; i++) {
    if (i < 8 && group(words, i) === 0) {
      if (runStart < 0) runStart = i;
      continue;
    }
    if (runStart >= 0 && i - runStart > bestLength && i - runStart >= 2) {
      bestStart = runStart;
      bestLength = i - runStart;
    }
    runStart = -1;
  }
  let text = "";
  for (let i = 0; i < 8; i++) {
    if (i === bestStart) {
      text += "::";
      i += bestLength - 1;
      continue;
    }
    if (text !== "" && !text.endsWith(":")) text += ":";
    text += group(words, i).toString(16);
  }
  return text;
}

function group(words: AddressWords, i: number): number {
  const word = words[i >> 1]!;
  return (i & 1) === 0 ? word >>> 16 : word & 0xffff;
}

/** Counts of an event stream since it was made. */
export type EventStreamStats = {
  /** Records read from the ring. */
  records: number;
  /** Sum of the records' `count`: the decisions they stand for. */
  decisions: number;
  /** Records that failed to decode or whose handler threw (EventDecodeError among them). */
  errors: number;
};

/** Most records one poll hands out, in ring capacities: a flood cannot hold the event loop forever. */
const POLL_BUDGET_RINGS = 2;
/**
 * Most records one turn of a started stream hands out (a few milliseconds of work): then the event loop
 * runs, so the writes of the lines already made (stdout, the API's streams) keep pace with a flood.
 */
const TURN_BUDGET = 4096;

/**
 * Drains the events ring buffer on the caller's thread: `poll()` decodes every queued record and hands it
 * to `onEvent`; `start()` polls whenever the kernel says records are there. A record that fails to decode, or whose handler throws, is
 * counted and reported, and the records after it are still delivered.
 */
export class EventStream {
  readonly #ring: RingBuffer;
  readonly #budget: number;
  readonly #stats: EventStreamStats = { records: 0, decisions: 0, errors: 0 };
  readonly #map: RingBufferMap;
  #waiter: RingWaiter | undefined;
  #onError: ((error: unknown) => void) | undefined;
  #firstError: { error: unknown } | undefined;

  constructor(map: RingBufferMap, onEvent: (event: RawEvent) => void) {
    const stats = this.#stats;
    this.#map = map;
    this.#ring = new RingBuffer(map, (view, offset, size) => {
      stats.records++;
      try {
        const event = decodeEventAt(view, offset, size);
        stats.decisions += event.count;
        onEvent(event);
      } catch (error) {
        stats.errors++;
        if (this.#onError) this.#onError(error);
        else this.#firstError ??= { error };
      }
    });
    this.#budget = Math.max(1, Math.floor(map.maxEntries / (AEGIS_EVENT.size + 8))) * POLL_BUDGET_RINGS;
  }

  get stats(): Readonly<EventStreamStats> {
    return { ...this.#stats };
  }

  /**
   * Hands out what the ring holds (at most two ring capacities of records); returns how many records it
   * read. Without an error callback (see `start`), the first error of the poll is thrown at its end.
   */
  poll(budget = this.#budget): number {
    const read = this.#ring.consume(budget);
    const failure = this.#firstError;
    this.#firstError = undefined;
    if (failure) throw failure.error;
    return read;
  }

  /**
   * Delivers records as they come: waits on the ring (epoll, off the JavaScript thread: RingWaiter) and
   * polls when the kernel says records are there, so an idle stream costs no CPU and a busy one is read at
   * once. A poll that used its whole budget lets the event loop run before the next. Errors go to `onError`
   * and delivery goes on: one bad record must not stop the event stream, let alone the agent.
   */
  start(onError: (error: unknown) => void): void {
    this.#onError = onError;
    if (this.#waiter !== undefined) return;
    const waiter = new RingWaiter(this.#map);
    this.#waiter = waiter;
    void (async () => {
      try {
        const turn = Math.min(TURN_BUDGET, this.#budget);
        while (await waiter.wait()) {
          // A ring that still holds records after a full turn is read on in the next turn of the event
          // loop, after a timer: the writes of the lines made so far (stdout, the API's streams) complete
          // in between (they did not while the turns followed each other on the ring's wake-ups alone, nor
          // with setImmediate). Only an emptied ring waits on the kernel again.
          while (this.#waiter === waiter && this.#pollTurn(turn, onError) === turn) {
            await new Promise((resolve) => setTimeout(resolve, 0));
          }
        }
      } catch (error) {
        onError(error);
      }
    })();
  }

  /** One turn of a started stream: how many records it read (an error is reported, and counts as none). */
  #pollTurn(turn: number, onError: (error: unknown) => void): number {
    try {
      return this.poll(turn);
    } catch (error) {
      onError(error);
      return 0;
    }
  }

  close(): void {
    this.#waiter?.close();
    this.#waiter = undefined;
    this.#ring.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
