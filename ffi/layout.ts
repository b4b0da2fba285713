/**
 * Byte layouts of the structs in bpf/aegis.h. Offsets are explicit so that a test can compare each one
 * with the BTF of the built object; encoders and decoders read and write through these offsets only.
 */

export type FieldLayout = { readonly offset: number; readonly size: number };
export type StructLayout = {
  readonly name: string;
  readonly size: number;
  readonly fields: Readonly<Record<string, FieldLayout>>;
};

function struct<const F extends Record<string, FieldLayout>>(name: string, size: number, fields: F) {
  return { name, size, fields } as const satisfies StructLayout;
}

export const AEGIS_GEN_INFO = struct("aegis_gen_info", 24, {
  mode: { offset: 0, size: 4 },
  scope_include: { offset: 4, size: 4 },
  scope_exempt: { offset: 8, size: 4 },
  uid_rules: { offset: 12, size: 4 },
  ingress_port_denies: { offset: 16, size: 4 },
  _pad0: { offset: 20, size: 4 },
});

export const AEGIS_INODE_KEY = struct("aegis_inode_key", 16, {
  ino: { offset: 0, size: 8 },
  dev: { offset: 8, size: 4 },
  gen: { offset: 12, size: 4 },
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

export const AEGIS_SCOPE_KEY = struct("aegis_scope_key", 16, {
  cgroup_id: { offset: 0, size: 8 },
  gen: { offset: 8, size: 4 },
  _pad0: { offset: 12, size: 4 },
});

export const AEGIS_UID_KEY = struct("aegis_uid_key", 8, {
  gen: { offset: 0, size: 4 },
  uid: { offset: 4, size: 4 },
});

export const AEGIS_UID_PORT_KEY = struct("aegis_uid_port_key", 12, {
  gen: { offset: 0, size: 4 },
  uid: { offset: 4, size: 4 },
  port: { offset: 8, size: 2 },
  _pad0: { offset: 10, size: 2 },
});

export const AEGIS_PORT_KEY = struct("aegis_port_key", 8, {
  gen: { offset: 0, size: 4 },
  port: { offset: 4, size: 2 },
  protocol: { offset: 6, size: 1 },
  _pad0: { offset: 7, size: 1 },
});

export const AEGIS_IFACE_KEY = struct("aegis_iface_key", 8, {
  gen: { offset: 0, size: 4 },
  ifindex: { offset: 4, size: 4 },
});

export const AEGIS_IFACE = struct("aegis_iface", 8, {
  default_action: { offset: 0, size: 4 },
  rule_id: { offset: 4, size: 4 },
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

export const AEGIS_RATE_KEY = struct("aegis_rate_key", 8, {
  rule_id: { offset: 0, size: 4 },
  who: { offset: 4, size: 4 },
});

export const AEGIS_RATE = struct("aegis_rate", 16, {
  window_start_ns: { offset: 0, size: 8 },
  emitted: { offset: 8, size: 4 },
  suppressed: { offset: 12, size: 4 },
});

export const AEGIS_EVENT = struct("aegis_event", 120, {
  ts_boot_ns: { offset: 0, size: 8 },
  cgroup_id: { offset: 8, size: 8 },
  ino: { offset: 16, size: 8 },
  dev: { offset: 24, size: 4 },
  pid: { offset: 28, size: 4 },
  ppid: { offset: 32, size: 4 },
  uid: { offset: 36, size: 4 },
  gid: { offset: 40, size: 4 },
  rule_id: { offset: 44, size: 4 },
  count: { offset: 48, size: 4 },
  ifindex: { offset: 52, size: 4 },
  dport: { offset: 56, size: 2 },
  sport: { offset: 58, size: 2 },
  hook: { offset: 60, size: 1 },
  decision: { offset: 61, size: 1 },
  mode: { offset: 62, size: 1 },
  family: { offset: 63, size: 1 },
  protocol: { offset: 64, size: 1 },
  gen: { offset: 65, size: 1 },
  _pad0: { offset: 66, size: 6 },
  daddr: { offset: 72, size: 16 },
  saddr: { offset: 88, size: 16 },
  comm: { offset: 104, size: 16 },
});

/** Every mirrored struct, for the BTF comparison test. */
export const LAYOUTS: readonly StructLayout[] = [
  AEGIS_GEN_INFO,
  AEGIS_INODE_KEY,
  AEGIS_NET_KEY,
  AEGIS_RULE,
  AEGIS_SCOPE_KEY,
  AEGIS_UID_KEY,
  AEGIS_UID_PORT_KEY,
  AEGIS_PORT_KEY,
  AEGIS_IFACE_KEY,
  AEGIS_IFACE,
  AEGIS_SESSION_KEY,
  AEGIS_SESSION,
  AEGIS_RATE_KEY,
  AEGIS_RATE,
  AEGIS_EVENT,
];

/**
 * A little-endian writer over a fresh buffer of one struct's size. It writes bytes by index rather than
 * through a DataView: a DataView moves a small typed array's storage off the V8 heap, which made encoding
 * 100,000 rules several times slower.
 */
class StructWriter {
  readonly bytes: Uint8Array<ArrayBuffer>;
  readonly #layout: StructLayout;

  constructor(layout: StructLayout) {
    this.#layout = layout;
    this.bytes = new Uint8Array(layout.size);
  }

  u8(field: string, value: number): this {
    this.bytes[this.#at(field, 1)] = value;
    return this;
  }

  u16(field: string, value: number): this {
    this.#little(this.#at(field, 2), value, 2);
    return this;
  }

  u32(field: string, value: number): this {
    this.#little(this.#at(field, 4), value, 4);
    return this;
  }

  u64(field: string, value: bigint): this {
    const offset = this.#at(field, 8);
    this.#little(offset, Number(value & 0xffffffffn), 4);
    this.#little(offset + 4, Number(value >> 32n), 4);
    return this;
  }

  /** Raw bytes, at most the field's size (big-endian ports, addresses). */
  raw(field: string, value: Uint8Array | readonly number[]): this {
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

  #at(field: string, size: number | undefined): number {
    const layout = this.#layout.fields[field];
    if (!layout || (size !== undefined && layout.size !== size)) {
      throw new RangeError(`${this.#layout.name} has no ${size ?? ""}-byte field ${field}`);
    }
    return layout.offset;
  }
}

function reader(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function bigEndianPort(port: number): [number, number] {
  return [(port >> 8) & 0xff, port & 0xff];
}

/** The words of the config map (AEGIS_CFG_* in bpf/aegis.h), each its own __u64 array slot. */
export const CONFIG_WORDS = { activeGen: 0, forceAudit: 1, breakGlass: 2, deadmanDeadlineNs: 3 } as const;

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
  uidRules: number;
  ingressPortDenies: number;
};

export function encodeGenInfo(info: GenInfo): Uint8Array<ArrayBuffer> {
  return new StructWriter(AEGIS_GEN_INFO)
    .u32("mode", info.enforce ? 1 : 0)
    .u32("scope_include", info.scopeInclude)
    .u32("scope_exempt", info.scopeExempt)
    .u32("uid_rules", info.uidRules)
    .u32("ingress_port_denies", info.ingressPortDenies).bytes;
}

export function decodeGenInfo(bytes: Uint8Array): GenInfo {
  const view = reader(bytes);
  const f = AEGIS_GEN_INFO.fields;
  return {
    enforce: view.getUint32(f.mode.offset, true) === 1,
    scopeInclude: view.getUint32(f.scope_include.offset, true),
    scopeExempt: view.getUint32(f.scope_exempt.offset, true),
    uidRules: view.getUint32(f.uid_rules.offset, true),
    ingressPortDenies: view.getUint32(f.ingress_port_denies.offset, true),
  };
}

export type InodeKey = { dev: number; ino: bigint; gen: number };

export function encodeInodeKey(key: InodeKey): Uint8Array<ArrayBuffer> {
  return new StructWriter(AEGIS_INODE_KEY).u64("ino", key.ino).u32("dev", key.dev).u32("gen", key.gen).bytes;
}

/** Family 4 or 6; an IPv4 address is 4 bytes, an IPv6 one 16. */
export type NetKey = {
  gen: number;
  family: 4 | 6;
  protocol: number;
  /** Destination port (0 in the maps of port-less rules). */
  port: number;
  addr: Uint8Array;
  /** CIDR length of the rule. */
  prefixLength: number;
};

export function encodeNetKey(key: NetKey): Uint8Array<ArrayBuffer> {
  const bits = key.family === 4 ? 32 : 128;
  if (key.addr.byteLength !== bits / 8) {
    throw new RangeError(`IPv${key.family} address must be ${bits / 8} bytes: got ${key.addr.byteLength}`);
  }
  if (!Number.isInteger(key.prefixLength) || key.prefixLength < 0 || key.prefixLength > bits) {
    throw new RangeError(`IPv${key.family} prefix length must be 0..${bits}: got ${key.prefixLength}`);
  }
  return new StructWriter(AEGIS_NET_KEY)
    .u32("prefixlen", 32 + 8 + 16 + key.prefixLength)
    .u32("space", (key.gen << 8) | key.family)
    .u8("protocol", key.protocol)
    .raw("port", bigEndianPort(key.port))
    .raw("addr", key.addr).bytes;
}

export type Rule = { ruleId: number; allow: boolean; prefixLength: number };

export function encodeRule(rule: Rule): Uint8Array<ArrayBuffer> {
  return new StructWriter(AEGIS_RULE)
    .u32("rule_id", rule.ruleId)
    .u8("action", rule.allow ? 1 : 0)
    .u8("prefix_len", rule.prefixLength).bytes;
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

export function encodeScopeKey(key: { cgroupId: bigint; gen: number }): Uint8Array<ArrayBuffer> {
  return new StructWriter(AEGIS_SCOPE_KEY).u64("cgroup_id", key.cgroupId).u32("gen", key.gen).bytes;
}

export function encodeUidKey(key: { gen: number; uid: number }): Uint8Array<ArrayBuffer> {
  return new StructWriter(AEGIS_UID_KEY).u32("gen", key.gen).u32("uid", key.uid).bytes;
}

export function encodeUidPortKey(key: { gen: number; uid: number; port: number }): Uint8Array<ArrayBuffer> {
  return new StructWriter(AEGIS_UID_PORT_KEY).u32("gen", key.gen).u32("uid", key.uid).u16("port", key.port)
    .bytes;
}

export function encodePortKey(key: { gen: number; port: number; protocol: number }): Uint8Array<ArrayBuffer> {
  return new StructWriter(AEGIS_PORT_KEY).u32("gen", key.gen).u16("port", key.port).u8(
    "protocol",
    key.protocol,
  )
    .bytes;
}

export function encodeIfaceKey(key: { gen: number; ifindex: number }): Uint8Array<ArrayBuffer> {
  return new StructWriter(AEGIS_IFACE_KEY).u32("gen", key.gen).u32("ifindex", key.ifindex).bytes;
}

export function encodeIface(iface: { defaultDrop: boolean; ruleId: number }): Uint8Array<ArrayBuffer> {
  return new StructWriter(AEGIS_IFACE).u32("default_action", iface.defaultDrop ? 0 : 1).u32(
    "rule_id",
    iface.ruleId,
  )
    .bytes;
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

/** The generation a rule-map key belongs to, read from wherever that key type keeps it. */
export function keyGeneration(layout: StructLayout, key: Uint8Array): number {
  const view = reader(key);
  if (layout === AEGIS_NET_KEY) return view.getUint32(AEGIS_NET_KEY.fields.space.offset, true) >>> 8;
  const gen = layout.fields["gen"];
  if (!gen) throw new RangeError(`${layout.name} has no generation`);
  return view.getUint32(gen.offset, true);
}

/** An event record as the kernel wrote it, fields in the product's names. */
export type RawEvent = {
  tsBootNs: bigint;
  cgroupId: bigint;
  ino: bigint;
  dev: number;
  pid: number;
  ppid: number;
  uid: number;
  gid: number;
  ruleId: number;
  count: number;
  ifindex: number;
  hook: number;
  decision: number;
  mode: number;
  family: number;
  protocol: number;
  gen: number;
  dport: number;
  sport: number;
  daddr: Uint8Array;
  saddr: Uint8Array;
  comm: string;
};

const E = AEGIS_EVENT.fields;
const latin1 = new TextDecoder("latin1");

export function decodeEvent(bytes: Uint8Array): RawEvent {
  if (bytes.byteLength < AEGIS_EVENT.size) {
    throw new RangeError(`event record too short: ${bytes.byteLength} < ${AEGIS_EVENT.size} bytes`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const commBytes = bytes.subarray(E.comm.offset, E.comm.offset + E.comm.size);
  const nul = commBytes.indexOf(0);
  return {
    tsBootNs: view.getBigUint64(E.ts_boot_ns.offset, true),
    cgroupId: view.getBigUint64(E.cgroup_id.offset, true),
    ino: view.getBigUint64(E.ino.offset, true),
    dev: view.getUint32(E.dev.offset, true),
    pid: view.getUint32(E.pid.offset, true),
    ppid: view.getUint32(E.ppid.offset, true),
    uid: view.getUint32(E.uid.offset, true),
    gid: view.getUint32(E.gid.offset, true),
    ruleId: view.getUint32(E.rule_id.offset, true),
    count: view.getUint32(E.count.offset, true),
    ifindex: view.getUint32(E.ifindex.offset, true),
    hook: view.getUint8(E.hook.offset),
    decision: view.getUint8(E.decision.offset),
    mode: view.getUint8(E.mode.offset),
    family: view.getUint8(E.family.offset),
    protocol: view.getUint8(E.protocol.offset),
    gen: view.getUint8(E.gen.offset),
    dport: view.getUint16(E.dport.offset, true),
    sport: view.getUint16(E.sport.offset, true),
    daddr: bytes.slice(E.daddr.offset, E.daddr.offset + E.daddr.size),
    saddr: bytes.slice(E.saddr.offset, E.saddr.offset + E.saddr.size),
    comm: latin1.decode(nul < 0 ? commBytes : commBytes.subarray(0, nul)),
  };
}
