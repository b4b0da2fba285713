/** CIDR text to address bytes: `10.0.0.0/8`, `2001:db8::/32`, a bare address (a host route). */

export type Cidr = { family: 4 | 6; addr: Uint8Array<ArrayBuffer>; prefixLength: number };

export class CidrError extends SyntaxError {
  override name = "CidrError";
}

export function parseCidr(text: string): Cidr {
  return parseIpv4Cidr(text) ?? parseCidrSlowly(text);
}

function parseCidrSlowly(text: string): Cidr {
  const [address = "", length, extra] = text.trim().split("/");
  if (extra !== undefined) throw new CidrError(`Invalid CIDR ${JSON.stringify(text)}: more than one "/"`);
  const family = address.includes(":") ? 6 : 4;
  const addr = family === 4 ? parseIpv4(address, text) : parseIpv6(address, text);
  const bits = addr.length * 8;
  const prefixLength = length === undefined ? bits : Number(length);
  if (!/^\d+$/.test(length ?? String(bits)) || prefixLength > bits) {
    throw new CidrError(`Invalid CIDR ${JSON.stringify(text)}: prefix length must be 0..${bits}`);
  }
  return { family, addr, prefixLength };
}

const DOT = 46;
const SLASH = 47;
const ZERO = 48;

/**
 * The common case, `a.b.c.d` or `a.b.c.d/n` written plainly, read without building strings: a fleet
 * policy may hold 100,000 of them. Anything else (spaces, IPv6, a mistake) returns undefined and takes
 * the general path, which also words the errors.
 */
function parseIpv4Cidr(text: string): Cidr | undefined {
  const prefixLength = scanIpv4(text);
  if (prefixLength < 0) return undefined;
  const addr = ipv4Bytes();
  addr[0] = scanned >>> 24;
  addr[1] = (scanned >>> 16) & 0xff;
  addr[2] = (scanned >>> 8) & 0xff;
  addr[3] = scanned & 0xff;
  return { family: 4, addr, prefixLength };
}

/** Room for the addresses of many rules at once: a buffer per 4-byte address costs more than the address. */
let slab = new ArrayBuffer(0);
let slabUsed = 0;

/** Four bytes of their own (a view no other address shares), cut from the current slab. */
function ipv4Bytes(): Uint8Array<ArrayBuffer> {
  if (slabUsed === slab.byteLength) {
    slab = new ArrayBuffer(4096);
    slabUsed = 0;
  }
  const bytes = new Uint8Array(slab, slabUsed, 4);
  slabUsed += 4;
  return bytes;
}

/** Whether `text` is a plain IPv4 network (`a.b.c.d/n` with no host bits set), checked with no allocation. */
export function isPlainIpv4Network(text: string): boolean {
  const prefixLength = scanIpv4(text);
  if (prefixLength < 0) return false;
  return prefixLength === 0 ? scanned === 0 : ((scanned << prefixLength) >>> 0) === 0 || prefixLength === 32;
}

/** The address scanIpv4 read last, as an unsigned 32-bit number. */
let scanned = 0;

/** The prefix length of a plain IPv4 CIDR (32 for a bare address), its address left in `scanned`; else -1. */
function scanIpv4(text: string): number {
  let address = 0;
  let at = 0;
  for (let part = 0; part < 4; part++) {
    let value = 0;
    let digits = 0;
    for (; at < text.length && digits < 4; at++, digits++) {
      const digit = text.charCodeAt(at) - ZERO;
      if (digit < 0 || digit > 9) break;
      value = value * 10 + digit;
    }
    if (digits === 0 || digits > 3 || value > 255) return -1;
    address = address * 256 + value;
    if (part < 3) {
      if (text.charCodeAt(at) !== DOT) return -1;
      at++;
    }
  }
  scanned = address >>> 0;
  if (at === text.length) return 32;
  if (text.charCodeAt(at) !== SLASH || at + 1 === text.length || text.length - at > 3) return -1;
  let prefixLength = 0;
  for (at++; at < text.length; at++) {
    const digit = text.charCodeAt(at) - ZERO;
    if (digit < 0 || digit > 9) return -1;
    prefixLength = prefixLength * 10 + digit;
  }
  return prefixLength > 32 ? -1 : prefixLength;
}

function parseIpv4(address: string, text: string): Uint8Array<ArrayBuffer> {
  const parts = address.split(".");
  if (parts.length !== 4 || parts.some((part) => !/^\d{1,3}$/.test(part) || Number(part) > 255)) {
    throw new CidrError(`Invalid IPv4 address in ${JSON.stringify(text)}`);
  }
  return new Uint8Array(parts.map(Number));
}

function parseIpv6(address: string, text: string): Uint8Array<ArrayBuffer> {
  const invalid = () => new CidrError(`Invalid IPv6 address in ${JSON.stringify(text)}`);
  let groups = address;
  const tail: number[] = [];
  // A dotted IPv4 tail (::ffff:10.0.0.1) stands for the last two groups.
  const dotted = /^(.*:)(\d+\.\d+\.\d+\.\d+)$/.exec(address);
  if (dotted) {
    groups = `${dotted[1]}0:0`;
    tail.push(...parseIpv4(dotted[2] ?? "", text));
  }
  const halves = groups.split("::");
  if (halves.length > 2) throw invalid();
  const parse = (half: string) => half === "" ? [] : half.split(":");
  const head = parse(halves[0] ?? "");
  const rest = halves.length === 2 ? parse(halves[1] ?? "") : [];
  const missing = 8 - head.length - rest.length;
  if ((halves.length === 1 && missing !== 0) || (halves.length === 2 && missing < 1)) throw invalid();
  const all = [...head, ...Array<string>(halves.length === 2 ? missing : 0).fill("0"), ...rest];
  if (all.some((group) => !/^[0-9a-fA-F]{1,4}$/.test(group))) throw invalid();
  const bytes = new Uint8Array(16);
  all.forEach((group, i) => {
    const value = parseInt(group, 16);
    bytes[i * 2] = value >> 8;
    bytes[i * 2 + 1] = value & 0xff;
  });
  if (tail.length === 4) bytes.set(tail, 12);
  return bytes;
}

/**
 * An IPv4-mapped IPv6 network (`::ffff:10.0.0.0/104`) as the IPv4 network it stands for: the hooks
 * match mapped addresses as IPv4, so a rule written either way must be keyed as IPv4.
 */
export function unmapIpv4(cidr: Cidr): Cidr {
  const { addr, prefixLength } = cidr;
  const mapped = cidr.family === 6 && prefixLength >= 96 &&
    addr.subarray(0, 10).every((byte) => byte === 0) &&
    addr[10] === 0xff && addr[11] === 0xff;
  return mapped ? { family: 4, addr: addr.slice(12), prefixLength: prefixLength - 96 } : cidr;
}

/** The network of a CIDR: its address with the host bits cleared, so 10.1.2.3/8 becomes 10.0.0.0/8. */
export function networkOf(cidr: Cidr): Cidr {
  const addr = new Uint8Array(cidr.addr);
  clearHostBits(addr, cidr.prefixLength);
  return { family: cidr.family, addr, prefixLength: cidr.prefixLength };
}

/** Clears, in place, the bits of `addr` past the first `prefixLength`. */
export function clearHostBits(addr: Uint8Array, prefixLength: number): void {
  const whole = prefixLength >> 3;
  if (whole >= addr.length) return;
  addr[whole]! &= (0xff00 >> (prefixLength & 7)) & 0xff;
  addr.fill(0, whole + 1);
}

/** Whether `cidr` has bits set past its prefix (10.1.2.3/8 has; 10.0.0.0/8 has not). */
export function hasHostBits(cidr: Cidr): boolean {
  const { addr, prefixLength } = cidr;
  const whole = prefixLength >> 3;
  if (whole >= addr.length) return false;
  if ((addr[whole]! & (0xff >> (prefixLength & 7))) !== 0) return true;
  for (let i = whole + 1; i < addr.length; i++) if (addr[i] !== 0) return true;
  return false;
}

/** Whether every address of `inner` (a network or a single address) lies in `outer`. */
export function cidrContains(outer: Cidr, inner: Cidr): boolean {
  if (outer.family !== inner.family || outer.prefixLength > inner.prefixLength) return false;
  const whole = outer.prefixLength >> 3;
  for (let i = 0; i < whole; i++) if (outer.addr[i] !== inner.addr[i]) return false;
  const rest = outer.prefixLength & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return ((outer.addr[whole]! ^ inner.addr[whole]!) & mask) === 0;
}
