import {
  ACTION,
  AEGIS_NET_KEY,
  AEGIS_RULE,
  AEGIS_RULE_KEY,
  CAPACITY,
  encodeGenInfo,
  NET,
  RULE,
  type RuleKey,
  type RuleValue,
  SCOPE,
  USER_PORTS,
  writeNetKey,
  writeRule,
  writeRuleKey,
} from "../../ffi/mod.ts";
import { clearHostBits, unmapIpv4 } from "../policy/cidr.ts";
import {
  type EncodedNet,
  type NetRule,
  PORT_PROTOCOL_NUMBERS,
  PROTOCOL_NUMBER,
  type RuleSetPlan,
} from "../policy/plan.ts";

/** A plan with names resolved to what the kernel keys on. */
export type ResolvedRuleSet = {
  plan: RuleSetPlan;
  files: ResolvedInode[];
  exec: ResolvedInode[];
  scope: { include: bigint[]; exempt: bigint[] };
  interfaces: { ifindex: number; name: string; defaultDrop: boolean; ruleId: number }[];
  /** With network.egress.forwarded: the interfaces forwarded packets are judged on (all but lo). */
  forward?: { ifindex: number; name: string }[];
};

/** A file the rule set denies, and the path it was found at (recorded so that a replaced file shows). */
export type ResolvedInode = { dev: number; ino: bigint; ruleId: number; path?: string };

/** One inner map's entries, back to back, ready for one batch write. */
export type Batch = {
  keys: Uint8Array<ArrayBuffer>;
  values: Uint8Array<ArrayBuffer>;
  count: number;
};

/** The rule maps of a generation (each an outer map with one inner map per generation) and their capacity. */
export const RULE_MAPS = {
  rules: { keySize: AEGIS_RULE_KEY.size, capacity: CAPACITY.RULES },
  net_rules: { keySize: AEGIS_NET_KEY.size, capacity: CAPACITY.NET_RULES },
} as const;
export type RuleMapName = keyof typeof RULE_MAPS;

/** A rule set larger than a rule map holds: nothing was written. */
export class CapacityError extends RangeError {
  override name = "CapacityError";
  constructor(readonly map: RuleMapName, readonly capacity: number, readonly count: number) {
    super(`Rule set needs ${count} entries in map ${map}, which holds at most ${capacity}`);
  }
}

/**
 * Every map entry of a rule set, with duplicate keys merged (deny beats allow on an exact tie), and the
 * gen_info value. Pure: the same rule set gives the same bytes. Throws CapacityError before anything is
 * written when a map cannot hold the set.
 */
export function ruleSetEntries(
  set: ResolvedRuleSet,
  capacity: Partial<Record<RuleMapName, number>> = {},
): Record<RuleMapName, Batch> & { genInfo: Uint8Array<ArrayBuffer> } {
  const rules = new EntryTable(AEGIS_RULE_KEY.size);
  const exact = (key: RuleKey, value: RuleValue, deny = true) =>
    rules.put((target, offset) => writeRuleKey(target, offset, key), value, deny);
  for (const file of set.files) exact({ kind: RULE.FILE, a: file.ino, b: file.dev }, denyValue(file.ruleId));
  for (const exe of set.exec) exact({ kind: RULE.EXEC, a: exe.ino, b: exe.dev }, denyValue(exe.ruleId));
  for (const id of set.scope.include) {
    exact({ kind: RULE.SCOPE, a: id, b: 0 }, { ruleId: 0, action: SCOPE.INCLUDE, prefixLength: 0 }, false);
  }
  // Exempt wins over include for the same cgroup: marked as a deny, which an include never replaces.
  for (const id of set.scope.exempt) {
    exact({ kind: RULE.SCOPE, a: id, b: 0 }, { ruleId: 0, action: SCOPE.EXEMPT, prefixLength: 0 });
  }
  for (const user of set.plan.egressUsers) {
    const byUid = user.uid !== undefined;
    const id = user.uid ?? user.gid;
    const action = user.portsAre === "allowed" ? USER_PORTS.ALLOWED : USER_PORTS.DENIED;
    exact({ kind: byUid ? RULE.USER_UID : RULE.USER_GID, a: 0, b: id }, {
      ruleId: user.ruleId,
      action,
      prefixLength: 0,
    });
    for (const port of user.ports) {
      exact(
        { kind: byUid ? RULE.USER_UID_PORT : RULE.USER_GID_PORT, a: port, b: id },
        denyValue(user.ruleId),
      );
    }
  }
  // Policy switches: one entry each, in the generation, so they flip with the rest of the policy.
  if (set.plan.denyMemfdExec) {
    exact({ kind: RULE.MEMFD_EXEC, a: 0, b: 0 }, denyValue(set.plan.denyMemfdExec.ruleId));
  }
  if (set.plan.scopeGuard) {
    exact({ kind: RULE.SCOPE_GUARD, a: 0, b: 0 }, denyValue(set.plan.scopeGuard.ruleId));
  }
  if (set.plan.ptraceGuard) {
    exact({ kind: RULE.PTRACE_GUARD, a: 0, b: 0 }, denyValue(set.plan.ptraceGuard.ruleId));
  }
  for (const rule of set.plan.bind) {
    const protocols = rule.protocol ? [PROTOCOL_NUMBER[rule.protocol]] : PORT_PROTOCOL_NUMBERS;
    for (const protocol of protocols) {
      exact({ kind: RULE.BIND, a: rule.port, b: protocol }, denyValue(rule.ruleId));
    }
  }
  for (const rule of set.plan.ingress.failsafe) {
    const key = { kind: RULE.FAILSAFE, a: rule.port, b: PROTOCOL_NUMBER[rule.protocol] };
    exact(key, { ruleId: rule.ruleId, action: ACTION.ALLOW, prefixLength: 0 });
  }
  if (set.plan.denyPacketSockets) {
    exact({ kind: RULE.DENY_PACKET_SOCKETS, a: 0, b: 0 }, denyValue(set.plan.denyPacketSockets.ruleId));
  }
  if (set.plan.routeGuard) {
    exact({ kind: RULE.ROUTE_GUARD, a: 0, b: 0 }, denyValue(set.plan.routeGuard.ruleId));
  }
  if (set.plan.forwarded) {
    exact({ kind: RULE.FORWARDED, a: 0, b: 0 }, denyValue(set.plan.forwarded.ruleId));
  }
  for (const prefix of set.plan.nat64Prefixes ?? []) {
    const view = new DataView(prefix.buffer, prefix.byteOffset, 12);
    const key = { kind: RULE.NAT64_PREFIX, a: view.getBigUint64(0, true), b: view.getUint32(8, true) };
    exact(key, { ruleId: 0, action: ACTION.ALLOW, prefixLength: 96 }, false);
  }
  for (const iface of set.interfaces) {
    const action = iface.defaultDrop ? ACTION.DENY : ACTION.ALLOW;
    exact({ kind: RULE.IFACE, a: 0, b: iface.ifindex }, { ruleId: iface.ruleId, action, prefixLength: 0 });
  }
  const encoded = encodeNetRules(set.plan);
  const batches = {
    rules: rules.batch(),
    net_rules: { keys: encoded.keys, values: encoded.values, count: encoded.count },
  };
  for (const name of Object.keys(RULE_MAPS) as RuleMapName[]) {
    const limit = Math.min(capacity[name] ?? RULE_MAPS[name].capacity, RULE_MAPS[name].capacity);
    if (batches[name].count > limit) throw new CapacityError(name, limit, batches[name].count);
  }
  const genInfo = encodeGenInfo({
    enforce: set.plan.mode === "enforce",
    scopeInclude: set.scope.include.length,
    scopeExempt: set.scope.exempt.length,
    userRules: set.plan.egressUsers.length,
    ingressPortDenies: encoded.ingressPortDenies,
    rulesEntries: batches.rules.count,
    netRulesEntries: batches.net_rules.count,
    failsafeAbsent: failsafeAbsentBits(set.plan.ingress.failsafe.map((rule) => rule.port)),
  });
  return { ...batches, genInfo };
}

/**
 * The gen_info word that tells XDP which ports cannot be failsafe: bit (port & 31) set where no failsafe
 * port has those low five bits. A packet about to be refused skips the failsafe lookup when its port's bit
 * is set (a flood to a port far from every failsafe port). Inverted so that 0, the word an older release
 * left, means "look every port up".
 */
export function failsafeAbsentBits(ports: readonly number[]): number {
  return ~ports.reduce((bits, port) => bits | 1 << (port & 31), 0) >>> 0;
}

const ANY_PROTOCOL = 0;

/**
 * The `net_rules` entries of a plan's CIDR rules (duplicates merged as in `ruleSetEntries`); a plan that
 * carries them already encoded (`encodedNet`) gives those.
 */
export function encodeNetRules(plan: RuleSetPlan): EncodedNet {
  if (plan.encodedNet) return plan.encodedNet;
  const net = new EntryTable(AEGIS_NET_KEY.size);
  for (const rule of plan.egress) addNetRule(net, rule, NET.EGRESS_PORT, NET.EGRESS_ANY);
  for (const rule of plan.ingress.rules) addNetRule(net, rule, NET.INGRESS_PORT, NET.INGRESS_ANY);
  return {
    ...net.batch(),
    egressRules: plan.egress.length,
    ingressRules: plan.ingress.rules.length,
    ingressPortDenies: plan.ingress.rules.filter((rule) => rule.action === "deny" && rule.port !== undefined)
      .length,
  };
}

const ADDR_OFFSET = AEGIS_NET_KEY.fields.addr.offset;

function addNetRule(table: EntryTable, rule: NetRule, portSpace: number, anySpace: number): void {
  const protocols = rule.protocol !== undefined
    ? [PROTOCOL_NUMBER[rule.protocol]]
    : rule.port === undefined
    ? [ANY_PROTOCOL]
    : PORT_PROTOCOL_NUMBERS;
  const cidr = unmapIpv4(rule);
  const value = {
    ruleId: rule.ruleId,
    action: rule.action === "allow" ? ACTION.ALLOW : ACTION.DENY,
    prefixLength: cidr.prefixLength,
  };
  const key = {
    space: rule.port === undefined ? anySpace : portSpace,
    family: cidr.family,
    protocol: ANY_PROTOCOL,
    port: rule.port ?? 0,
    addr: cidr.addr,
    prefixLength: cidr.prefixLength,
  };
  const hostBits = cidr.prefixLength < cidr.addr.length * 8;
  const write = (target: Uint8Array<ArrayBuffer>, offset: number) => {
    writeNetKey(target, offset, key);
    // Host bits cleared, so that 10.1.2.3/8 and 10.0.0.0/8 are the same key.
    if (hostBits) {
      clearHostBits(
        target.subarray(offset + ADDR_OFFSET, offset + ADDR_OFFSET + cidr.addr.length),
        key.prefixLength,
      );
    }
  };
  for (const protocol of protocols) {
    key.protocol = protocol;
    table.put(write, value, rule.action === "deny");
  }
}

function denyValue(ruleId: number): RuleValue {
  return { ruleId, action: ACTION.DENY, prefixLength: 0 };
}

/**
 * Entries by key bytes, written straight into one growing buffer of keys and one of values; the first entry
 * of a key stays unless a later deny meets an earlier allow. Keys are found by a 32-bit FNV-1a hash and
 * compared in place: no small array per key (100,000 of them cost hundreds of MB and most of the time).
 */
class EntryTable {
  readonly #keySize: number;
  #keys = new Uint8Array(0);
  #values = new Uint8Array(0);
  #deny: boolean[] = [];
  #count = 0;
  readonly #byHash = new Map<number, number | number[]>();

  constructor(keySize: number) {
    this.#keySize = keySize;
  }

  put(
    writeKey: (target: Uint8Array<ArrayBuffer>, offset: number) => void,
    value: RuleValue,
    deny: boolean,
  ): void {
    this.#reserve(this.#count + 1);
    const offset = this.#count * this.#keySize;
    writeKey(this.#keys, offset);
    const hash = fnv1a(this.#keys, offset, this.#keySize);
    const found = this.#byHash.get(hash);
    const index = found === undefined
      ? undefined
      : typeof found === "number"
      ? (this.#sameKey(found, this.#count) ? found : undefined)
      : found.find((i) => this.#sameKey(i, this.#count));
    if (index !== undefined) {
      // Deny beats allow on a tie; otherwise the first rule in plan order keeps the key (as decide() says).
      if (this.#deny[index] || !deny) return;
      writeRule(this.#values, index * AEGIS_RULE.size, value);
      this.#deny[index] = deny;
      return;
    }
    writeRule(this.#values, this.#count * AEGIS_RULE.size, value);
    this.#deny.push(deny);
    if (found === undefined) this.#byHash.set(hash, this.#count);
    else if (typeof found === "number") this.#byHash.set(hash, [found, this.#count]);
    else found.push(this.#count);
    this.#count++;
  }

  batch(): Batch {
    return {
      keys: this.#keys.slice(0, this.#count * this.#keySize),
      values: this.#values.slice(0, this.#count * AEGIS_RULE.size),
      count: this.#count,
    };
  }

  #reserve(entries: number): void {
    if (entries * this.#keySize <= this.#keys.byteLength) return;
    const grown = Math.max(64, entries * 2);
    const keys = new Uint8Array(grown * this.#keySize);
    keys.set(this.#keys);
    const values = new Uint8Array(grown * AEGIS_RULE.size);
    values.set(this.#values);
    this.#keys = keys;
    this.#values = values;
  }

  #sameKey(a: number, b: number): boolean {
    const size = this.#keySize;
    for (let i = 0; i < size; i++) if (this.#keys[a * size + i] !== this.#keys[b * size + i]) return false;
    return true;
  }
}

function fnv1a(bytes: Uint8Array, offset: number, length: number): number {
  let hash = 0x811c9dc5;
  for (let i = offset; i < offset + length; i++) hash = Math.imul(hash ^ bytes[i]!, 0x01000193);
  return hash >>> 0;
}
