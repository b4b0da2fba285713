/** CIDR text to address bytes: `10.0.0.0/8`, `2001:db8::/32`, a bare address (a host route). */

export type Cidr = { family: 4 | 6; addr: Uint8Array<ArrayBuffer>; prefixLength: number };

export class CidrError extends SyntaxError {
  override name = "CidrError";
}

export function parseCidr(text: string): Cidr {
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
  for (let bit = cidr.prefixLength; bit < addr.length * 8; bit++) addr[bit >> 3]! &= ~(0x80 >> (bit & 7));
  return { family: cidr.family, addr, prefixLength: cidr.prefixLength };
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
