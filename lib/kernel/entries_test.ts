import assert from "node:assert/strict";
import {
  AEGIS_IFACE_SLOT,
  AEGIS_NET_KEY,
  AEGIS_RULE,
  AEGIS_RULE_KEY,
  CAPACITY,
  decodeGenInfo,
  decodeRule,
  encodeNetKey,
  HOST_SHAPE,
  INGRESS_ABSENT,
  NET,
  NET_KEY_FULL_PREFIX,
  type NetKey,
  RULE,
  STAT_LIMITS,
  SUBJECTS,
} from "../../ffi/mod.ts";
import { emptyPlan, type HostRule, type NetRule, type RuleSetPlan } from "../policy/plan.ts";
import { parseCidr } from "../policy/cidr.ts";
import {
  CapacityError,
  egressAbsentBits,
  encodeNetRules,
  failsafeAbsentBits,
  ingressAbsentBits,
  type ResolvedRuleSet,
  ruleSetEntries,
  splitNetEntries,
} from "./entries.ts";

const TCP = 6;
const UDP = 17;
const UDPLITE = 136;
const SCTP = 132;
const DCCP = 33;

function resolved(plan: Partial<RuleSetPlan>, rest: Partial<Omit<ResolvedRuleSet, "plan">> = {}) {
  return {
    plan: { ...emptyPlan("enforce"), ...plan },
    files: [],
    exec: [],
    scope: { include: [], exempt: [] },
    interfaces: [],
    ...rest,
  } satisfies ResolvedRuleSet;
}

function v4(cidr: string, ruleId: number, extra: Partial<NetRule> = {}): NetRule {
  return { ruleId, action: "deny", ...parseCidr(cidr), ...extra };
}

const SPACES = {
  egress_port: NET.EGRESS_PORT,
  egress_any: NET.EGRESS_ANY,
  ingress_port: NET.INGRESS_PORT,
  ingress_any: NET.INGRESS_ANY,
} as const;

function netKey(
  key: Partial<NetKey> & Pick<NetKey, "addr" | "prefixLength" | "protocol">,
  space: keyof typeof SPACES = "egress_any",
): number[] {
  return [...encodeNetKey({ space: SPACES[space], family: 4, port: 0, ...key })];
}

/** The net trie entries of one space, as plain arrays, to compare with deepEqual. */
function entriesOf(set: ResolvedRuleSet, space: keyof typeof SPACES) {
  const { keys, values, count } = encodeNetRules(set.plan);
  const entries = [];
  for (let i = 0; i < count; i++) {
    const key = keys.subarray(i * AEGIS_NET_KEY.size, (i + 1) * AEGIS_NET_KEY.size);
    if (key[AEGIS_NET_KEY.fields.space.offset + 1] !== SPACES[space]) continue;
    entries.push({
      key: [...key],
      rule: decodeRule(values.subarray(i * AEGIS_RULE.size, (i + 1) * AEGIS_RULE.size)),
    });
  }
  return entries;
}

/** The exact-match entries: kind, a, b and the rule. */
function rulesOf(set: ResolvedRuleSet) {
  const { keys, values, count } = ruleSetEntries(set).rules;
  const view = new DataView(keys.buffer);
  const entries = [];
  for (let i = 0; i < count; i++) {
    const at = i * AEGIS_RULE_KEY.size;
    entries.push({
      kind: view.getUint32(at + AEGIS_RULE_KEY.fields.kind.offset, true),
      a: view.getBigUint64(at + AEGIS_RULE_KEY.fields.a.offset, true),
      b: view.getUint32(at + AEGIS_RULE_KEY.fields.b.offset, true),
      value: [...values.subarray(i * AEGIS_RULE.size, (i + 1) * AEGIS_RULE.size)],
    });
  }
  return entries;
}

Deno.test("ruleSetEntries() lets deny beat allow on an exact tie, whichever comes first", () => {
  const allow = v4("10.0.0.0/8", 1, { action: "allow" });
  const deny = v4("10.0.0.0/8", 2);
  for (const egress of [[allow, deny], [deny, allow]]) {
    const entries = entriesOf(resolved({ egress }), "egress_any");
    assert.equal(entries.length, 1, "one any-protocol entry");
    for (const entry of entries) assert.deepEqual(entry.rule, { ruleId: 2, allow: false, prefixLength: 8 });
  }
});

Deno.test("ruleSetEntries() keeps the first of two allows (or two denies) of the same key", () => {
  const entries = entriesOf(
    resolved({
      egress: [v4("10.0.0.0/8", 1, { action: "allow" }), v4("10.0.0.0/8", 2, { action: "allow" })],
    }),
    "egress_any",
  );
  assert.deepEqual(entries.map((entry) => entry.rule.ruleId), [1]);
});

Deno.test("ruleSetEntries() masks host bits so equal networks share one key", () => {
  const entries = entriesOf(
    resolved({
      egress: [
        v4("10.1.2.3/8", 1, { protocol: "tcp" }),
        v4("10.0.0.0/8", 2, { action: "allow", protocol: "tcp" }),
      ],
    }),
    "egress_any",
  );
  assert.deepEqual(entries, [{
    key: netKey({ addr: new Uint8Array([10, 0, 0, 0]), prefixLength: 8, protocol: TCP }),
    rule: { ruleId: 1, allow: false, prefixLength: 8 },
  }]);
  const odd = entriesOf(
    resolved({ egress: [v4("192.168.255.255/13", 1, { protocol: "udp" })] }),
    "egress_any",
  );
  assert.deepEqual(
    odd[0]?.key,
    netKey({ addr: new Uint8Array([192, 168, 0, 0]), prefixLength: 13, protocol: UDP }),
  );
});

Deno.test("ruleSetEntries() keys an egress rule without protocol on protocol 0, or on TCP, UDP, UDP-Lite, SCTP, DCCP with a port", () => {
  const portless = entriesOf(resolved({ egress: [v4("10.0.0.0/8", 1)] }), "egress_any");
  const addr = new Uint8Array([10, 0, 0, 0]);
  assert.deepEqual(portless.map((entry) => entry.key), [netKey({ addr, prefixLength: 8, protocol: 0 })]);
  const set = resolved({ egress: [v4("10.0.0.0/8", 1, { port: 443 })] });
  assert.deepEqual(entriesOf(set, "egress_any"), []);
  assert.deepEqual(entriesOf(set, "egress_port").map((entry) => entry.key), [
    netKey({ addr, prefixLength: 8, protocol: TCP, port: 443 }, "egress_port"),
    netKey({ addr, prefixLength: 8, protocol: UDP, port: 443 }, "egress_port"),
    netKey({ addr, prefixLength: 8, protocol: UDPLITE, port: 443 }, "egress_port"),
    netKey({ addr, prefixLength: 8, protocol: SCTP, port: 443 }, "egress_port"),
    netKey({ addr, prefixLength: 8, protocol: DCCP, port: 443 }, "egress_port"),
  ]);
  const udpOnly = entriesOf(resolved({ egress: [v4("10.0.0.0/8", 1, { protocol: "udp" })] }), "egress_any");
  assert.deepEqual(udpOnly.map((entry) => entry.key), [netKey({ addr, prefixLength: 8, protocol: UDP })]);
});

Deno.test("ruleSetEntries() keys a port-less ingress rule without protocol on protocol 0", () => {
  const addr = new Uint8Array([198, 18, 0, 0]);
  const ingress = (rules: NetRule[]) => ({ interfaces: [], failsafe: [], rules });
  const portless = entriesOf(resolved({ ingress: ingress([v4("198.18.0.0/15", 1)]) }), "ingress_any");
  assert.deepEqual(portless.map((entry) => entry.key), [
    netKey({ addr, prefixLength: 15, protocol: 0 }, "ingress_any"),
  ]);
  const withPort = entriesOf(
    resolved({ ingress: ingress([v4("198.18.0.0/15", 1, { port: 22 })]) }),
    "ingress_port",
  );
  assert.deepEqual(withPort.map((entry) => entry.key), [
    netKey({ addr, prefixLength: 15, protocol: TCP, port: 22 }, "ingress_port"),
    netKey({ addr, prefixLength: 15, protocol: UDP, port: 22 }, "ingress_port"),
    netKey({ addr, prefixLength: 15, protocol: UDPLITE, port: 22 }, "ingress_port"),
    netKey({ addr, prefixLength: 15, protocol: SCTP, port: 22 }, "ingress_port"),
    netKey({ addr, prefixLength: 15, protocol: DCCP, port: 22 }, "ingress_port"),
  ]);
});

Deno.test("ruleSetEntries() keys every exact rule by kind, with the user and interface values the hooks read", () => {
  const set = resolved(
    {
      egressUsers: [
        { ruleId: 2, uid: 1000, ports: [443], portsAre: "allowed" },
        { ruleId: 3, gid: 27, ports: [22], portsAre: "denied" },
      ],
      bind: [{ ruleId: 4, port: 8080, protocol: "tcp" }],
      ingress: {
        interfaces: [{ name: "eth0", defaultDrop: true, ruleId: 0 }],
        failsafe: [{ ruleId: 5, port: 22, protocol: "tcp" }],
        rules: [],
      },
    },
    {
      files: [{ dev: 2049, ino: 10n, ruleId: 6 }],
      exec: [{ dev: 2049, ino: 11n, ruleId: 7 }],
      scope: { include: [100n], exempt: [101n] },
      interfaces: [{ ifindex: 3, name: "eth0", defaultDrop: true, ruleId: 0 }],
    },
  );
  assert.deepEqual(rulesOf(set), [
    { kind: RULE.FILE, a: 10n, b: 2049, value: [6, 0, 0, 0, 0, 0, 0, 0] },
    { kind: RULE.EXEC, a: 11n, b: 2049, value: [7, 0, 0, 0, 0, 0, 0, 0] },
    { kind: RULE.SCOPE, a: 100n, b: 0, value: [0, 0, 0, 0, 1, 0, 0, 0] },
    { kind: RULE.SCOPE, a: 101n, b: 0, value: [0, 0, 0, 0, 2, 0, 0, 0] },
    { kind: RULE.USER_UID, a: 0n, b: 1000, value: [2, 0, 0, 0, 1, 0, 0, 0] },
    { kind: RULE.USER_UID_PORT, a: 443n, b: 1000, value: [2, 0, 0, 0, 0, 0, 0, 0] },
    { kind: RULE.USER_GID, a: 0n, b: 27, value: [3, 0, 0, 0, 0, 0, 0, 0] },
    { kind: RULE.USER_GID_PORT, a: 22n, b: 27, value: [3, 0, 0, 0, 0, 0, 0, 0] },
    { kind: RULE.BIND, a: 8080n, b: TCP, value: [4, 0, 0, 0, 0, 0, 0, 0] },
    { kind: RULE.FAILSAFE, a: 22n, b: TCP, value: [5, 0, 0, 0, 1, 0, 0, 0] },
    { kind: RULE.IFACE, a: 0n, b: 3, value: [0, 0, 0, 0, 0, 0, 0, 0] },
  ]);
});

Deno.test("ruleSetEntries() writes the memfd and scope-guard switches as one entry each, with their rule", () => {
  const set = resolved({ denyMemfdExec: { ruleId: 8 }, scopeGuard: { ruleId: 9 } }, {});
  assert.deepEqual(rulesOf(set), [
    { kind: RULE.MEMFD_EXEC, a: 0n, b: 0, value: [8, 0, 0, 0, 0, 0, 0, 0] },
    { kind: RULE.SCOPE_GUARD, a: 0n, b: 0, value: [9, 0, 0, 0, 0, 0, 0, 0] },
  ]);
  assert.deepEqual(rulesOf(resolved({}, {})), [], "both off: no entry");
});

Deno.test("ruleSetEntries() writes the ptrace guard's switch as one entry, with its rule", () => {
  const set = resolved({ ptraceGuard: { ruleId: 7 } }, {});
  assert.deepEqual(rulesOf(set), [{ kind: RULE.PTRACE_GUARD, a: 0n, b: 0, value: [7, 0, 0, 0, 0, 0, 0, 0] }]);
});

Deno.test("ruleSetEntries() keys protected inodes by (ino, dev) and adds the protect switch only with files.protect", () => {
  const plan = {
    protect: [{ ruleId: 3, path: "/etc/cron.d", recursive: true }, { ruleId: 4, path: "/etc/x" }],
  };
  const protect = [
    { ino: 10n, dev: 2049, ruleId: 3, path: "/etc/cron.d" },
    { ino: 11n, dev: 2049, ruleId: 3 },
    { ino: 12n, dev: 2049, ruleId: 4, path: "/etc/x" },
  ];
  assert.deepEqual(rulesOf(resolved(plan, { protect })), [
    { kind: RULE.PROTECT, a: 10n, b: 2049, value: [3, 0, 0, 0, 0, 0, 0, 0] },
    { kind: RULE.PROTECT, a: 11n, b: 2049, value: [3, 0, 0, 0, 0, 0, 0, 0] },
    { kind: RULE.PROTECT, a: 12n, b: 2049, value: [4, 0, 0, 0, 0, 0, 0, 0] },
    { kind: RULE.PROTECT_ON, a: 0n, b: 0, value: [3, 0, 0, 0, 0, 0, 0, 0] },
  ]);
  assert.deepEqual(
    rulesOf(resolved(plan, {})),
    [{ kind: RULE.PROTECT_ON, a: 0n, b: 0, value: [3, 0, 0, 0, 0, 0, 0, 0] }],
    "every optional path missing: the switch stays, with nothing to find",
  );
  const file = [{ ino: 10n, dev: 2049, ruleId: 1 }];
  assert.deepEqual(
    rulesOf(resolved({}, { files: file })).map((entry) => entry.kind),
    [RULE.FILE],
    "without files.protect no switch: the hooks stop at one lookup",
  );
});

Deno.test("ruleSetEntries() lets an exempt cgroup win over the same cgroup included", () => {
  const entries = rulesOf(resolved({}, { scope: { include: [100n], exempt: [100n] } }));
  assert.deepEqual(entries, [{ kind: RULE.SCOPE, a: 100n, b: 0, value: [0, 0, 0, 0, 2, 0, 0, 0] }]);
});

Deno.test("ruleSetEntries() refuses a set larger than a map before writing, naming the map and both numbers", () => {
  const files = Array.from({ length: 101 }, (_, i) => ({ dev: 1, ino: BigInt(i + 1), ruleId: 1 }));
  assert.equal(ruleSetEntries(resolved({}, { files }), { rules: 101 }).rules.count, 101, "exactly full fits");
  assert.throws(() => ruleSetEntries(resolved({}, { files }), { rules: 100 }), (error: unknown) => {
    assert.ok(error instanceof CapacityError);
    assert.equal(error.map, "rules");
    assert.equal(error.count, 101);
    assert.match(error.message, /101 entries in map rules, which holds at most 100/);
    return true;
  });
  const limit = ruleSetEntries(resolved({}, { files }), { rules: 10 * CAPACITY.RULES });
  assert.equal(limit.rules.count, 101, "a limit above the kernel's own is the kernel's own");
});

Deno.test("ruleSetEntries() keys a NAT64 prefix on its first 12 bytes as the hooks read them", () => {
  const prefix = new Uint8Array([0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 1, 2, 3, 4]);
  const { rules } = ruleSetEntries(resolved({ nat64Prefixes: [prefix] }));
  assert.equal(rules.count, 1);
  const key = new DataView(rules.keys.buffer, 0, AEGIS_RULE_KEY.size);
  // a = bytes 0-7 and b = bytes 8-11, each read little-endian as the BPF side reads the address words.
  assert.equal(key.getBigUint64(0, true), 0x9bff6400n);
  assert.equal(key.getUint32(8, true), 0x04030201);
  assert.equal(key.getUint32(12, true), RULE.NAT64_PREFIX);
});

Deno.test("ruleSetEntries() keys a bind rule without a protocol once per protocol with ports", () => {
  const set = resolved({ bind: [{ ruleId: 4, port: 8080 }] }, {});
  assert.deepEqual(
    rulesOf(set).filter((entry) => entry.kind === RULE.BIND).map((entry) => entry.b),
    [6, 17, 136, 132, 33],
  );
});

Deno.test("ruleSetEntries() clears the gen_info bit (port & 31) of each ingress failsafe port, none without them", () => {
  const failsafe = [
    { ruleId: 1, port: 22, protocol: "tcp" as const },
    { ruleId: 2, port: 443, protocol: "tcp" as const },
    { ruleId: 3, port: 63, protocol: "udp" as const },
  ];
  const ingress = { interfaces: [], failsafe, rules: [] };
  const bits = decodeGenInfo(ruleSetEntries(resolved({ ingress })).genInfo).failsafeAbsent;
  assert.equal(bits, ~(1 << 22 | 1 << (443 & 31) | 1 << 31) >>> 0);
  assert.equal(decodeGenInfo(ruleSetEntries(resolved({})).genInfo).failsafeAbsent, 0xffff_ffff);
});

Deno.test("failsafeAbsentBits() clears one bit for ports that share their low five bits, and stays unsigned", () => {
  assert.equal(failsafeAbsentBits([22, 54, 65_526]), (~(1 << 22)) >>> 0);
  assert.equal(failsafeAbsentBits([31]), 2 ** 31 - 1);
  assert.equal(failsafeAbsentBits([]), 0xffff_ffff);
});

/** The gen_info word ruleSetEntries() writes for these egress and ingress rules. */
function genInfoOf(egress: NetRule[], ingressRules: NetRule[]) {
  return decodeGenInfo(
    ruleSetEntries(resolved({ egress, ingress: { interfaces: [], failsafe: [], rules: ingressRules } }))
      .genInfo,
  );
}

Deno.test("ruleSetEntries() sets the gen_info ingress_absent bits of the ingress rule shapes the trie lacks", () => {
  const absent = (ingressRules: NetRule[], egress: NetRule[] = []) =>
    genInfoOf(egress, ingressRules).ingressAbsent;
  const { NO_PORT, NO_PROTOCOL, NO_ANY } = INGRESS_ABSENT;
  assert.equal(absent([]), NO_PORT | NO_PROTOCOL | NO_ANY);
  assert.equal(absent([v4("10.0.0.0/8", 1)]), NO_PORT | NO_PROTOCOL);
  assert.equal(absent([v4("10.0.0.0/8", 1, { protocol: "udp" })]), NO_PORT | NO_ANY);
  assert.equal(absent([v4("10.0.0.0/8", 1, { port: 22 })]), NO_PROTOCOL | NO_ANY);
  assert.equal(absent([v4("10.0.0.0/8", 1, { port: 22, protocol: "tcp" }), v4("::/0", 2)]), NO_PROTOCOL);
  // Egress rules of every shape (with a program's subject too) leave the ingress bits alone.
  const egress = [v4("10.0.0.0/8", 3, { port: 53 }), v4("10.0.0.0/8", 4, { protocol: "tcp", subject: 1 })];
  assert.equal(absent([], egress), NO_PORT | NO_PROTOCOL | NO_ANY);
  // A plan encoded ahead gives the word its entries give.
  const plan = {
    ...emptyPlan("enforce"),
    ingress: { interfaces: [], failsafe: [], rules: [v4("10.0.0.0/8", 1)] },
  };
  const encoded = encodeNetRules(plan);
  assert.equal(ingressAbsentBits(encoded.keys, encoded.count), NO_PORT | NO_PROTOCOL);
  assert.equal(ingressAbsentBits(encoded.keys, 0), NO_PORT | NO_PROTOCOL | NO_ANY);
});

Deno.test("ruleSetEntries() sets the gen_info egress_absent bits from every subject's egress rules, never ingress", () => {
  const absent = (egress: NetRule[], ingressRules: NetRule[] = []) =>
    genInfoOf(egress, ingressRules).egressAbsent;
  const { NO_PORT, NO_PROTOCOL, NO_ANY } = INGRESS_ABSENT;
  assert.equal(absent([]), NO_PORT | NO_PROTOCOL | NO_ANY);
  assert.equal(absent([v4("10.0.0.0/8", 1)]), NO_PORT | NO_PROTOCOL);
  assert.equal(absent([v4("10.0.0.0/8", 1, { protocol: "udp" })]), NO_PORT | NO_ANY);
  assert.equal(absent([v4("10.0.0.0/8", 1, { port: 22 })]), NO_PROTOCOL | NO_ANY);
  // A program's rule counts as any other (the subject sits above the space's kind in the key).
  assert.equal(absent([v4("10.0.0.0/8", 1, { port: 53, subject: 3 })]), NO_PROTOCOL | NO_ANY);
  assert.equal(absent([v4("10.0.0.0/8", 1, { protocol: "tcp", subject: 2 }), v4("::/0", 2)]), NO_PORT);
  assert.equal(
    absent([], [v4("10.0.0.0/8", 3, { port: 53 }), v4("10.0.0.0/8", 4)]),
    NO_PORT | NO_PROTOCOL | NO_ANY,
  );
  const plan = { ...emptyPlan("enforce"), egress: [v4("10.0.0.0/8", 1, { port: 22, protocol: "tcp" })] };
  const encoded = encodeNetRules(plan);
  assert.equal(egressAbsentBits(encoded.keys, encoded.count), NO_PROTOCOL | NO_ANY);
});

Deno.test("ruleSetEntries() puts each interface in its ingress_ifaces slot with its IFACE entry's value, the first of a slot only", () => {
  const interfaces = [
    { ifindex: 3, name: "eth0", defaultDrop: true, ruleId: 7 },
    { ifindex: 3 + 256, name: "eth1", defaultDrop: false, ruleId: 8 }, // the slot of eth0: found by its entry
    { ifindex: 3, name: "eth0", defaultDrop: false, ruleId: 9 }, // listed again: the first is kept
    { ifindex: 511, name: "eth2", defaultDrop: false, ruleId: 10 },
  ];
  const entries = ruleSetEntries(resolved({}, { interfaces }));
  const slots = entries.ifaceSlots;
  assert.equal(slots.byteLength, STAT_LIMITS.XDP_STAT_SLOTS * AEGIS_IFACE_SLOT.size);
  const view = new DataView(slots.buffer);
  const slot = (index: number) => {
    const offset = index * AEGIS_IFACE_SLOT.size;
    return {
      ifindex: view.getUint32(offset, true),
      rule: decodeRule(
        slots.slice(offset + AEGIS_IFACE_SLOT.fields.rule.offset, offset + AEGIS_IFACE_SLOT.size),
      ),
    };
  };
  assert.deepEqual(slot(3), { ifindex: 3, rule: { ruleId: 7, allow: false, prefixLength: 0 } });
  assert.deepEqual(slot(255), { ifindex: 511, rule: { ruleId: 10, allow: true, prefixLength: 0 } });
  const used = [...Array(STAT_LIMITS.XDP_STAT_SLOTS).keys()].filter((index) => slot(index).ifindex !== 0);
  assert.deepEqual(used, [3, 255]);
  // The rules map keeps the same value for each interface, the one on another's slot included.
  const ifaces = rulesOf(resolved({}, { interfaces })).filter((entry) => entry.kind === RULE.IFACE);
  assert.deepEqual(
    ifaces.map((entry) => [entry.b, decodeRule(new Uint8Array(entry.value)).ruleId]),
    [[3, 7], [259, 8], [511, 10]],
  );
});

Deno.test("ruleSetEntries() merges duplicate keys across a table that grows past its first guess, in plan order", () => {
  // Allows of 3,000 networks, then denies of every other one, then port rules (five protocols each): more
  // entries than the table was sized for (one per rule), so it grows and rehashes while keys repeat.
  const network = (i: number) => `10.${i >> 8}.${i & 0xff}.0/24`;
  const egress: NetRule[] = [];
  for (let i = 0; i < 3000; i++) egress.push(v4(network(i), i + 1, { action: "allow" }));
  for (let i = 0; i < 3000; i += 2) egress.push(v4(network(i), 10_000 + i));
  for (let i = 0; i < 1000; i++) egress.push(v4(network(i), 20_000 + i, { port: 443 }));
  const any = entriesOf(resolved({ egress }), "egress_any");
  assert.equal(any.length, 3000);
  any.forEach((entry, i) => {
    assert.deepEqual(entry.key, netKey({ addr: parseCidr(network(i)).addr, prefixLength: 24, protocol: 0 }));
    const ruleId = i % 2 === 0 ? 10_000 + i : i + 1;
    assert.deepEqual(entry.rule, { ruleId, allow: i % 2 === 1, prefixLength: 24 });
  });
  const ports = entriesOf(resolved({ egress }), "egress_port");
  assert.equal(ports.length, 5000);
  assert.deepEqual(ports.slice(0, 5).map((entry) => entry.rule.ruleId), Array(5).fill(20_000));
});

/** The egress_any entries of subject 0, protocol 0, as "family addr/len rule prefixLength". */
function anyEntries(set: ResolvedRuleSet): string[] {
  const { keys, values, count } = encodeNetRules(set.plan);
  const f = AEGIS_NET_KEY.fields;
  const found = [];
  for (let i = 0; i < count; i++) {
    const key = keys.subarray(i * AEGIS_NET_KEY.size, (i + 1) * AEGIS_NET_KEY.size);
    const view = new DataView(key.buffer, key.byteOffset);
    const space = view.getUint32(f.space.offset, true);
    if (space >> 8 !== NET.EGRESS_ANY || key[f.protocol.offset] !== 0) continue;
    const family = space & 0xff;
    const length = view.getUint32(f.prefixlen.offset, true) - 56;
    const addr = key.subarray(f.addr.offset, f.addr.offset + (family === 4 ? 4 : 16));
    const rule = decodeRule(values.subarray(i * AEGIS_RULE.size, (i + 1) * AEGIS_RULE.size));
    const text = family === 4 ? [...addr].join(".") : [...addr].map((b) => b.toString(16)).join(",");
    found.push(
      `${family} ${text}/${length} rule ${rule.ruleId} ${rule.allow ? "allow" : "deny"} ${rule.prefixLength}`,
    );
  }
  return found;
}

Deno.test("ruleSetEntries() writes the egress default deny as every network but loopback, least specific of all", () => {
  const entries = anyEntries(resolved({ egressDefaultDeny: { ruleId: 9 } }));
  const v4Entries = entries.filter((entry) => entry.startsWith("4 "));
  assert.deepEqual(v4Entries, [
    "4 128.0.0.0/1 rule 9 deny 0",
    "4 0.0.0.0/2 rule 9 deny 0",
    "4 64.0.0.0/3 rule 9 deny 0",
    "4 96.0.0.0/4 rule 9 deny 0",
    "4 112.0.0.0/5 rule 9 deny 0",
    "4 120.0.0.0/6 rule 9 deny 0",
    "4 124.0.0.0/7 rule 9 deny 0",
    "4 126.0.0.0/8 rule 9 deny 0",
  ]);
  assert.equal(entries.filter((entry) => entry.startsWith("6 ")).length, 128, "every IPv6 network but ::1");
  // A less specific rule the default's networks would hide from the trie's lookup keeps deciding them.
  const wide = anyEntries(
    resolved({ egress: [v4("0.0.0.0/1", 3, { action: "allow" })], egressDefaultDeny: { ruleId: 9 } }),
  ).filter((entry) => entry.startsWith("4 "));
  assert.deepEqual(wide, [
    "4 0.0.0.0/1 rule 3 allow 1",
    "4 128.0.0.0/1 rule 9 deny 0",
    "4 0.0.0.0/2 rule 3 allow 1",
    "4 64.0.0.0/3 rule 3 allow 1",
    "4 96.0.0.0/4 rule 3 allow 1",
    "4 112.0.0.0/5 rule 3 allow 1",
    "4 120.0.0.0/6 rule 3 allow 1",
    "4 124.0.0.0/7 rule 3 allow 1",
    "4 126.0.0.0/8 rule 3 allow 1",
  ]);
  // A rule for the whole family takes the default's place.
  const whole = anyEntries(resolved({ egress: [v4("0.0.0.0/0", 4)], egressDefaultDeny: { ruleId: 9 } }));
  assert.deepEqual(whole.filter((entry) => entry.startsWith("4 ")), ["4 0.0.0.0/0 rule 4 deny 0"]);
});

Deno.test("ruleSetEntries() keys a program's rules on its subject number, and switches subjects on", () => {
  const set = resolved(
    {
      egress: [v4("10.0.0.0/8", 1, { subject: 2 })],
      egressUsers: [{ ruleId: 2, uid: 0, ports: [443], portsAre: "allowed", subject: 1 }],
      bind: [{ ruleId: 3, port: 8080, protocol: "tcp", subject: 2 }],
      subjects: [
        { subject: 1, exe: "/usr/bin/curl", children: false, optional: false, ruleId: 2 },
        { subject: 2, exe: "/opt/launcher", children: true, optional: false, ruleId: 1 },
      ],
    },
    {
      subjects: [
        { subject: 1, children: false, dev: 8, ino: 100n, path: "/usr/bin/curl" },
        { subject: 2, children: true, dev: 8, ino: 200n, path: "/opt/launcher" },
      ],
    },
  );
  const rules = rulesOf(set).map((entry) => `${entry.kind} ${entry.a} ${entry.b} ${entry.value[0]}`);
  assert.ok(rules.includes(`${RULE.SUBJECT} 100 8 1`), "curl's inode is subject 1");
  assert.ok(rules.includes(`${RULE.SUBJECT_TREE} 200 8 2`), "the launcher's, with its children, subject 2");
  assert.ok(rules.includes(`${RULE.USER_UID} 1 0 2`), "a users entry of subject 1");
  assert.ok(rules.includes(`${RULE.USER_UID_PORT} ${(1 << 16) + 443} 0 2`), "its port, of subject 1");
  assert.ok(rules.includes(`${RULE.BIND} ${(2 << 16) + 8080} ${TCP} 3`), "a bind rule of subject 2");
  const switchWord = decodeGenInfo(ruleSetEntries(set).genInfo).subjectSwitch;
  assert.equal(switchWord & SUBJECTS.ON, SUBJECTS.ON, "the switch (gen_info): some rule names an exe");
  assert.equal(switchWord & SUBJECTS.TREE, 1, "some rule has children: the ancestors are walked");
  // What each subject has none of (the switch: the rules naming no program), for the hooks to skip.
  assert.equal(
    switchWord & ~(SUBJECTS.TREE | SUBJECTS.ON),
    SUBJECTS.NO_NET | SUBJECTS.NO_NAMES | SUBJECTS.NO_USERS,
    "no rule names no program",
  );
  assert.ok(
    rulesOf(set).every((entry) => entry.kind !== 58),
    "no switch entry in the rules map (kind 58 is free)",
  );
  assert.equal(decodeGenInfo(ruleSetEntries(resolved({})).genInfo).subjectSwitch, 0, "no exe rule: off");
  const actionOf = (kind: number, ino: bigint) =>
    rulesOf(set).find((entry) => entry.kind === kind && entry.a === ino)!.value[4];
  assert.equal(actionOf(RULE.SUBJECT, 100n), SUBJECTS.NO_NET | SUBJECTS.NO_NAMES, "curl: a users entry only");
  assert.equal(
    actionOf(RULE.SUBJECT_TREE, 200n),
    SUBJECTS.NO_NAMES | SUBJECTS.NO_USERS,
    "the launcher: CIDR",
  );
  const { keys, count } = encodeNetRules(set.plan);
  const spaces = Array.from(
    { length: count },
    (_, i) =>
      new DataView(keys.buffer).getUint32(i * AEGIS_NET_KEY.size + AEGIS_NET_KEY.fields.space.offset, true),
  );
  assert.deepEqual(spaces, [(2 << 16) | (NET.EGRESS_ANY << 8) | 4]);
  assert.equal(decodeGenInfo(ruleSetEntries(set).genInfo).taskRules, 3, "users entries plus programs");
});

Deno.test("ruleSetEntries() marks what rules by name a subject and a pair have none of", () => {
  const set = resolved(
    {
      egress: [v4("10.0.0.0/8", 1)],
      egressHosts: [
        { ruleId: 2, action: "allow", host: "api.example.com", subject: 1 },
        { ruleId: 3, action: "deny", host: "*.example.org", port: 443, protocol: "tcp", subject: 1 },
        { ruleId: 3, action: "deny", host: "*.example.org", protocol: "udp", subject: 1 },
        { ruleId: 4, action: "deny", host: "ads.example.net" },
      ],
      subjects: [{ subject: 1, exe: "/usr/bin/curl", children: false, optional: false, ruleId: 2 }],
    },
    { subjects: [{ subject: 1, children: false, dev: 8, ino: 100n, path: "/usr/bin/curl" }] },
  );
  const rules = rulesOf(set);
  const subject = rules.find((entry) => entry.kind === RULE.SUBJECT)!;
  assert.equal(subject.value[4], SUBJECTS.NO_NET | SUBJECTS.NO_USERS, "curl: rules by name only");
  assert.equal(
    decodeGenInfo(ruleSetEntries(set).genInfo).subjectSwitch,
    SUBJECTS.ON | SUBJECTS.NO_USERS,
    "no program named: a CIDR rule and a rule by name",
  );
  const pairs = rules.filter((entry) => entry.kind === RULE.HOST_SUBJECT).map((
    entry,
  ) => [entry.b, entry.value[4]]);
  assert.deepEqual(pairs, [
    [2, SUBJECTS.PAIR_NO_PORT | SUBJECTS.PAIR_NO_PROTOCOL],
    [3, SUBJECTS.PAIR_NO_ANY],
  ], "api.example.com: a rule of every port and protocol; *.example.org: a port's and a protocol's");
});

Deno.test("ruleSetEntries() writes the allowlist: its switch, each allowed inode, and a sha256 entry's ctime stamp", () => {
  const ctimeNs = 1_765_000_000_123_456_789n;
  const execAllow = [
    { dev: 2049, ino: 12n, ruleId: 3 },
    { dev: 2049, ino: 13n, ruleId: 4, ctimeNs },
    // Named by a path entry first and a sha256 entry after: the hash check holds.
    { dev: 2049, ino: 14n, ruleId: 3 },
    { dev: 2049, ino: 14n, ruleId: 4, ctimeNs },
  ];
  const set = resolved({ execDefaultDeny: { ruleId: 2 } }, { execAllow });
  assert.deepEqual(rulesOf(set), [
    { kind: RULE.EXEC_DEFAULT_DENY, a: 0n, b: 0, value: [2, 0, 0, 0, 0, 0, 0, 0] },
    { kind: RULE.EXEC_ALLOW, a: 12n, b: 2049, value: [3, 0, 0, 0, 1, 0, 0, 0] },
    { kind: RULE.EXEC_ALLOW, a: 13n, b: 2049, value: [4, 0, 0, 0, 2, 0, 0, 0] },
    { kind: RULE.EXEC_STAMP, a: ctimeNs, b: 13, value: [4, 0, 0, 0, 1, 0, 0, 0] },
    { kind: RULE.EXEC_ALLOW, a: 14n, b: 2049, value: [4, 0, 0, 0, 2, 0, 0, 0] },
    { kind: RULE.EXEC_STAMP, a: ctimeNs, b: 14, value: [4, 0, 0, 0, 1, 0, 0, 0] },
  ]);
  assert.deepEqual(rulesOf(resolved({}, { execAllow })), [], "without exec.default deny: nothing");
});

Deno.test("ruleSetEntries() writes each writer's subject, the writers switch, and i_generation stamps of allowed and protected inodes", () => {
  const plan = {
    protect: [{ ruleId: 3, path: "/etc/sudoers" }],
    execDefaultDeny: { ruleId: 5 },
    execAllow: [{ ruleId: 4, path: "/usr/bin/sudo" }],
    subjects: [{ subject: 1, exe: "/usr/bin/dpkg", children: true, optional: false, ruleId: 6 }],
    writers: [{ ruleId: 6, subject: 1, exe: "/usr/bin/dpkg", children: true }],
  };
  const set = resolved(plan, {
    protect: [{ ino: 10n, dev: 2049, ruleId: 3, generation: 77 }],
    execAllow: [{ ino: 11n, dev: 2049, ruleId: 4, generation: 0x01020304 }, { ino: 12n, dev: 7, ruleId: 4 }],
    subjects: [{ subject: 1, children: true, dev: 2049, ino: 20n, path: "/usr/bin/dpkg" }],
  });
  const kinds = [RULE.WRITER, RULE.WRITERS, RULE.INODE_GEN] as number[];
  assert.deepEqual(rulesOf(set).filter((entry) => kinds.includes(entry.kind)), [
    { kind: RULE.INODE_GEN, a: 11n, b: 2049, value: [4, 3, 2, 1, 1, 0, 0, 0] },
    { kind: RULE.INODE_GEN, a: 10n, b: 2049, value: [77, 0, 0, 0, 1, 0, 0, 0] },
    // files.writers: protected files and allowances both (AEGIS_WRITER_PROTECTED | AEGIS_WRITER_ALLOWED)
    { kind: RULE.WRITER, a: 1n, b: 0, value: [6, 0, 0, 0, 3, 0, 0, 0] },
    { kind: RULE.WRITERS, a: 0n, b: 0, value: [6, 0, 0, 0, 1, 0, 0, 0] },
  ]);
  // A writer of allowances only (trust: dpkg's package manager), alone and named again by files.writers.
  const allowedOnly = {
    ruleId: 7,
    subject: 1,
    exe: "/usr/bin/dpkg",
    children: true,
    allowedOnly: true as const,
  };
  const writerValues = (writers: typeof plan.writers) =>
    rulesOf(resolved({ ...plan, writers }, {
      protect: [{ ino: 10n, dev: 2049, ruleId: 3 }],
      subjects: [{ subject: 1, children: true, dev: 2049, ino: 20n, path: "/usr/bin/dpkg" }],
    })).filter((entry) => entry.kind === RULE.WRITER).map((entry) => entry.value);
  assert.deepEqual(writerValues([allowedOnly]), [[7, 0, 0, 0, 2, 0, 0, 0]], "allowances only");
  assert.deepEqual(
    writerValues([allowedOnly, plan.writers[0]!]),
    [[7, 0, 0, 0, 3, 0, 0, 0]],
    "one entry per subject, with what either gives",
  );
  assert.equal(
    decodeGenInfo(ruleSetEntries(set).genInfo).taskRules,
    0,
    "a writer's subject alone makes no egress decision read the task",
  );
  assert.deepEqual(
    rulesOf(resolved({ protect: plan.protect }, { protect: [{ ino: 10n, dev: 2049, ruleId: 3 }] }))
      .filter((entry) => kinds.includes(entry.kind)),
    [],
    "no writers, no generation shown: nothing more than before",
  );
});

Deno.test("ruleSetEntries() writes gen_info.host_rules: any, exact, wildcard label counts, levels absent", () => {
  const hostRules = (egressHosts: HostRule[]) =>
    decodeGenInfo(ruleSetEntries(resolved({ egressHosts })).genInfo).hostRules;
  const { HOST_ANY, HOST_EXACT, HOST_LEVELS_SHIFT } = HOST_SHAPE;
  const { PAIR_NO_PORT, PAIR_NO_PROTOCOL, PAIR_NO_ANY } = SUBJECTS;
  assert.equal(hostRules([]), 0);
  // One wildcard over a two-label domain, every port: the port and protocol levels are never looked up.
  assert.equal(
    hostRules([{ ruleId: 1, action: "allow", host: "*.example.com" }]),
    HOST_ANY | 1 << 2 | (PAIR_NO_PORT | PAIR_NO_PROTOCOL) << HOST_LEVELS_SHIFT,
  );
  // An exact name with a port, a three-label wildcard with a protocol: only the level of neither is absent.
  assert.equal(
    hostRules([
      { ruleId: 1, action: "deny", host: "api.example.com", port: 443, protocol: "tcp" },
      { ruleId: 2, action: "allow", host: "*.a.example.com", protocol: "udp" },
    ]),
    HOST_ANY | HOST_EXACT | 1 << 3 | PAIR_NO_ANY << HOST_LEVELS_SHIFT,
  );
  // A rule naming a program leaves the levels of the rules naming none alone.
  assert.equal(
    hostRules([{ ruleId: 1, action: "allow", host: "api.example.com", subject: 1 }]),
    HOST_ANY | HOST_EXACT | (PAIR_NO_PORT | PAIR_NO_PROTOCOL | PAIR_NO_ANY) << HOST_LEVELS_SHIFT,
  );
});

Deno.test("splitNetEntries() puts the rules of a whole address in the hash, keyed at the full prefix, the rest in the trie", () => {
  const v6 = (cidr: string, ruleId: number): NetRule => ({ ruleId, action: "deny", ...parseCidr(cidr) });
  const set = resolved({
    egress: [
      v4("10.1.2.3/32", 1),
      v4("10.1.2.0/24", 2),
      v4("10.9.9.9/32", 3, { port: 443, protocol: "tcp" }),
      v6("2001:db8::1/128", 4),
      v6("2001:db8::/64", 5),
      v4("::ffff:10.7.7.7/128", 6) as NetRule,
    ],
  });
  const encoded = encodeNetRules(set.plan);
  const split = splitNetEntries(encoded);
  assert.equal(split.net_rules.count + split.net_exact.count, encoded.count, "every entry in one map");
  const f = AEGIS_NET_KEY.fields;
  const read = ({ keys, values, count }: { keys: Uint8Array; values: Uint8Array; count: number }) =>
    Array.from({ length: count }, (_, i) => {
      const key = keys.subarray(i * AEGIS_NET_KEY.size, (i + 1) * AEGIS_NET_KEY.size);
      const view = new DataView(key.buffer, key.byteOffset);
      return {
        prefix: view.getUint32(f.prefixlen.offset, true),
        family: key[f.space.offset]!,
        tail: [...key.subarray(f.addr.offset + (key[f.space.offset] === 4 ? 4 : 16))],
        rule: decodeRule(values.subarray(i * AEGIS_RULE.size, (i + 1) * AEGIS_RULE.size)),
      };
    });
  const exact = read(split.net_exact);
  assert.deepEqual(
    exact.map((e) => e.rule.ruleId).toSorted(),
    [1, 3, 4, 6],
    "the /32s and the /128 (and a mapped /128)",
  );
  for (const entry of exact) {
    assert.equal(entry.prefix, NET_KEY_FULL_PREFIX, "keyed as the hooks look up");
    assert.ok(entry.tail.every((byte) => byte === 0), "the bytes past the address are zero");
    assert.equal(
      entry.rule.prefixLength,
      entry.family === 4 ? 32 : 128,
      "the rule still ranks as its length",
    );
  }
  assert.deepEqual(read(split.net_rules).map((e) => [e.rule.ruleId, e.prefix - 56]).toSorted(), [[2, 24], [
    5,
    64,
  ]]);
  assert.equal(decodeGenInfo(ruleSetEntries(set).genInfo).netExactEntries, split.net_exact.count);
  assert.equal(decodeGenInfo(ruleSetEntries(set).genInfo).netRulesEntries, split.net_rules.count);
  // Nothing whole: the trie's batch is the encoded one itself.
  const none = encodeNetRules(resolved({ egress: [v4("10.0.0.0/8", 1)] }).plan);
  assert.equal(splitNetEntries(none).net_rules, none);
  assert.equal(splitNetEntries(none).net_exact.count, 0);
});
