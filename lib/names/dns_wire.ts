/**
 * The DNS wire format (RFC 1035), as far as names need it: a query for one name and type, and the A and
 * AAAA addresses an answer gives for that name, following CNAME records inside the answer. Pure; the
 * resolver and the tests' DNS server share it.
 */

export const TYPE = { A: 1, CNAME: 5, AAAA: 28 } as const;
const CLASS_IN = 1;
/** Compression pointers followed while reading one name: more is a loop. */
const MAX_POINTERS = 16;
/** CNAME links followed from the question's name. */
const MAX_CNAME_CHAIN = 8;

/** A malformed message: a name past the end, a pointer loop, a record cut short. */
export class DnsWireError extends SyntaxError {
  override name = "DnsWireError";
}

/** A resource record of an answer section, its name lower-cased without the trailing dot. */
export type DnsRecord = { name: string; type: number; ttl: number; data: Uint8Array; target?: string };

export type DnsMessage = {
  id: number;
  response: boolean;
  truncated: boolean;
  rcode: number;
  question?: { name: string; type: number };
  answers: DnsRecord[];
};

/** A query (recursion desired) for `name` and `type`. */
export function encodeQuery(id: number, name: string, type: number): Uint8Array<ArrayBuffer> {
  const qname = encodeName(name);
  const message = new Uint8Array(12 + qname.length + 4);
  const view = new DataView(message.buffer);
  view.setUint16(0, id);
  view.setUint16(2, 0x0100); // RD
  view.setUint16(4, 1); // QDCOUNT
  message.set(qname, 12);
  view.setUint16(12 + qname.length, type);
  view.setUint16(14 + qname.length, CLASS_IN);
  return message;
}

/** A name as labels with their lengths, ending in the root's empty label. */
export function encodeName(name: string): Uint8Array {
  const labels = name.replace(/\.$/, "").split(".").filter((label) => label.length > 0);
  const bytes: number[] = [];
  for (const label of labels) {
    const encoded = new TextEncoder().encode(label);
    if (encoded.length > 63) throw new DnsWireError(`label ${label} is longer than 63 bytes`);
    bytes.push(encoded.length, ...encoded);
  }
  bytes.push(0);
  return new Uint8Array(bytes);
}

/** Reads a message; throws DnsWireError when it is malformed. */
export function decodeMessage(bytes: Uint8Array): DnsMessage {
  if (bytes.length < 12) throw new DnsWireError(`a DNS message of ${bytes.length} bytes has no header`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const flags = view.getUint16(2);
  const questions = view.getUint16(4);
  const answerCount = view.getUint16(6);
  let offset = 12;
  let question: DnsMessage["question"];
  for (let i = 0; i < questions; i++) {
    const [name, next] = readName(bytes, offset);
    need(bytes, next, 4);
    if (i === 0) question = { name, type: view.getUint16(next) };
    offset = next + 4;
  }
  const answers: DnsRecord[] = [];
  for (let i = 0; i < answerCount; i++) {
    const [name, next] = readName(bytes, offset);
    need(bytes, next, 10);
    const type = view.getUint16(next);
    const ttl = view.getUint32(next + 4);
    const length = view.getUint16(next + 8);
    need(bytes, next + 10, length);
    const data = bytes.subarray(next + 10, next + 10 + length);
    const record: DnsRecord = { name, type, ttl, data };
    if (type === TYPE.CNAME) record.target = readName(bytes, next + 10)[0];
    answers.push(record);
    offset = next + 10 + length;
  }
  return {
    id: view.getUint16(0),
    response: (flags & 0x8000) !== 0,
    truncated: (flags & 0x0200) !== 0,
    rcode: flags & 0xf,
    ...question && { question },
    answers,
  };
}

/** An address an answer gives for a name, with its TTL in seconds. */
export type AnsweredAddress = { addr: string; ttl: number };

/**
 * The A and AAAA addresses `message` gives for `name`: records of the name itself or of the names a CNAME
 * chain from it leads to (within the answer, at most MAX_CNAME_CHAIN links). Each address keeps the least
 * TTL along its chain.
 */
export function answeredAddresses(message: DnsMessage, name: string): AnsweredAddress[] {
  const found: AnsweredAddress[] = [];
  let current = canonical(name);
  let ttl = Number.MAX_SAFE_INTEGER;
  for (let link = 0; link <= MAX_CNAME_CHAIN; link++) {
    for (const record of message.answers) {
      if (record.name !== current) continue;
      if (record.type === TYPE.A && record.data.length === 4) {
        found.push({ addr: [...record.data].join("."), ttl: Math.min(ttl, record.ttl) });
      } else if (record.type === TYPE.AAAA && record.data.length === 16) {
        found.push({ addr: ipv6Text(record.data), ttl: Math.min(ttl, record.ttl) });
      }
    }
    const alias = message.answers.find((record) => record.type === TYPE.CNAME && record.name === current);
    if (!alias?.target) break;
    ttl = Math.min(ttl, alias.ttl);
    current = alias.target;
  }
  return found;
}

function canonical(name: string): string {
  return name.toLowerCase().replace(/\.$/, "");
}

function ipv6Text(bytes: Uint8Array): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
  return groups.join(":");
}

function need(bytes: Uint8Array, offset: number, length: number): void {
  if (offset + length > bytes.length) throw new DnsWireError("a record runs past the end of the message");
}

/** The name at `offset` (lower case, no trailing dot) and the offset after it where it was written. */
function readName(bytes: Uint8Array, offset: number): [string, number] {
  const labels: string[] = [];
  let at = offset;
  let end = -1;
  let total = 0;
  for (let pointers = 0;;) {
    need(bytes, at, 1);
    const length = bytes[at]!;
    if (length === 0) {
      if (end < 0) end = at + 1;
      break;
    }
    if ((length & 0xc0) === 0xc0) {
      need(bytes, at, 2);
      if (++pointers > MAX_POINTERS) throw new DnsWireError("a name's compression pointers loop");
      if (end < 0) end = at + 2;
      at = ((length & 0x3f) << 8) | bytes[at + 1]!;
      continue;
    }
    if (length > 63) throw new DnsWireError(`a label of length ${length}`);
    need(bytes, at + 1, length);
    total += length + 1;
    if (total > 255) throw new DnsWireError("a name longer than 255 bytes");
    labels.push(String.fromCharCode(...bytes.subarray(at + 1, at + 1 + length)).toLowerCase());
    at += length + 1;
  }
  return [labels.join("."), end];
}

/** An answer to `query` (the tests' DNS server): the question echoed, then `records`. */
export function encodeAnswer(
  query: { id: number; name: string; type: number },
  records: { name: string; type: number; ttl: number; data: Uint8Array }[],
  options: { truncated?: boolean; rcode?: number } = {},
): Uint8Array<ArrayBuffer> {
  const parts: number[] = [];
  const u16 = (value: number) => parts.push(value >> 8 & 0xff, value & 0xff);
  const u32 = (value: number) => {
    u16(value >>> 16);
    u16(value & 0xffff);
  };
  u16(query.id);
  u16(0x8180 | (options.truncated ? 0x0200 : 0) | (options.rcode ?? 0));
  u16(1);
  u16(records.length);
  u16(0);
  u16(0);
  parts.push(...encodeName(query.name));
  u16(query.type);
  u16(CLASS_IN);
  for (const record of records) {
    parts.push(...encodeName(record.name));
    u16(record.type);
    u16(CLASS_IN);
    u32(record.ttl);
    u16(record.data.length);
    parts.push(...record.data);
  }
  return new Uint8Array(parts);
}
