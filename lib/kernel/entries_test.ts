import assert from "node:assert/strict";
import { decodeRule, encodeNetKey, keyGeneration, type NetKey } from "../../ffi/mod.ts";
import { emptyPlan, type NetRule, type RuleSetPlan } from "../policy/plan.ts";
import { parseCidr } from "../policy/cidr.ts";
import { type ResolvedRuleSet, RULE_MAPS, type RuleMapName, ruleSetEntries } from "./entries.ts";

const TCP = 6;
const UDP = 17;
const UDPLITE = 136;

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

function netKey(key: Partial<NetKey> & Pick<NetKey, "addr" | "prefixLength" | "protocol">): number[] {
  return [...encodeNetKey({ gen: 0, family: 4, port: 0, ...key })];
}

/** A map's entries as plain arrays, to compare with deepEqual. */
function entriesOf(set: ResolvedRuleSet, map: RuleMapName, gen = 0) {
  const { keys, values } = ruleSetEntries(set, gen)[map];
  return keys.map((key, i) => ({ key: [...key], rule: decodeRule(values[i]!) }));
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

Deno.test("ruleSetEntries() lets a later allow replace an earlier allow of the same key", () => {
  const entries = entriesOf(
    resolved({
      egress: [v4("10.0.0.0/8", 1, { action: "allow" }), v4("10.0.0.0/8", 2, { action: "allow" })],
    }),
    "egress_any",
  );
  assert.deepEqual(entries.map((entry) => entry.rule.ruleId), [2]);
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

Deno.test("ruleSetEntries() keys an egress rule without protocol on protocol 0, or on TCP, UDP, UDP-Lite with a port", () => {
  const portless = entriesOf(resolved({ egress: [v4("10.0.0.0/8", 1)] }), "egress_any");
  const addr = new Uint8Array([10, 0, 0, 0]);
  assert.deepEqual(portless.map((entry) => entry.key), [netKey({ addr, prefixLength: 8, protocol: 0 })]);
  const set = resolved({ egress: [v4("10.0.0.0/8", 1, { port: 443 })] });
  assert.deepEqual(entriesOf(set, "egress_any"), []);
  assert.deepEqual(entriesOf(set, "egress_port").map((entry) => entry.key), [
    netKey({ addr, prefixLength: 8, protocol: TCP, port: 443 }),
    netKey({ addr, prefixLength: 8, protocol: UDP, port: 443 }),
    netKey({ addr, prefixLength: 8, protocol: UDPLITE, port: 443 }),
  ]);
  const udpOnly = entriesOf(resolved({ egress: [v4("10.0.0.0/8", 1, { protocol: "udp" })] }), "egress_any");
  assert.deepEqual(udpOnly.map((entry) => entry.key), [netKey({ addr, prefixLength: 8, protocol: UDP })]);
});

Deno.test("ruleSetEntries() keys a port-less ingress rule without protocol on protocol 0", () => {
  const addr = new Uint8Array([198, 18, 0, 0]);
  const ingress = (rules: NetRule[]) => ({ interfaces: [], failsafe: [], rules });
  const portless = entriesOf(resolved({ ingress: ingress([v4("198.18.0.0/15", 1)]) }), "ingress_any");
  assert.deepEqual(portless.map((entry) => entry.key), [netKey({ addr, prefixLength: 15, protocol: 0 })]);
  const withPort = entriesOf(
    resolved({ ingress: ingress([v4("198.18.0.0/15", 1, { port: 22 })]) }),
    "ingress_port",
  );
  assert.deepEqual(withPort.map((entry) => entry.key), [
    netKey({ addr, prefixLength: 15, protocol: TCP, port: 22 }),
    netKey({ addr, prefixLength: 15, protocol: UDP, port: 22 }),
    netKey({ addr, prefixLength: 15, protocol: UDPLITE, port: 22 }),
  ]);
});

Deno.test("ruleSetEntries() puts the generation in every key of every map", () => {
  const set = resolved(
    {
      egress: [v4("10.0.0.0/8", 1), v4("10.0.0.0/8", 1, { port: 80 })],
      egressUsers: [{ ruleId: 2, uid: 1000, ports: [443], portsAre: "allowed" }],
      bind: [{ ruleId: 3, port: 8080, protocol: "tcp" }],
      ingress: {
        interfaces: [{ name: "eth0", defaultDrop: true, ruleId: 0 }],
        failsafe: [{ ruleId: 4, port: 22, protocol: "tcp" }],
        rules: [v4("198.18.0.0/15", 5), v4("198.18.0.0/15", 5, { port: 22 })],
      },
    },
    {
      files: [{ dev: 2049, ino: 10n, ruleId: 6 }],
      exec: [{ dev: 2049, ino: 11n, ruleId: 7 }],
      scope: { include: [100n], exempt: [101n] },
      interfaces: [{ ifindex: 3, name: "eth0", defaultDrop: true, ruleId: 0 }],
    },
  );
  const counts: number[][] = [];
  for (const gen of [0, 1]) {
    const entries = ruleSetEntries(set, gen);
    counts.push(Object.values(entries).map(({ keys }) => keys.length));
    for (const name of Object.keys(RULE_MAPS) as RuleMapName[]) {
      const { keys } = entries[name];
      assert.ok(keys.length > 0, `${name} has entries`);
      for (const key of keys) assert.equal(keyGeneration(RULE_MAPS[name], key), gen, `${name} key`);
    }
  }
  assert.deepEqual(counts[0], counts[1], "both generations hold the same entries");
});

Deno.test("ruleSetEntries() lets an exempt cgroup win over the same cgroup included", () => {
  const { keys, values } =
    ruleSetEntries(resolved({}, { scope: { include: [100n], exempt: [100n] } }), 0).scope;
  assert.equal(keys.length, 1);
  assert.deepEqual([...values[0]!], [2, 0, 0, 0]);
});
