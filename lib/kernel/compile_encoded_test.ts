import assert from "node:assert/strict";
import { compileEncoded, encodeNetRules, type ResolvedRuleSet, ruleSetEntries } from "./entries.ts";
import { compilePolicy } from "../policy/compile.ts";
import { decide } from "../policy/decide.ts";
import type { NetRuleView, RuleSetPlan } from "../policy/plan.ts";
import type { Policy } from "../policy/schema.ts";
import { randomPolicy } from "../policy/random_policy.ts";
import { planAreas } from "../ops/apply.ts";

function unresolved(plan: RuleSetPlan): ResolvedRuleSet {
  return { plan, files: [], exec: [], scope: { include: [], exempt: [] }, interfaces: [] };
}

/** ruleSetEntries, each batch as its entries alone (a batch may be the plan's encoding, with its counts). */
function entriesOf(plan: RuleSetPlan): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(ruleSetEntries(unresolved(plan))).map(([name, value]) => {
      if (typeof value !== "object" || value === null || !("keys" in value)) return [name, value];
      const { keys, values, count } = value as { keys: unknown; values: unknown; count: unknown };
      return [name, { keys, values, count }];
    }),
  );
}

const OPTIONS = {
  paths: ["/etc/shadow", "/usr/bin/nc"],
  cgroups: ["/system.slice"],
  interfaces: ["eth0"],
  exes: ["/usr/bin/curl", "/usr/bin/python3"],
  hosts: ["api.test.example", "*.test.example"],
  egressDefault: true,
  maxRules: 8,
};

/** A time window, 08:00 to 18:00 UTC, on every third egress rule (by its place in deny, then allow). */
function withWindows(policy: Policy): Policy {
  const egress = policy.spec.network?.egress;
  if (!egress) return policy;
  let index = 0;
  const timed = <T extends object>(rule: T): T => index++ % 3 === 0 ? { ...rule, when: WINDOW } : rule;
  const copy = structuredClone(policy);
  copy.spec.network!.egress = {
    ...egress,
    ...egress.deny && { deny: egress.deny.map(timed) },
    ...egress.allow && { allow: egress.allow.map(timed) },
  };
  return copy;
}

const WINDOW = { from: "08:00", to: "18:00" };
/** Compile times: no clock (every rule in force), the window closed, the window open. */
const TIMES = [undefined, Date.parse("2026-12-07T07:00:00Z"), Date.parse("2026-12-07T12:00:00Z")];

Deno.test("compileEncoded() gives the plain plan's map entries, and the plan but its egress rules, for random policies", () => {
  const seen = { encoded: 0, defaultDeny: 0, byName: 0, closed: 0 };
  for (let seed = 1; seed <= 400; seed++) {
    const policy = withWindows(randomPolicy(seed, OPTIONS));
    const now = TIMES[seed % TIMES.length];
    const clock = now === undefined ? {} : { now };
    const plain = compilePolicy(policy, clock);
    const encoded = compileEncoded(policy, clock);
    const at = `seed ${seed}`;
    if (plain.egressHosts?.length) seen.byName++;
    if (plain.windows?.some((window) => !window.open)) seen.closed++;
    if (policy.spec.network?.egress?.default === "deny") {
      // Its default's entries and its lock-out check read every egress rule: compiled plainly.
      seen.defaultDeny++;
      assert.deepEqual(encoded, plain, at);
      continue;
    }
    seen.encoded++;
    assert.deepEqual(encoded.egress, [], at);
    const { encodedNet, egress: _egress, ...rest } = encoded;
    const { egress: _plainEgress, ...plainRest } = plain;
    assert.deepEqual(rest, plainRest, at);
    const { egressSubjects, ...net } = encodedNet!;
    assert.deepEqual(net, encodeNetRules(plain), at);
    const named = [...new Set(plain.egress.flatMap((rule) => rule.subject ?? []))].sort((a, b) => a - b);
    assert.deepEqual(egressSubjects, named, at);
    assert.deepEqual(planAreas(encoded), planAreas(plain), at);
    // Every map entry and gen_info word, the subjects' switches among them.
    assert.deepEqual(entriesOf(encoded), entriesOf(plain), at);
  }
  // Each kind of policy drawn often enough to count.
  for (const [kind, count] of Object.entries(seen)) assert.ok(count > 60, `only ${count} of 400: ${kind}`);
});

Deno.test("compileEncoded() hands its sink nothing of an earlier compile, and decide() refuses its plan for egress", () => {
  const policy = (cidr: string, port?: number): Policy => ({
    apiVersion: "aegisbpf.io/v1",
    kind: "Policy",
    metadata: { name: "sink", version: 1 },
    spec: {
      mode: "enforce",
      network: { egress: { deny: [{ cidr, protocol: "tcp", ...port !== undefined && { port } }] } },
    },
  });
  // The rule a sink is handed is the compile's own: one kept past its compile is not changed by the next.
  let kept: NetRuleView | undefined;
  compilePolicy(policy("2001:db8::/32", 443), { egressNet: (rule) => kept = rule });
  const before = structuredClone(kept);
  compilePolicy(policy("192.0.2.0/24"), { egressNet: () => {} });
  assert.deepEqual(kept, before);
  const second = compileEncoded(policy("192.0.2.0/24"));
  assert.deepEqual(second.encodedNet!.keys, encodeNetRules(compilePolicy(policy("192.0.2.0/24"))).keys);
  const event = { area: "egress", addr: "192.0.2.1", port: 80, protocol: "tcp" } as const;
  assert.equal(decide(compilePolicy(policy("192.0.2.0/24")), event).decision, "deny");
  assert.throws(() => decide(second, event), /encoded for the kernel/);
});

Deno.test("compileEncoded() keeps a rule's every port and both families of a rule without a cidr", () => {
  const policy: Policy = {
    apiVersion: "aegisbpf.io/v1",
    kind: "Policy",
    metadata: { name: "ports", version: 1 },
    spec: {
      mode: "enforce",
      network: {
        egress: {
          deny: [{ ports: [22, 443], protocol: "tcp" }, { cidr: "::ffff:192.0.2.0/120", port: 53 }],
          allow: [{ cidr: "192.0.2.7/32", ports: [53, 853] }],
        },
      },
    },
  };
  const plain = compilePolicy(policy);
  const encoded = compileEncoded(policy).encodedNet!;
  assert.equal(encoded.egressRules, plain.egress.length);
  assert.equal(encoded.egressRules, 7); // 2 families x 2 ports, 1, 2 ports
  assert.deepEqual(encoded.keys, encodeNetRules(plain).keys);
  assert.deepEqual(encoded.values, encodeNetRules(plain).values);
});
