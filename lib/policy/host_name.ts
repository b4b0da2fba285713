/**
 * Host names in egress rules (`host: api.example.com`, `host: "*.example.com"`): what a valid pattern is,
 * its canonical form, and whether a pattern covers a name. Names are compared lower-cased, without a
 * trailing dot; a wildcard stands for one or more labels in front of its suffix (`*.example.com` covers
 * `a.example.com` and `a.b.example.com`, not `example.com` itself), as the kernel matches it: by the name
 * and each of its parent suffixes.
 */

/** The longest name DNS carries in text form (RFC 1035: 255 bytes on the wire). */
export const MAX_HOST_NAME = 253;
/** The longest label. */
export const MAX_HOST_LABEL = 63;
/** The most labels a wildcard's domain has (bpf/dns_learn.bpf.h DNS_SUFFIX_SLOTS). */
export const MAX_WILDCARD_DOMAIN_LABELS = 8;

const LDH = /^[a-z0-9-]+$/;

/** Why `text` is not a host pattern, or undefined when it is one. */
export function hostProblem(text: string): string | undefined {
  const example = 'e.g. api.example.com or "*.example.com"';
  if (text.length === 0) return `a host name is not empty; ${example}`;
  const name = text.endsWith(".") && text !== "." ? text.slice(0, -1) : text;
  if (name.length > MAX_HOST_NAME) {
    return `${text.slice(0, 24)}... is ${name.length} bytes long; a host name has at most ${MAX_HOST_NAME}`;
  }
  const labels = name.split(".");
  const wildcard = labels[0] === "*";
  if (wildcard && labels.length === 1) return `"*" alone covers every name; ${example}`;
  for (let index = 0; index < labels.length; index++) {
    const label = labels[index]!;
    if (label.length === 0) return `${text} has an empty label (two dots, or a leading dot); ${example}`;
    if (label === "*") {
      if (index > 0) return `${text} has a wildcard past the first label; only "*." in front is valid`;
      continue;
    }
    if (label.includes("*")) {
      return `${text}: a wildcard is a whole first label ("*.example.com"), never part of one`;
    }
    if (label.length > MAX_HOST_LABEL) {
      return `${text} has a label of ${label.length} bytes; a label has at most ${MAX_HOST_LABEL}`;
    }
    if (!LDH.test(label.toLowerCase())) {
      return `${text} has a character outside letters, digits and "-" (${
        JSON.stringify(label)
      }); write an internationalized name in its xn-- form`;
    }
    if (label.startsWith("-") || label.endsWith("-")) {
      return `${text} has a label that starts or ends with "-"`;
    }
  }
  if (wildcard && labels.length < 3) {
    return `${text} covers a whole top-level domain; name the domain, e.g. "*.example.com"`;
  }
  if (wildcard && labels.length - 1 > MAX_WILDCARD_DOMAIN_LABELS) {
    return `${text}: a wildcard's domain has at most ${MAX_WILDCARD_DOMAIN_LABELS} labels (the kernel matches ` +
      `an answer's name by its last ${MAX_WILDCARD_DOMAIN_LABELS} parent suffixes)`;
  }
  return undefined;
}

/** A valid pattern's canonical form: lower case, no trailing dot. */
export function canonicalHost(text: string): string {
  const lower = text.toLowerCase();
  return lower.endsWith(".") ? lower.slice(0, -1) : lower;
}

/** A canonical pattern, split: `*.example.com` is { wildcard: true, suffix: "example.com" }. */
export function hostPattern(canonical: string): { wildcard: boolean; suffix: string } {
  return canonical.startsWith("*.")
    ? { wildcard: true, suffix: canonical.slice(2) }
    : { wildcard: false, suffix: canonical };
}

/** Whether canonical pattern `pattern` covers `name` (any case, trailing dot or not). */
export function hostCovers(pattern: string, name: string): boolean {
  const host = canonicalHost(name);
  const { wildcard, suffix } = hostPattern(pattern);
  return wildcard ? host.endsWith(`.${suffix}`) : host === suffix;
}

const FNV_OFFSET = 0xcbf29ce484222325n;
const FNV_PRIME = 0x100000001b3n;
const U64 = 0xffffffffffffffffn;

/**
 * The 64-bit key of a name in the kernel's rule map: FNV-1a over the canonical name's bytes. The kernel
 * computes the same while it reads an answer's name (a '.' between labels): an exact pattern is one lookup.
 */
export function hostKey(canonical: string): bigint {
  return fnv1a(FNV_OFFSET, canonical);
}

/**
 * The 64-bit key of a wildcard's domain (`example.com` of `*.example.com`): each label's FNV-1a, folded
 * from the last label to the first (xor, multiply by the FNV prime, then the high half into the low). The
 * kernel hashes each label of an answer's name once as it reads it, and folds the last labels the same way
 * when the name ends: every parent suffix is then one lookup, with no per-byte work per suffix.
 */
export function domainKey(canonical: string): bigint {
  let key = FNV_OFFSET;
  for (const label of canonical.split(".").reverse()) {
    key = ((key ^ fnv1a(FNV_OFFSET, label)) * FNV_PRIME) & U64;
    key ^= key >> 32n;
  }
  return key;
}

/** The kernel's key of a canonical pattern: hostKey of a name, domainKey of a wildcard's domain. */
export function patternKey(canonical: string): { wildcard: boolean; key: bigint } {
  const { wildcard, suffix } = hostPattern(canonical);
  return { wildcard, key: wildcard ? domainKey(suffix) : hostKey(suffix) };
}

/**
 * The label counts of the wildcards' domains among `patterns` (bit n for n labels) and whether one is an
 * exact name: the kernel looks an answer's name up only by the suffixes of those lengths.
 */
export function patternShapes(patterns: Iterable<string>): { exact: boolean; wildcardLabels: number } {
  let exact = false;
  let wildcardLabels = 0;
  for (const pattern of patterns) {
    const { wildcard, suffix } = hostPattern(pattern);
    if (wildcard) wildcardLabels |= 1 << suffix.split(".").length;
    else exact = true;
  }
  return { exact, wildcardLabels };
}

function fnv1a(seed: bigint, text: string): bigint {
  let hash = seed;
  for (let i = 0; i < text.length; i++) {
    hash ^= BigInt(text.charCodeAt(i));
    hash = (hash * FNV_PRIME) & U64;
  }
  return hash;
}

/**
 * Well-known DNS-over-HTTPS endpoints: a program that reaches one resolves names through an encrypted
 * channel no DNS hook sees, so an allowlist that allows one lets names be learned around the policy.
 */
export const DOH_NAMES: readonly string[] = [
  "dns.google",
  "dns.google.com",
  "cloudflare-dns.com",
  "mozilla.cloudflare-dns.com",
  "one.one.one.one",
  "1dot1dot1dot1.cloudflare-dns.com",
  "dns.quad9.net",
  "dns9.quad9.net",
  "dns10.quad9.net",
  "dns11.quad9.net",
  "doh.opendns.com",
  "dns.adguard.com",
  "dns.adguard-dns.com",
  "doh.cleanbrowsing.org",
  "dns.nextdns.io",
  "doh.mullvad.net",
];

/** The addresses those endpoints answer on (HTTPS on 443). */
export const DOH_ADDRESSES: readonly string[] = [
  "8.8.8.8",
  "8.8.4.4",
  "1.1.1.1",
  "1.0.0.1",
  "9.9.9.9",
  "149.112.112.112",
  "208.67.222.222",
  "208.67.220.220",
  "94.140.14.14",
  "2001:4860:4860::8888",
  "2001:4860:4860::8844",
  "2606:4700:4700::1111",
  "2606:4700:4700::1001",
  "2620:fe::fe",
];

/** DNS over TLS (RFC 7858). */
export const DOT_PORT = 853;
