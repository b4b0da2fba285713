/**
 * The learned-address table (map `learned`, bpf/name_guard.bpf.h): the addresses names that rules cover were
 * resolved to, each with the pattern that covers the name and an expiry the kernel checks.
 */
import {
  type BpfMap,
  decodeLearned,
  decodeLearnedKey,
  DNS_STAT,
  encodeLearned,
  encodeLearnedKey,
  encodeU32,
  type Learned,
  type LearnedKey,
  RULE,
  sumPerCpu,
} from "../../ffi/mod.ts";
import { parseCidr, unmapIpv4 } from "../policy/cidr.ts";
import { coveringPattern } from "../policy/decide.ts";
import { patternKey } from "../policy/host_name.ts";
import type { HostRule } from "../policy/plan.ts";

/** The least TTL an address is kept for, in seconds, unless the policy says otherwise (nameTtlFloor). */
export const DEFAULT_TTL_FLOOR = 30;

/** The kernel's form of the pattern that decides for `name` (decide.ts `coveringPattern`), or undefined. */
export function learnedPattern(
  rules: readonly HostRule[],
  name: string,
): { kind: number; hostKey: bigint } | undefined {
  const pattern = coveringPattern(rules, name);
  if (pattern === undefined) return undefined;
  const { wildcard, key } = patternKey(pattern);
  return { kind: wildcard ? RULE.HOST_WILDCARD : RULE.HOST, hostKey: key };
}

/** An address answered for a name, and how long the answer holds. */
export type Answer = { name: string; addr: string; ttl: number };

/**
 * Writes each answer for a name some rule covers into the table: expiring after its TTL, at least
 * `floorSeconds`, from `nowBootNs` (CLOCK_BOOTTIME). An address answered for another name before is the
 * latest name's.
 */
export function learn(
  map: BpfMap,
  rules: readonly HostRule[],
  answers: readonly Answer[],
  options: { nowBootNs: bigint; floorSeconds: number; stats?: BpfMap },
): void {
  let inserted = 0;
  for (const answer of answers) {
    const pattern = learnedPattern(rules, answer.name);
    if (!pattern) continue;
    const seconds = Math.max(answer.ttl, options.floorSeconds);
    const expiresBootNs = options.nowBootNs + BigInt(seconds) * 1_000_000_000n;
    const key = encodeLearnedKey(addressKey(answer.addr));
    if (options.stats && map.lookup(key) === undefined) inserted++;
    map.update(key, encodeLearned({ expiresBootNs, ...pattern }));
  }
  if (options.stats && inserted > 0) addToFirstCpu(options.stats, DNS_STAT.USER_INSERTED, inserted);
}

/** Adds `n` to CPU 0's value of per-CPU array slot `slot` (one the kernel never writes). */
function addToFirstCpu(map: BpfMap, slot: number, n: number): void {
  const key = encodeU32(slot);
  const values = map.lookup(key);
  if (!values || values.length < 8) return;
  const view = new DataView(values.buffer, values.byteOffset, values.byteLength);
  view.setBigUint64(0, view.getBigUint64(0, true) + BigInt(n), true);
  map.update(key, values);
}

/** The table's key of an address (an IPv4-mapped IPv6 address is the IPv4 one, as the hooks match it). */
export function addressKey(addr: string): LearnedKey {
  const { family, addr: bytes } = unmapIpv4(parseCidr(addr));
  return { family, addr: bytes };
}

/** One entry of the table, decoded. */
export type LearnedEntry = LearnedKey & Learned & { expired: boolean };

/** Every entry of the table; `expired` where its expiry has passed at `nowBootNs`. */
export function learnedEntries(map: BpfMap, nowBootNs: bigint): LearnedEntry[] {
  const entries: LearnedEntry[] = [];
  for (const key of map.keys()) {
    const value = map.lookup(key);
    if (!value) continue;
    const learned = decodeLearned(value);
    entries.push({ ...decodeLearnedKey(key), ...learned, expired: learned.expiresBootNs <= nowBootNs });
  }
  return entries;
}

/**
 * What the kernel's DNS answer parser counted (map `dns_stats`): addresses learned (written, and of them
 * new to the table), answers parsed, and answers not learned from: malformed (cut short, truncated, too
 * large), unsolicited (no query tracked, or another question), foreign (a server the scope may not ask).
 */
export type DnsStats = {
  learned: bigint;
  inserted: bigint;
  userInserted: bigint;
  answers: bigint;
  malformed: bigint;
  unsolicited: bigint;
  foreign: bigint;
};

/** The counters of `map` (dns_stats), summed over CPUs; zeros where the map is absent (an older build). */
export function dnsStats(map: Pick<BpfMap, "lookup">): DnsStats {
  const slot = (index: number) => sumPerCpu(map.lookup(encodeU32(index)));
  return {
    learned: slot(DNS_STAT.LEARNED),
    inserted: slot(DNS_STAT.INSERTED),
    userInserted: slot(DNS_STAT.USER_INSERTED),
    answers: slot(DNS_STAT.ANSWERS),
    malformed: slot(DNS_STAT.MALFORMED),
    unsolicited: slot(DNS_STAT.UNSOLICITED),
    foreign: slot(DNS_STAT.FOREIGN),
  };
}

/**
 * Addresses the table's LRU evicted, estimated: every address inserted new (by the kernel's answers, and by
 * apply and the agent) beyond the entries it holds now. No code deletes entries, so the difference is what
 * the LRU dropped (an entry deleted by hand with bpftool would count as evicted).
 */
export function learnedEvictions(stats: DnsStats, entries: number): bigint {
  const lost = stats.inserted + stats.userInserted - BigInt(entries);
  return lost > 0n ? lost : 0n;
}
