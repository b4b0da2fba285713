import { AEGIS_EVENT } from "./event.ts";
import { CAPACITY, CFG, MODE, STAT_LIMITS } from "./constants.ts";
import { struct, type StructLayout } from "./struct.ts";

/**
 * Byte layouts of the structs in bpf/aegis.h. Offsets are explicit so that a test can compare each one
 * with the BTF of the built object; encoders and decoders read and write through these offsets only.
 */

export { type FieldLayout, struct, type StructLayout } from "./struct.ts";

export const AEGIS_GEN_INFO = struct("aegis_gen_info", 64, {
  mode: { offset: 0, size: 4 },
  scope_include: { offset: 4, size: 4 },
  scope_exempt: { offset: 8, size: 4 },
  task_rules: { offset: 12, size: 4 },
  ingress_port_denies: { offset: 16, size: 4 },
  rules_entries: { offset: 20, size: 4 },
  net_rules_entries: { offset: 24, size: 4 },
  failsafe_absent: { offset: 28, size: 4 },
  host_rules: { offset: 32, size: 4 },
  ingress_absent: { offset: 36, size: 4 },
  egress_absent: { offset: 40, size: 4 },
  net_exact_entries: { offset: 44, size: 4 },
  subject_switch: { offset: 48, size: 4 },
  _pad0: { offset: 52, size: 4 },
  stamp: { offset: 56, size: 8 },
});

export const AEGIS_RULE_KEY = struct("aegis_rule_key", 16, {
  a: { offset: 0, size: 8 },
  b: { offset: 8, size: 4 },
  kind: { offset: 12, size: 4 },
});

export const AEGIS_NET_KEY = struct("aegis_net_key", 28, {
  prefixlen: { offset: 0, size: 4 },
  space: { offset: 4, size: 4 },
  protocol: { offset: 8, size: 1 },
  port: { offset: 9, size: 2 },
  addr: { offset: 11, size: 16 },
  _pad0: { offset: 27, size: 1 },
});

export const AEGIS_RULE = struct("aegis_rule", 8, {
  rule_id: { offset: 0, size: 4 },
  action: { offset: 4, size: 1 },
  prefix_len: { offset: 5, size: 1 },
  _pad0: { offset: 6, size: 2 },
});

export const AEGIS_SESSION_KEY = struct("aegis_session_key", 28, {
  prefixlen: { offset: 0, size: 4 },
  ifindex: { offset: 4, size: 4 },
  port: { offset: 8, size: 2 },
  family: { offset: 10, size: 1 },
  _pad0: { offset: 11, size: 1 },
  addr: { offset: 12, size: 16 },
});

export const AEGIS_SESSION = struct("aegis_session", 16, {
  expires_boot_ns: { offset: 0, size: 8 },
  session_id: { offset: 8, size: 4 },
  _pad0: { offset: 12, size: 4 },
});

export const AEGIS_RATE_KEY = struct("aegis_rate_key", 12, {
  rule_id: { offset: 0, size: 4 },
  who: { offset: 4, size: 4 },
  gen: { offset: 8, size: 4 },
});

export const AEGIS_RATE = struct("aegis_rate", 24, {
  window: { offset: 0, size: 8 },
  suppressed: { offset: 8, size: 4 },
  pid: { offset: 12, size: 4 },
  hook: { offset: 16, size: 1 },
  decision: { offset: 17, size: 1 },
  mode: { offset: 18, size: 1 },
  _pad0: { offset: 19, size: 5 },
});

export const AEGIS_INODE_KEY = struct("aegis_inode_key", 16, {
  ino: { offset: 0, size: 8 },
  dev: { offset: 8, size: 4 },
  _pad0: { offset: 12, size: 4 },
});

export const AEGIS_INHERIT = struct("aegis_inherit", 24, {
  src_ino: { offset: 0, size: 8 },
  src_dev: { offset: 8, size: 4 },
  generation: { offset: 12, size: 4 },
  flags: { offset: 16, size: 4 },
  _pad0: { offset: 20, size: 4 },
});

export const AEGIS_RULE_HIT_KEY = struct("aegis_rule_hit_key", 8, {
  rule_id: { offset: 0, size: 4 },
  gen: { offset: 4, size: 1 },
  decision: { offset: 5, size: 1 },
  _pad0: { offset: 6, size: 2 },
});

export const AEGIS_XDP_STAT_KEY = struct("aegis_xdp_stat_key", 8, {
  ifindex: { offset: 0, size: 4 },
  action: { offset: 4, size: 4 },
});

/** An interface XDP filters in its slot of map ingress_ifaces, with its AEGIS_RULE_IFACE entry's value. */
export const AEGIS_IFACE_SLOT = struct("aegis_iface_slot", 16, {
  ifindex: { offset: 0, size: 4 },
  _pad0: { offset: 4, size: 4 },
  rule: { offset: 8, size: 8 },
});

/** One rule's decisions in a per-CPU slot of map rule_hit_slots (ingress, and allows by name; rule_hits holds the rest). */
export const AEGIS_RULE_HIT_SLOT = struct("aegis_rule_hit_slot", 16, {
  owner: { offset: 0, size: 8 },
  count: { offset: 8, size: 8 },
});

/** One interface's packets by verdict in a per-CPU slot of map xdp_slots. */
export const AEGIS_XDP_SLOT = struct("aegis_xdp_slot", 24, {
  ifindex: { offset: 0, size: 4 },
  _pad0: { offset: 4, size: 4 },
  dropped: { offset: 8, size: 8 },
  passed: { offset: 16, size: 8 },
});

/** A record of the connection sweep (net_guard.bpf.h). */
export const AEGIS_CONN = struct("aegis_conn", 56, {
  cgroup_id: { offset: 0, size: 8 },
  rule_id: { offset: 8, size: 4 },
  uid: { offset: 12, size: 4 },
  dport: { offset: 16, size: 2 },
  sport: { offset: 18, size: 2 },
  family: { offset: 20, size: 1 },
  protocol: { offset: 21, size: 1 },
  closed: { offset: 22, size: 1 },
  gen: { offset: 23, size: 1 },
  daddr: { offset: 24, size: 16 },
  saddr: { offset: 40, size: 16 },
});

/** A key of the learned-address table (map `learned`). */
export const AEGIS_LEARNED_KEY = struct("aegis_learned_key", 20, {
  family: { offset: 0, size: 4 },
  addr: { offset: 4, size: 16 },
});

/** What the learned-address table holds for an address. */
export const AEGIS_LEARNED = struct("aegis_learned", 24, {
  expires_boot_ns: { offset: 0, size: 8 },
  host_key: { offset: 8, size: 8 },
  kind: { offset: 16, size: 4 },
  _pad0: { offset: 20, size: 4 },
});

/** A key of map `exceptions`: an exec or file exception's inode. */
export const AEGIS_EXCEPTION_KEY = struct("aegis_exception_key", 16, {
  ino: { offset: 0, size: 8 },
  dev: { offset: 8, size: 4 },
  kind: { offset: 12, size: 4 },
});

/** A key of map `exception_nets`: an egress exception's destination. */
export const AEGIS_EXCEPTION_NET_KEY = struct("aegis_exception_net_key", 24, {
  prefixlen: { offset: 0, size: 4 },
  family: { offset: 4, size: 1 },
  _pad0: { offset: 5, size: 1 },
  port: { offset: 6, size: 2 },
  addr: { offset: 8, size: 16 },
});

/** An expiring exception as the kernel holds it. */
export const AEGIS_EXCEPTION = struct("aegis_exception", 24, {
  expires_boot_ns: { offset: 0, size: 8 },
  cgroup_id: { offset: 8, size: 8 },
  id: { offset: 16, size: 4 },
  cgroup_level: { offset: 20, size: 4 },
});

/** Every mirrored struct, for the BTF comparison test. */
export const LAYOUTS: readonly StructLayout[] = [
  AEGIS_GEN_INFO,
  AEGIS_RULE_KEY,
  AEGIS_NET_KEY,
  AEGIS_RULE,
  AEGIS_SESSION_KEY,
  AEGIS_SESSION,
  AEGIS_RATE_KEY,
  AEGIS_RATE,
  AEGIS_INODE_KEY,
  AEGIS_INHERIT,
  AEGIS_EVENT,
  AEGIS_CONN,
  AEGIS_RULE_HIT_KEY,
  AEGIS_XDP_STAT_KEY,
  AEGIS_XDP_SLOT,
  AEGIS_RULE_HIT_SLOT,
  AEGIS_IFACE_SLOT,
  AEGIS_LEARNED_KEY,
  AEGIS_LEARNED,
  AEGIS_EXCEPTION_KEY,
  AEGIS_EXCEPTION_NET_KEY,
  AEGIS_EXCEPTION,
];

/**
 * A little-endian writer over a fresh buffer of one struct's size. It writes bytes by index rather than
 * through a DataView: a DataView moves a small typed array's storage off the V8 heap, which made encoding
 * 100,000 rules several times slower.
 */
/** The field names of a layout: a writer of one struct type accepts only its own fields. */
type FieldName<L extends StructLayout> = keyof L["fields"] & string;

class StructWriter<L extends StructLayout> {
  readonly bytes: Uint8Array<ArrayBuffer>;
  readonly #layout: L;

  readonly #base: number;

  /** Writes into `target` at `base` when given (one entry of a contiguous batch), else a fresh buffer. */
  constructor(layout: L, target?: Uint8Array<ArrayBuffer>, base = 0) {
    this.#layout = layout;
    this.bytes = target ?? new Uint8Array(layout.size);
    this.#base = base;
    if (target) this.bytes.fill(0, base, base + layout.size);
  }

  u8(field: FieldName<L>, value: number): this {
    this.bytes[this.#at(field, 1)] = value;
    return this;
  }

  u16(field: FieldName<L>, value: number): this {
    this.#little(this.#at(field, 2), value, 2);
    return this;
  }

  u32(field: FieldName<L>, value: number): this {
    this.#little(this.#at(field, 4), value, 4);
    return this;
  }

  u64(field: FieldName<L>, value: bigint): this {
    const offset = this.#at(field, 8);
    this.#little(offset, Number(value & 0xffffffffn), 4);
    this.#little(offset + 4, Number(value >> 32n), 4);
    return this;
  }

  /** A u64 field from a Number (an exact integer below 2^53): no BigInt on the hot path. */
  u64Number(field: FieldName<L>, value: number): this {
    const offset = this.#at(field, 8);
    this.#little(offset, value >>> 0, 4);
    this.#little(offset + 4, Math.floor(value / 0x100000000), 4);
    return this;
  }

  /** Raw bytes, at most the field's size (big-endian ports, addresses). */
  raw(field: FieldName<L>, value: Uint8Array | readonly number[]): this {
    const offset = this.#at(field, undefined);
    const size = this.#layout.fields[field]?.size ?? 0;
    if (value.length > size) {
      throw new RangeError(`${this.#layout.name}.${field} holds ${size} bytes: got ${value.length}`);
    }
    this.bytes.set(value, offset);
    return this;
  }

  #little(offset: number, value: number, size: number): void {
    for (let i = 0; i < size; i++) this.bytes[offset + i] = (value >>> (8 * i)) & 0xff;
  }

  #at(field: FieldName<L>, size: number | undefined): number {
    const layout = this.#layout.fields[field];
    if (!layout || (size !== undefined && layout.size !== size)) {
      throw new RangeError(`${this.#layout.name} has no ${size ?? ""}-byte field ${field}`);
    }
    return this.#base + layout.offset;
  }
}

function reader(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function bigEndianPort(port: number): [number, number] {
  return [(port >> 8) & 0xff, port & 0xff];
}

/** The words of the config map (AEGIS_CFG_* in bpf/aegis.h), each its own __u64 array slot. */
export const CONFIG_WORDS = {
  activeGen: CFG.ACTIVE_GEN,
  forceAudit: CFG.FORCE_AUDIT,
  breakGlass: CFG.BREAK_GLASS,
  deadmanDeadlineNs: CFG.DEADMAN,
  layout: CFG.LAYOUT,
  enforceSignal: CFG.ENFORCE_SIGNAL,
  inherited: CFG.INHERITED,
} as const;

export type AegisConfig = {
  activeGen: number;
  forceAudit: boolean;
  breakGlass: boolean;
  deadmanDeadlineNs: bigint;
};

/** A u32 map key (array indexes, config words). */
export function encodeU32(value: number): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(4);
  for (let i = 0; i < 4; i++) bytes[i] = (value >>> (8 * i)) & 0xff;
  return bytes;
}

export function encodeU64(value: bigint): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setBigUint64(0, value, true);
  return bytes;
}

export function decodeU64(bytes: Uint8Array): bigint {
  return reader(bytes).getBigUint64(0, true);
}

/** The sum of a per-CPU u64 value (one 8-byte slot per CPU); 0 for an absent entry. */
export function sumPerCpu(bytes: Uint8Array | undefined): bigint {
  if (!bytes) return 0n;
  const view = reader(bytes);
  let total = 0n;
  for (let offset = 0; offset + 8 <= bytes.byteLength; offset += 8) total += view.getBigUint64(offset, true);
  return total;
}

export type GenInfo = {
  enforce: boolean;
  scopeInclude: number;
  scopeExempt: number;
  taskRules: number;
  ingressPortDenies: number;
  rulesEntries: number;
  netRulesEntries: number;
  /** Bit (port & 31) set where no ingress failsafe port has those low five bits (failsafeAbsentBits). */
  failsafeAbsent: number;
  /** Entries of rules by host name: non-zero when egress consults the learned-address table. */
  hostRules: number;
  /** INGRESS_ABSENT bits: shapes of ingress rule the trie has none of (ingressAbsentBits); 0 looks all up. */
  ingressAbsent: number;
  /** The same bits for egress rules, every subject's (egressAbsentBits); 0 looks all up. */
  egressAbsent: number;
  /** Entries of the generation's `net_exact` hash (CIDR rules of a whole address). */
  netExactEntries: number;
  /** SUBJECTS.ON | TREE | the NO_* bits of the rules naming no program, where a rule names an exe; else 0. */
  subjectSwitch: number;
  /** Names these contents of the slot (random, written at staging: stampGenInfo); 0 caches nothing. */
  stamp?: bigint;
};

export function encodeGenInfo(info: GenInfo): Uint8Array<ArrayBuffer> {
  return new StructWriter(AEGIS_GEN_INFO)
    .u32("mode", info.enforce ? MODE.ENFORCE : MODE.AUDIT)
    .u32("scope_include", info.scopeInclude)
    .u32("scope_exempt", info.scopeExempt)
    .u32("task_rules", info.taskRules)
    .u32("ingress_port_denies", info.ingressPortDenies)
    .u32("rules_entries", info.rulesEntries)
    .u32("net_rules_entries", info.netRulesEntries)
    .u32("failsafe_absent", info.failsafeAbsent)
    .u32("host_rules", info.hostRules)
    .u32("ingress_absent", info.ingressAbsent)
    .u32("egress_absent", info.egressAbsent)
    .u32("net_exact_entries", info.netExactEntries)
    .u32("subject_switch", info.subjectSwitch)
    .u64("stamp", info.stamp ?? 0n).bytes;
}

/**
 * Writes a fresh stamp into encoded gen_info bytes (random, never 0): each staging names its contents anew,
 * so that no cache made for what a slot held before is taken for what it holds now.
 */
export function stampGenInfo(bytes: Uint8Array<ArrayBuffer>): void {
  const random = new BigUint64Array(1);
  do crypto.getRandomValues(random); while (random[0] === 0n);
  new DataView(bytes.buffer, bytes.byteOffset).setBigUint64(
    AEGIS_GEN_INFO.fields.stamp.offset,
    random[0]!,
    true,
  );
}

/** A map's entries and capacity, as health and metrics report them. */
export type MapFill = { map: string; entries: number; capacity: number };

/** The fill of a generation's rule maps, as its gen_info counts their entries (no key walk). */
export function ruleMapFill(info: GenInfo): MapFill[] {
  return [
    { map: "rules", entries: info.rulesEntries, capacity: CAPACITY.RULES },
    { map: "net_rules", entries: info.netRulesEntries, capacity: CAPACITY.NET_RULES },
    { map: "net_exact", entries: info.netExactEntries, capacity: CAPACITY.NET_RULES },
  ];
}

export function decodeGenInfo(bytes: Uint8Array): GenInfo {
  const view = reader(bytes);
  const f = AEGIS_GEN_INFO.fields;
  return {
    enforce: view.getUint32(f.mode.offset, true) === MODE.ENFORCE,
    scopeInclude: view.getUint32(f.scope_include.offset, true),
    scopeExempt: view.getUint32(f.scope_exempt.offset, true),
    taskRules: view.getUint32(f.task_rules.offset, true),
    ingressPortDenies: view.getUint32(f.ingress_port_denies.offset, true),
    rulesEntries: view.getUint32(f.rules_entries.offset, true),
    netRulesEntries: view.getUint32(f.net_rules_entries.offset, true),
    failsafeAbsent: view.getUint32(f.failsafe_absent.offset, true),
    hostRules: view.getUint32(f.host_rules.offset, true),
    ingressAbsent: view.getUint32(f.ingress_absent.offset, true),
    egressAbsent: view.getUint32(f.egress_absent.offset, true),
    netExactEntries: view.getUint32(f.net_exact_entries.offset, true),
    subjectSwitch: view.getUint32(f.subject_switch.offset, true),
    stamp: view.getBigUint64(f.stamp.offset, true),
  };
}

/** A key of the `rules` hash (struct aegis_rule_key): `kind` is a RULE.* value. */
export type RuleKey = { kind: number; a: bigint | number; b: number };

/** Writes a rule key at `offset` of `target` (one slot of a contiguous batch). */
export function writeRuleKey(target: Uint8Array<ArrayBuffer>, offset: number, key: RuleKey): void {
  const writer = new StructWriter(AEGIS_RULE_KEY, target, offset);
  if (typeof key.a === "bigint") writer.u64("a", key.a);
  else writer.u64Number("a", key.a);
  writer.u32("b", key.b).u32("kind", key.kind);
}

export function encodeRuleKey(key: RuleKey): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(AEGIS_RULE_KEY.size);
  writeRuleKey(bytes, 0, key);
  return bytes;
}

/** Family 4 or 6; an IPv4 address is 4 bytes, an IPv6 one 16. */
export type NetKey = {
  /** NET.* space: egress or ingress, with or without a port. */
  space: number;
  family: 4 | 6;
  protocol: number;
  /** Destination port (0 in the maps of port-less rules). */
  port: number;
  addr: Uint8Array;
  /** CIDR length of the rule. */
  prefixLength: number;
};

export function encodeNetKey(key: NetKey): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(AEGIS_NET_KEY.size);
  writeNetKey(bytes, 0, key);
  return bytes;
}

/** The prefix length of a net key's fixed part, before the address: space, protocol and port (32 + 8 + 16 bits). */
export const NET_KEY_HEAD_BITS = 32 + 8 + 16;
/** The prefix length every hook looks a net key up with (NET_KEY_FULL_PREFIX in the object): head and 16 bytes. */
export const NET_KEY_FULL_PREFIX = NET_KEY_HEAD_BITS + 128;

/** Writes a net key at `offset` of `target` (one slot of a contiguous batch). */
export function writeNetKey(target: Uint8Array<ArrayBuffer>, offset: number, key: NetKey): void {
  const bits = key.family === 4 ? 32 : 128;
  if (key.addr.byteLength !== bits / 8) {
    throw new RangeError(`IPv${key.family} address must be ${bits / 8} bytes: got ${key.addr.byteLength}`);
  }
  if (!Number.isInteger(key.prefixLength) || key.prefixLength < 0 || key.prefixLength > bits) {
    throw new RangeError(`IPv${key.family} prefix length must be 0..${bits}: got ${key.prefixLength}`);
  }
  // Written byte by byte (a StructWriter per key cost most of the encoding of 100,000 rules).
  const { fields } = AEGIS_NET_KEY;
  target.fill(0, offset, offset + AEGIS_NET_KEY.size);
  writeU32At(target, offset + fields.prefixlen.offset, NET_KEY_HEAD_BITS + key.prefixLength);
  writeU32At(target, offset + fields.space.offset, (key.space << 8) | key.family);
  target[offset + fields.protocol.offset] = key.protocol;
  target[offset + fields.port.offset] = (key.port >> 8) & 0xff;
  target[offset + fields.port.offset + 1] = key.port & 0xff;
  target.set(key.addr, offset + fields.addr.offset);
}

function writeU32At(target: Uint8Array, at: number, value: number): void {
  target[at] = value & 0xff;
  target[at + 1] = (value >>> 8) & 0xff;
  target[at + 2] = (value >>> 16) & 0xff;
  target[at + 3] = (value >>> 24) & 0xff;
}

export type Rule = { ruleId: number; allow: boolean; prefixLength: number };

/** A rule value: `action` is ACTION.* for CIDR rules, or the kind's own value (SCOPE.*, USER_PORTS.*). */
export type RuleValue = { ruleId: number; action: number; prefixLength: number };

export function writeRule(target: Uint8Array<ArrayBuffer>, offset: number, rule: RuleValue): void {
  const { fields } = AEGIS_RULE;
  target.fill(0, offset, offset + AEGIS_RULE.size);
  writeU32At(target, offset + fields.rule_id.offset, rule.ruleId);
  target[offset + fields.action.offset] = rule.action;
  target[offset + fields.prefix_len.offset] = rule.prefixLength;
}

/** Writes an ingress_ifaces value: interface `ifindex` (0: none) with its AEGIS_RULE_IFACE entry's value. */
export function writeIfaceSlot(
  target: Uint8Array<ArrayBuffer>,
  offset: number,
  ifindex: number,
  rule: RuleValue,
): void {
  const { fields } = AEGIS_IFACE_SLOT;
  target.fill(0, offset, offset + AEGIS_IFACE_SLOT.size);
  writeU32At(target, offset + fields.ifindex.offset, ifindex);
  writeRule(target, offset + fields.rule.offset, rule);
}

export function encodeRule(rule: Rule): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(AEGIS_RULE.size);
  writeRule(bytes, 0, { ruleId: rule.ruleId, action: rule.allow ? 1 : 0, prefixLength: rule.prefixLength });
  return bytes;
}

export function decodeRule(bytes: Uint8Array): Rule {
  const view = reader(bytes);
  const f = AEGIS_RULE.fields;
  return {
    ruleId: view.getUint32(f.rule_id.offset, true),
    allow: view.getUint8(f.action.offset) === 1,
    prefixLength: view.getUint8(f.prefix_len.offset),
  };
}

export type SessionKey = {
  ifindex: number;
  family: 4 | 6;
  addr: Uint8Array;
  prefixLength: number;
  port: number;
};

export function encodeSessionKey(key: SessionKey): Uint8Array<ArrayBuffer> {
  const bits = key.family === 4 ? 32 : 128;
  if (key.addr.byteLength !== bits / 8 || key.prefixLength < 0 || key.prefixLength > bits) {
    throw new RangeError(
      `Invalid IPv${key.family} session prefix: ${key.addr.byteLength} bytes /${key.prefixLength}`,
    );
  }
  return new StructWriter(AEGIS_SESSION_KEY)
    .u32("prefixlen", 32 + 16 + 16 + key.prefixLength)
    .u32("ifindex", key.ifindex)
    .raw("port", bigEndianPort(key.port))
    .u8("family", key.family)
    .raw("addr", key.addr).bytes;
}

export function encodeSession(
  session: { expiresBootNs: bigint; sessionId: number },
): Uint8Array<ArrayBuffer> {
  return new StructWriter(AEGIS_SESSION).u64("expires_boot_ns", session.expiresBootNs).u32(
    "session_id",
    session.sessionId,
  ).bytes;
}

export function decodeSession(bytes: Uint8Array): { expiresBootNs: bigint; sessionId: number } {
  const view = reader(bytes);
  return {
    expiresBootNs: view.getBigUint64(AEGIS_SESSION.fields.expires_boot_ns.offset, true),
    sessionId: view.getUint32(AEGIS_SESSION.fields.session_id.offset, true),
  };
}

export type ConnRecord = {
  cgroupId: bigint;
  ruleId: number;
  uid: number;
  dport: number;
  sport: number;
  family: number;
  protocol: number;
  closed: boolean;
  gen: number;
  daddr: Uint8Array;
  saddr: Uint8Array;
};

/** The records of one sweep's output, back to back; a trailing partial record is an error. */
export function decodeConnRecords(bytes: Uint8Array): ConnRecord[] {
  if (bytes.length % AEGIS_CONN.size !== 0) {
    throw new RangeError(
      `Connection sweep output of ${bytes.length} bytes is not whole ${AEGIS_CONN.size}-byte records`,
    );
  }
  const f = AEGIS_CONN.fields;
  const records: ConnRecord[] = [];
  for (let offset = 0; offset < bytes.length; offset += AEGIS_CONN.size) {
    const record = bytes.subarray(offset, offset + AEGIS_CONN.size);
    const view = reader(record);
    records.push({
      cgroupId: view.getBigUint64(f.cgroup_id.offset, true),
      ruleId: view.getUint32(f.rule_id.offset, true),
      uid: view.getUint32(f.uid.offset, true),
      dport: view.getUint16(f.dport.offset, true),
      sport: view.getUint16(f.sport.offset, true),
      family: record[f.family.offset]!,
      protocol: record[f.protocol.offset]!,
      closed: record[f.closed.offset] === 1,
      gen: record[f.gen.offset]!,
      daddr: record.slice(f.daddr.offset, f.daddr.offset + 16),
      saddr: record.slice(f.saddr.offset, f.saddr.offset + 16),
    });
  }
  return records;
}

export type RuleHitKey = { ruleId: number; gen: number; decision: number };

export function encodeRuleHitKey(key: RuleHitKey): Uint8Array<ArrayBuffer> {
  return new StructWriter(AEGIS_RULE_HIT_KEY).u32("rule_id", key.ruleId).u8("gen", key.gen)
    .u8("decision", key.decision).bytes;
}

export function decodeRuleHitKey(bytes: Uint8Array): RuleHitKey {
  const view = reader(bytes);
  const f = AEGIS_RULE_HIT_KEY.fields;
  return {
    ruleId: view.getUint32(f.rule_id.offset, true),
    gen: view.getUint8(f.gen.offset),
    decision: view.getUint8(f.decision.offset),
  };
}

/** aegis_rule_hit_slot.owner of a slot a rule holds: this bit with the rule id in the low 32 bits. */
const RULE_HIT_OWNED = 1n << 32n;

/**
 * The generation and decision whose slots rule_hit_slots holds at `index`: (gen * RULE_HIT_ROWS + decision) *
 * RULE_HIT_SLOTS + rule_id % RULE_HIT_SLOTS.
 */
export function ruleHitSlotOf(index: number): { gen: number; decision: number } {
  const row = Math.floor(index / STAT_LIMITS.RULE_HIT_SLOTS);
  return { gen: Math.floor(row / STAT_LIMITS.RULE_HIT_ROWS), decision: row % STAT_LIMITS.RULE_HIT_ROWS };
}

/** The rules counted in one rule_hit_slots value (one slot per CPU; a free slot counts for none). */
export function decodeRuleHitSlots(bytes: Uint8Array): { ruleId: number; count: bigint }[] {
  const view = reader(bytes);
  const f = AEGIS_RULE_HIT_SLOT.fields;
  const counts: { ruleId: number; count: bigint }[] = [];
  for (
    let offset = 0;
    offset + AEGIS_RULE_HIT_SLOT.size <= bytes.byteLength;
    offset += AEGIS_RULE_HIT_SLOT.size
  ) {
    const owner = view.getBigUint64(offset + f.owner.offset, true);
    if ((owner & ~0xffff_ffffn) !== RULE_HIT_OWNED) continue;
    counts.push({
      ruleId: Number(owner & 0xffff_ffffn),
      count: view.getBigUint64(offset + f.count.offset, true),
    });
  }
  return counts;
}

/** XDP_DROP and XDP_PASS, the verdicts the XDP program counts. */
const XDP_DROP = 1;
const XDP_PASS = 2;

/**
 * The (interface, verdict) counts of one xdp_slots entry as every CPU holds it (one 24-byte slot per CPU);
 * none for a slot no CPU has taken.
 */
export function decodeXdpSlots(bytes: Uint8Array): { ifindex: number; action: number; packets: bigint }[] {
  const view = reader(bytes);
  const f = AEGIS_XDP_SLOT.fields;
  const counts: { ifindex: number; action: number; packets: bigint }[] = [];
  for (let offset = 0; offset + AEGIS_XDP_SLOT.size <= bytes.byteLength; offset += AEGIS_XDP_SLOT.size) {
    const ifindex = view.getUint32(offset + f.ifindex.offset, true);
    if (ifindex === 0) continue;
    counts.push(
      { ifindex, action: XDP_DROP, packets: view.getBigUint64(offset + f.dropped.offset, true) },
      { ifindex, action: XDP_PASS, packets: view.getBigUint64(offset + f.passed.offset, true) },
    );
  }
  return counts;
}

export function decodeXdpStatKey(bytes: Uint8Array): { ifindex: number; action: number } {
  const view = reader(bytes);
  const f = AEGIS_XDP_STAT_KEY.fields;
  return { ifindex: view.getUint32(f.ifindex.offset, true), action: view.getUint32(f.action.offset, true) };
}

/** An address of the learned-address table: `family` AEGIS_FAMILY_IPV4 (4 bytes) or _IPV6 (16). */
export type LearnedKey = { family: 4 | 6; addr: Uint8Array };
/**
 * What the table holds for it: the expiry, and the pattern covering the name when it was learned (`kind`
 * RULE.HOST with the name's host key, or RULE.HOST_WILDCARD with the wildcard domain's).
 */
export type Learned = { expiresBootNs: bigint; hostKey: bigint; kind: number };

export function encodeLearnedKey(key: LearnedKey): Uint8Array<ArrayBuffer> {
  const addr = new Uint8Array(16);
  addr.set(key.addr.subarray(0, key.family === 4 ? 4 : 16));
  return new StructWriter(AEGIS_LEARNED_KEY).u32("family", key.family).raw("addr", addr).bytes;
}

export function decodeLearnedKey(bytes: Uint8Array): LearnedKey {
  const family = reader(bytes).getUint32(AEGIS_LEARNED_KEY.fields.family.offset, true) === 6 ? 6 : 4;
  const offset = AEGIS_LEARNED_KEY.fields.addr.offset;
  return { family, addr: bytes.slice(offset, offset + (family === 4 ? 4 : 16)) };
}

export function encodeLearned(value: Learned): Uint8Array<ArrayBuffer> {
  return new StructWriter(AEGIS_LEARNED)
    .u64("expires_boot_ns", value.expiresBootNs)
    .u64("host_key", value.hostKey)
    .u32("kind", value.kind).bytes;
}

export function decodeLearned(bytes: Uint8Array): Learned {
  const view = reader(bytes);
  const f = AEGIS_LEARNED.fields;
  return {
    expiresBootNs: view.getBigUint64(f.expires_boot_ns.offset, true),
    hostKey: view.getBigUint64(f.host_key.offset, true),
    kind: view.getUint32(f.kind.offset, true),
  };
}

/** An exec or file exception's inode (`kind` EXCEPTION_KIND.EXEC or FILE). */
export type ExceptionInodeKey = { ino: bigint; dev: number; kind: number };
/** An egress exception's destination: a CIDR, and a port (0: every port). */
export type ExceptionNetKey = { family: 4 | 6; addr: Uint8Array; prefixLength: number; port: number };
/** What the kernel holds for an exception: its expiry, number and optional cgroup (id 0: every task). */
export type ExceptionValue = { expiresBootNs: bigint; cgroupId: bigint; cgroupLevel: number; id: number };

export function encodeExceptionKey(key: ExceptionInodeKey): Uint8Array<ArrayBuffer> {
  return new StructWriter(AEGIS_EXCEPTION_KEY).u64("ino", key.ino).u32("dev", key.dev).u32("kind", key.kind)
    .bytes;
}

export function decodeExceptionKey(bytes: Uint8Array): ExceptionInodeKey {
  const view = reader(bytes);
  const f = AEGIS_EXCEPTION_KEY.fields;
  return {
    ino: view.getBigUint64(f.ino.offset, true),
    dev: view.getUint32(f.dev.offset, true),
    kind: view.getUint32(f.kind.offset, true),
  };
}

export function encodeExceptionNetKey(key: ExceptionNetKey): Uint8Array<ArrayBuffer> {
  const bits = key.family === 4 ? 32 : 128;
  if (key.addr.byteLength !== bits / 8 || key.prefixLength < 0 || key.prefixLength > bits) {
    throw new RangeError(
      `Invalid IPv${key.family} exception prefix: ${key.addr.byteLength} bytes /${key.prefixLength}`,
    );
  }
  const addr = new Uint8Array(16);
  addr.set(key.addr);
  return new StructWriter(AEGIS_EXCEPTION_NET_KEY)
    .u32("prefixlen", 8 + 8 + 16 + key.prefixLength)
    .u8("family", key.family)
    .raw("port", bigEndianPort(key.port))
    .raw("addr", addr).bytes;
}

export function encodeException(value: ExceptionValue): Uint8Array<ArrayBuffer> {
  return new StructWriter(AEGIS_EXCEPTION)
    .u64("expires_boot_ns", value.expiresBootNs)
    .u64("cgroup_id", value.cgroupId)
    .u32("id", value.id)
    .u32("cgroup_level", value.cgroupLevel).bytes;
}

export function decodeException(bytes: Uint8Array): ExceptionValue {
  const view = reader(bytes);
  const f = AEGIS_EXCEPTION.fields;
  return {
    expiresBootNs: view.getBigUint64(f.expires_boot_ns.offset, true),
    cgroupId: view.getBigUint64(f.cgroup_id.offset, true),
    id: view.getUint32(f.id.offset, true),
    cgroupLevel: view.getUint32(f.cgroup_level.offset, true),
  };
}
