import {
  AEGIS_IFACE_KEY,
  AEGIS_INODE_KEY,
  AEGIS_NET_KEY,
  AEGIS_PORT_KEY,
  AEGIS_SCOPE_KEY,
  AEGIS_UID_KEY,
  AEGIS_UID_PORT_KEY,
  encodeGenInfo,
  encodeIface,
  encodeIfaceKey,
  encodeInodeKey,
  encodeNetKey,
  encodePortKey,
  encodeRule,
  encodeScopeKey,
  encodeUidKey,
  encodeUidPortKey,
  type StructLayout,
} from "../../ffi/mod.ts";
import { unmapIpv4 } from "../policy/cidr.ts";
import { type NetRule, PROTOCOL_NUMBER, type RuleSetPlan } from "../policy/plan.ts";

/** A plan with names resolved to what the kernel keys on. */
export type ResolvedRuleSet = {
  plan: RuleSetPlan;
  files: { dev: number; ino: bigint; ruleId: number }[];
  exec: { dev: number; ino: bigint; ruleId: number }[];
  scope: { include: bigint[]; exempt: bigint[] };
  interfaces: { ifindex: number; name: string; defaultDrop: boolean; ruleId: number }[];
};

/** The generation-keyed rule maps and the layout of their keys (to find an entry's generation). */
export const RULE_MAPS = {
  deny_file: AEGIS_INODE_KEY,
  deny_exec: AEGIS_INODE_KEY,
  egress_port: AEGIS_NET_KEY,
  egress_any: AEGIS_NET_KEY,
  ingress_port: AEGIS_NET_KEY,
  ingress_any: AEGIS_NET_KEY,
  scope: AEGIS_SCOPE_KEY,
  egress_uid: AEGIS_UID_KEY,
  egress_uid_port: AEGIS_UID_PORT_KEY,
  bind_deny: AEGIS_PORT_KEY,
  ingress_failsafe: AEGIS_PORT_KEY,
  ingress_iface: AEGIS_IFACE_KEY,
} as const satisfies Record<string, StructLayout>;
export type RuleMapName = keyof typeof RULE_MAPS;

export type MapEntries = { keys: Uint8Array<ArrayBuffer>[]; values: Uint8Array<ArrayBuffer>[] };

const SCOPE_INCLUDE = 1;
const SCOPE_EXEMPT = 2;
const ONE = new Uint8Array([1, 0, 0, 0]);

/**
 * Every map entry of a rule set in generation `gen`, with duplicate keys merged: deny beats allow on an
 * exact tie. Pure: the same rule set gives the same bytes.
 */
export function ruleSetEntries(set: ResolvedRuleSet, gen: number): Record<RuleMapName, MapEntries> {
  const maps = Object.fromEntries(Object.keys(RULE_MAPS).map((name) => [name, new EntryMap()])) as Record<
    RuleMapName,
    EntryMap
  >;
  for (const file of set.files) {
    maps.deny_file.put(encodeInodeKey({ ...file, gen }), denyRule(file.ruleId));
  }
  for (const exe of set.exec) {
    maps.deny_exec.put(encodeInodeKey({ ...exe, gen }), denyRule(exe.ruleId));
  }
  for (const rule of set.plan.egress) addNetRule(maps.egress_port, maps.egress_any, rule, gen);
  for (const rule of set.plan.ingress.rules) addNetRule(maps.ingress_port, maps.ingress_any, rule, gen);
  for (const id of set.scope.include) {
    maps.scope.put(encodeScopeKey({ cgroupId: id, gen }), u32(SCOPE_INCLUDE));
  }
  // Exempt wins over include for the same cgroup: written last, and marked as a deny.
  for (const id of set.scope.exempt) {
    maps.scope.put(encodeScopeKey({ cgroupId: id, gen }), u32(SCOPE_EXEMPT), true);
  }
  for (const user of set.plan.egressUsers) {
    if (user.uid === undefined || user.portsAre !== "allowed") {
      throw new Error(
        `Rule #${user.ruleId}: gid and denyPorts user rules are not supported by this data plane yet`,
      );
    }
    maps.egress_uid.put(encodeUidKey({ gen, uid: user.uid }), denyRule(user.ruleId));
    for (const port of user.ports) {
      maps.egress_uid_port.put(encodeUidPortKey({ gen, uid: user.uid, port }), ONE);
    }
  }
  for (const rule of set.plan.bind) {
    maps.bind_deny.put(
      encodePortKey({ gen, port: rule.port, protocol: PROTOCOL_NUMBER[rule.protocol] }),
      denyRule(rule.ruleId),
    );
  }
  for (const rule of set.plan.ingress.failsafe) {
    const key = encodePortKey({ gen, port: rule.port, protocol: PROTOCOL_NUMBER[rule.protocol] });
    maps.ingress_failsafe.put(key, encodeRule({ ruleId: rule.ruleId, allow: true, prefixLength: 0 }));
  }
  for (const iface of set.interfaces) {
    maps.ingress_iface.put(encodeIfaceKey({ gen, ifindex: iface.ifindex }), encodeIface(iface));
  }
  return Object.fromEntries(Object.entries(maps).map(([name, map]) => [name, map.entries()])) as Record<
    RuleMapName,
    MapEntries
  >;
}

/** The gen_info value of a rule set. */
export function genInfoValue(set: ResolvedRuleSet): Uint8Array<ArrayBuffer> {
  return encodeGenInfo({
    enforce: set.plan.mode === "enforce",
    scopeInclude: set.scope.include.length,
    scopeExempt: set.scope.exempt.length,
    uidRules: set.plan.egressUsers.length,
    ingressPortDenies: set.plan.ingress.rules.filter((rule) =>
      rule.action === "deny" && rule.port !== undefined
    ).length,
  });
}

const ANY_PROTOCOL = 0;
/** Protocols with ports, for a rule that names ports but no protocol: TCP, UDP, UDP-Lite. */
const PORT_PROTOCOLS = [PROTOCOL_NUMBER.tcp, PROTOCOL_NUMBER.udp, 136];

function addNetRule(portMap: EntryMap, anyMap: EntryMap, rule: NetRule, gen: number): void {
  const map = rule.port === undefined ? anyMap : portMap;
  const protocols = rule.protocol !== undefined
    ? [PROTOCOL_NUMBER[rule.protocol]]
    : rule.port === undefined
    ? [ANY_PROTOCOL]
    : PORT_PROTOCOLS;
  const cidr = unmapIpv4({
    family: rule.family,
    addr: new Uint8Array(rule.addr),
    prefixLength: rule.prefixLength,
  });
  const addr = maskAddress(cidr.addr, cidr.prefixLength);
  const value = encodeRule({
    ruleId: rule.ruleId,
    allow: rule.action === "allow",
    prefixLength: cidr.prefixLength,
  });
  for (const protocol of protocols) {
    const key = encodeNetKey({
      gen,
      family: cidr.family,
      protocol,
      port: rule.port ?? 0,
      addr,
      prefixLength: cidr.prefixLength,
    });
    map.put(key, value, rule.action === "deny");
  }
}

/** Zeroes the host bits, so that 10.1.2.3/8 and 10.0.0.0/8 are the same key. */
export function maskAddress(addr: Uint8Array, prefixLength: number): Uint8Array {
  const masked = new Uint8Array(addr);
  for (let bit = prefixLength; bit < masked.length * 8; bit++) {
    masked[bit >> 3]! &= ~(0x80 >> (bit & 7));
  }
  return masked;
}

function denyRule(ruleId: number): Uint8Array<ArrayBuffer> {
  return encodeRule({ ruleId, allow: false, prefixLength: 0 });
}

function u32(value: number): Uint8Array<ArrayBuffer> {
  return new Uint8Array(new Uint32Array([value]).buffer);
}

/**
 * Entries by key bytes; a later entry replaces an earlier one unless the earlier one was a deny.
 * Keys are found by a 32-bit FNV-1a hash and compared byte by byte: string keys made this the slowest
 * step of encoding 100,000 rules.
 */
class EntryMap {
  readonly #keys: Uint8Array<ArrayBuffer>[] = [];
  readonly #values: Uint8Array<ArrayBuffer>[] = [];
  readonly #deny: boolean[] = [];
  readonly #byHash = new Map<number, number | number[]>();

  put(key: Uint8Array<ArrayBuffer>, value: Uint8Array<ArrayBuffer>, deny = false): void {
    const hash = fnv1a(key);
    const found = this.#byHash.get(hash);
    const candidates = found === undefined ? [] : typeof found === "number" ? [found] : found;
    const index = candidates.find((i) => sameBytes(this.#keys[i]!, key));
    if (index !== undefined) {
      if (this.#deny[index] && !deny) return;
      this.#values[index] = value;
      this.#deny[index] = deny;
      return;
    }
    const added = this.#keys.push(key) - 1;
    this.#values.push(value);
    this.#deny.push(deny);
    this.#byHash.set(hash, found === undefined ? added : [...candidates, added]);
  }

  entries(): MapEntries {
    return { keys: this.#keys, values: this.#values };
  }
}

function fnv1a(bytes: Uint8Array): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) hash = Math.imul(hash ^ bytes[i]!, 0x01000193);
  return hash >>> 0;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
