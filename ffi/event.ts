import { SIZES } from "./constants.ts";
import { struct } from "./struct.ts";

/** The ring buffer record, `struct aegis_event` in bpf/aegis.h. */
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
  flags: { offset: 66, size: 1 },
  signal: { offset: 67, size: 1 },
  op: { offset: 68, size: 1 },
  _pad0: { offset: 69, size: 1 },
  exception: { offset: 70, size: 2 },
  daddr: { offset: 72, size: 16 },
  saddr: { offset: 88, size: 16 },
  comm: { offset: 104, size: SIZES.COMM_LEN },
});

/** An address as four 32-bit words in network order: IPv4 is the first word, IPv6 all four. */
export type AddressWords = readonly [number, number, number, number];

const ZERO_ADDRESS: AddressWords = Object.freeze([0, 0, 0, 0] as const);

/**
 * An event record as the kernel wrote it, fields in the product's names. Decoding allocates nothing but
 * this object, its comm string (cached) and, for addresses that are not all zero, two small arrays: the
 * 64-bit fields are kept as exact 32-bit halves (a double holds boot-clock nanoseconds exactly only for
 * the first 104 days of uptime) and read as bigint through getters, the addresses as words and read as
 * bytes through getters. The getters allocate: the event pipeline uses the halves and words.
 */
export class RawEvent {
  constructor(
    /** CLOCK_BOOTTIME nanoseconds (bpf_ktime_get_boot_ns), high and low 32 bits. */
    readonly tsHi: number,
    readonly tsLo: number,
    readonly cgroupIdHi: number,
    readonly cgroupIdLo: number,
    readonly inoHi: number,
    readonly inoLo: number,
    readonly dev: number,
    readonly pid: number,
    readonly ppid: number,
    /** Effective uid and gid. */
    readonly uid: number,
    readonly gid: number,
    readonly ruleId: number,
    /** Decisions this record stands for. */
    readonly count: number,
    readonly ifindex: number,
    readonly dport: number,
    readonly sport: number,
    readonly hook: number,
    readonly decision: number,
    readonly mode: number,
    readonly family: number,
    readonly protocol: number,
    readonly gen: number,
    readonly flags: number,
    /** The signal the kernel sent to the task it denied (SIGNAL.*), 0 when none. */
    readonly signal: number,
    /** What the task tried, for hooks that judge several operations (file.change, ...); else 0. */
    readonly op: number,
    /** The expiring exception that let a denied access through, else 0. */
    readonly exception: number,
    readonly daddrWords: AddressWords,
    readonly saddrWords: AddressWords,
    readonly comm: string,
  ) {}

  get tsBootNs(): bigint {
    return join64(this.tsHi, this.tsLo);
  }

  get cgroupId(): bigint {
    return join64(this.cgroupIdHi, this.cgroupIdLo);
  }

  get ino(): bigint {
    return join64(this.inoHi, this.inoLo);
  }

  get daddr(): Uint8Array<ArrayBuffer> {
    return addressBytes(this.daddrWords);
  }

  get saddr(): Uint8Array<ArrayBuffer> {
    return addressBytes(this.saddrWords);
  }
}

/** The stored fields of a RawEvent, without the getters. */
export type RawEventFields =
  & Omit<RawEvent, "tsBootNs" | "cgroupId" | "ino" | "daddr" | "saddr" | "exception">
  & { exception?: number };

/** A RawEvent from named fields (tests and tools that build records). */
export function rawEvent(f: RawEventFields): RawEvent {
  return new RawEvent(
    f.tsHi,
    f.tsLo,
    f.cgroupIdHi,
    f.cgroupIdLo,
    f.inoHi,
    f.inoLo,
    f.dev,
    f.pid,
    f.ppid,
    f.uid,
    f.gid,
    f.ruleId,
    f.count,
    f.ifindex,
    f.dport,
    f.sport,
    f.hook,
    f.decision,
    f.mode,
    f.family,
    f.protocol,
    f.gen,
    f.flags,
    f.signal,
    f.op,
    f.exception ?? 0,
    f.daddrWords,
    f.saddrWords,
    f.comm,
  );
}

function join64(hi: number, lo: number): bigint {
  return (BigInt(hi) << 32n) | BigInt(lo);
}

function addressBytes(words: AddressWords): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(16);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < 4; i++) view.setUint32(i * 4, words[i]!, false);
  return bytes;
}

/** An address of 16 bytes (network order) as words. */
export function addressWords(bytes: Uint8Array): AddressWords {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const word = (i: number) => i * 4 + 4 <= bytes.byteLength ? view.getUint32(i * 4, false) : 0;
  return [word(0), word(1), word(2), word(3)];
}

const E = AEGIS_EVENT.fields;

/**
 * Decodes the record at `offset` of `view` (a ring buffer's data view, say): nothing is kept of the view.
 * Throws a RangeError when fewer than 120 bytes are left.
 */
export function decodeEventAt(view: DataView, offset: number, size = view.byteLength - offset): RawEvent {
  if (size < AEGIS_EVENT.size || offset + AEGIS_EVENT.size > view.byteLength) {
    throw new RangeError(`Event record too short: ${size} < ${AEGIS_EVENT.size} bytes`);
  }
  return new RawEvent(
    view.getUint32(offset + E.ts_boot_ns.offset + 4, true),
    view.getUint32(offset + E.ts_boot_ns.offset, true),
    view.getUint32(offset + E.cgroup_id.offset + 4, true),
    view.getUint32(offset + E.cgroup_id.offset, true),
    view.getUint32(offset + E.ino.offset + 4, true),
    view.getUint32(offset + E.ino.offset, true),
    view.getUint32(offset + E.dev.offset, true),
    view.getUint32(offset + E.pid.offset, true),
    view.getUint32(offset + E.ppid.offset, true),
    view.getUint32(offset + E.uid.offset, true),
    view.getUint32(offset + E.gid.offset, true),
    view.getUint32(offset + E.rule_id.offset, true),
    view.getUint32(offset + E.count.offset, true),
    view.getUint32(offset + E.ifindex.offset, true),
    view.getUint16(offset + E.dport.offset, true),
    view.getUint16(offset + E.sport.offset, true),
    view.getUint8(offset + E.hook.offset),
    view.getUint8(offset + E.decision.offset),
    view.getUint8(offset + E.mode.offset),
    view.getUint8(offset + E.family.offset),
    view.getUint8(offset + E.protocol.offset),
    view.getUint8(offset + E.gen.offset),
    view.getUint8(offset + E.flags.offset),
    view.getUint8(offset + E.signal.offset),
    view.getUint8(offset + E.op.offset),
    view.getUint16(offset + E.exception.offset, true),
    readAddress(view, offset + E.daddr.offset),
    readAddress(view, offset + E.saddr.offset),
    readComm(view, offset + E.comm.offset),
  );
}

/** Decodes a record copied out of the ring (tests, tools). */
export function decodeEvent(bytes: Uint8Array): RawEvent {
  return decodeEventAt(new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength), 0);
}

function readAddress(view: DataView, offset: number): AddressWords {
  const a = view.getUint32(offset, false);
  const b = view.getUint32(offset + 4, false);
  const c = view.getUint32(offset + 8, false);
  const d = view.getUint32(offset + 12, false);
  return (a | b | c | d) === 0 ? ZERO_ADDRESS : [a, b, c, d];
}

/**
 * comm strings by their 16 bytes, direct-mapped: a flood repeats a handful of process names, and a hit
 * costs four reads and four compares instead of building a string.
 */
const COMM_SLOTS = 256;
const commKeys = new Int32Array(COMM_SLOTS * 4);
const commValues: string[] = new Array<string>(COMM_SLOTS).fill("");
const utf8 = new TextDecoder();

function readComm(view: DataView, offset: number): string {
  const a = view.getInt32(offset, true);
  const b = view.getInt32(offset + 4, true);
  const c = view.getInt32(offset + 8, true);
  const d = view.getInt32(offset + 12, true);
  const slot = (Math.imul(a ^ Math.imul(b, 0x9e3779b1) ^ Math.imul(c, 0x85ebca6b) ^ d, 0x27d4eb2f) >>> 24) *
    4;
  if (
    commKeys[slot] === a && commKeys[slot + 1] === b && commKeys[slot + 2] === c && commKeys[slot + 3] === d
  ) {
    return commValues[slot >> 2]!;
  }
  const text = decodeComm(view, offset);
  commKeys[slot] = a;
  commKeys[slot + 1] = b;
  commKeys[slot + 2] = c;
  commKeys[slot + 3] = d;
  commValues[slot >> 2] = text;
  return text;
}

/** The bytes before the first NUL: ASCII by hand, anything else as UTF-8 (what task names hold). */
function decodeComm(view: DataView, offset: number): string {
  let text = "";
  for (let i = 0; i < SIZES.COMM_LEN; i++) {
    const byte = view.getUint8(offset + i);
    if (byte === 0) break;
    if (byte >= 0x80) {
      let end = i;
      while (end < SIZES.COMM_LEN && view.getUint8(offset + end) !== 0) end++;
      const bytes = new Uint8Array(view.buffer, view.byteOffset + offset, end);
      return utf8.decode(bytes);
    }
    text += String.fromCharCode(byte);
  }
  return text;
}
