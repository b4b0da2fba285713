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

export const AEGIS_CONFIG = struct("aegis_config", 24, {
  mode: { offset: 0, size: 4 },
  active_gen: { offset: 4, size: 4 },
  break_glass: { offset: 8, size: 4 },
  _pad0: { offset: 12, size: 4 },
  deadman_deadline_ns: { offset: 16, size: 8 },
});

export const AEGIS_INODE_KEY = struct("aegis_inode_key", 16, {
  ino: { offset: 0, size: 8 },
  dev: { offset: 8, size: 4 },
  gen: { offset: 12, size: 4 },
});

export const AEGIS_LPM4_KEY = struct("aegis_lpm4_key", 12, {
  prefixlen: { offset: 0, size: 4 },
  gen: { offset: 4, size: 4 },
  addr: { offset: 8, size: 4 },
});

export const AEGIS_RULE = struct("aegis_rule", 8, {
  rule_id: { offset: 0, size: 4 },
  action: { offset: 4, size: 4 },
});

export const AEGIS_EVENT = struct("aegis_event", 112, {
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
  hook: { offset: 52, size: 1 },
  decision: { offset: 53, size: 1 },
  mode: { offset: 54, size: 1 },
  family: { offset: 55, size: 1 },
  protocol: { offset: 56, size: 1 },
  _pad0: { offset: 57, size: 1 },
  dport: { offset: 58, size: 2 },
  sport: { offset: 60, size: 2 },
  _pad1: { offset: 62, size: 2 },
  daddr: { offset: 64, size: 16 },
  saddr: { offset: 80, size: 16 },
  comm: { offset: 96, size: 16 },
});

/** Every mirrored struct, for the BTF comparison test. */
export const LAYOUTS: readonly StructLayout[] = [
  AEGIS_CONFIG,
  AEGIS_INODE_KEY,
  AEGIS_LPM4_KEY,
  AEGIS_RULE,
  AEGIS_EVENT,
];

export type AegisConfig = {
  mode: number;
  activeGen: number;
  breakGlass: number;
  deadmanDeadlineNs: bigint;
};

const F = {
  config: AEGIS_CONFIG.fields,
  inode: AEGIS_INODE_KEY.fields,
  lpm4: AEGIS_LPM4_KEY.fields,
} as const;

export function encodeConfig(config: AegisConfig): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(AEGIS_CONFIG.size);
  const view = new DataView(bytes.buffer);
  view.setUint32(F.config.mode.offset, config.mode, true);
  view.setUint32(F.config.active_gen.offset, config.activeGen, true);
  view.setUint32(F.config.break_glass.offset, config.breakGlass, true);
  view.setBigUint64(F.config.deadman_deadline_ns.offset, config.deadmanDeadlineNs, true);
  return bytes;
}

export function decodeConfig(bytes: Uint8Array): AegisConfig {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return {
    mode: view.getUint32(F.config.mode.offset, true),
    activeGen: view.getUint32(F.config.active_gen.offset, true),
    breakGlass: view.getUint32(F.config.break_glass.offset, true),
    deadmanDeadlineNs: view.getBigUint64(F.config.deadman_deadline_ns.offset, true),
  };
}

export type InodeKey = { dev: number; ino: bigint; gen: number };

export function encodeInodeKey(key: InodeKey): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(AEGIS_INODE_KEY.size);
  const view = new DataView(bytes.buffer);
  view.setBigUint64(F.inode.ino.offset, key.ino, true);
  view.setUint32(F.inode.dev.offset, key.dev, true);
  view.setUint32(F.inode.gen.offset, key.gen, true);
  return bytes;
}

/** An IPv4 prefix in generation `gen`; `prefixLength` is the CIDR length (0..32). */
export type Lpm4Key = { gen: number; addr: Uint8Array; prefixLength: number };

export function encodeLpm4Key(key: Lpm4Key): Uint8Array<ArrayBuffer> {
  if (key.addr.length !== 4) throw new RangeError(`IPv4 address must be 4 bytes: got ${key.addr.length}`);
  if (key.prefixLength < 0 || key.prefixLength > 32) {
    throw new RangeError(`IPv4 prefix length must be 0..32: got ${key.prefixLength}`);
  }
  const bytes = new Uint8Array(AEGIS_LPM4_KEY.size);
  const view = new DataView(bytes.buffer);
  view.setUint32(F.lpm4.prefixlen.offset, 32 + key.prefixLength, true);
  view.setUint32(F.lpm4.gen.offset, key.gen, true);
  bytes.set(key.addr, F.lpm4.addr.offset);
  return bytes;
}

export type Rule = { ruleId: number; action: number };

export function encodeRule(rule: Rule): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(AEGIS_RULE.size);
  const view = new DataView(bytes.buffer);
  view.setUint32(AEGIS_RULE.fields.rule_id.offset, rule.ruleId, true);
  view.setUint32(AEGIS_RULE.fields.action.offset, rule.action, true);
  return bytes;
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
  hook: number;
  decision: number;
  mode: number;
  family: number;
  protocol: number;
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
    hook: view.getUint8(E.hook.offset),
    decision: view.getUint8(E.decision.offset),
    mode: view.getUint8(E.mode.offset),
    family: view.getUint8(E.family.offset),
    protocol: view.getUint8(E.protocol.offset),
    dport: view.getUint16(E.dport.offset, true),
    sport: view.getUint16(E.sport.offset, true),
    daddr: bytes.slice(E.daddr.offset, E.daddr.offset + E.daddr.size),
    saddr: bytes.slice(E.saddr.offset, E.saddr.offset + E.saddr.size),
    comm: latin1.decode(nul < 0 ? commBytes : commBytes.subarray(0, nul)),
  };
}
