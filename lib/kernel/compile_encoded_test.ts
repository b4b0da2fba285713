import assert from "node:assert/strict";
import { compileEncoded, encodeNetRules, type ResolvedRuleSet, ruleSetEntries } from "./entries.ts";
import { compilePolicy } from "../policy/compile.ts";
import type { RuleSetPlan } from "../policy/plan.ts";
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
  maxRules: 8,
};

Deno.test("compileEncoded() gives the plain plan's map entries, and the plan but its egress rules, for random policies", () => {
  let encodedSome = 0;
  for (let seed = 1; seed <= 400; seed++) {
    const policy = randomPolicy(seed, OPTIONS);
    const plain = compilePolicy(policy);
    const encoded = compileEncoded(policy);
    const at = `seed ${seed}`;
    if (policy.spec.network?.egress?.default === "deny") {
      // Its default's entries and its lock-out check read every egress rule: compiled plainly.
      assert.deepEqual(encoded, plain, at);
      continue;
    }
    encodedSome++;
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
  assert.ok(encodedSome > 100, `only ${encodedSome} of 400 policies took the encoded path`);
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
  // The rule handed over is reused: a compile after it starts clean.
  assert.deepEqual(compilePolicy(policy), plain);
});
