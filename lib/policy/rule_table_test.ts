import assert from "node:assert/strict";
import { compilePolicy } from "./compile.ts";
import { randomPolicy } from "./random_policy.ts";
import { RuleTable } from "./rule_table.ts";
import type { RuleInfo } from "./plan.ts";

function roundTrip(table: RuleTable): RuleTable {
  return RuleTable.fromJSON(JSON.parse(JSON.stringify(table)));
}

Deno.test("RuleTable gives back every rule of random policies, also after a JSON round trip", () => {
  for (let seed = 1; seed <= 300; seed++) {
    const plan = compilePolicy(randomPolicy(seed));
    const table = RuleTable.of(plan.rules);
    const copy = roundTrip(table);
    assert.equal(table.size, plan.rules.length);
    plan.rules.forEach((rule, ruleId) => {
      assert.deepEqual(table.get(ruleId), rule);
      assert.deepEqual(copy.get(ruleId), rule);
    });
    assert.equal(table.get(plan.rules.length), undefined);
    assert.equal(table.name(plan.rules.length + 5), `#${plan.rules.length + 5}`);
  }
});

Deno.test("RuleTable keeps 100,000 rules named after their place as one run", () => {
  const rules: RuleInfo[] = [{ id: "default", area: "ingress", action: "deny" }];
  for (let i = 0; i < 100_000; i++) {
    rules.push({ id: `network.egress.deny[${i}]`, area: "egress", action: "deny" });
  }
  rules.push({ id: "network.egress.allow[0]", area: "egress", action: "allow" });
  const data = RuleTable.of(rules).toJSON();
  assert.equal(data.runs.length, 2);
  assert.deepEqual(data.single, [[0, rules[0]]]);
  const table = roundTrip(RuleTable.of(rules));
  assert.equal(table.name(1), "network.egress.deny[0]");
  assert.equal(table.name(100_000), "network.egress.deny[99999]");
  assert.deepEqual(table.get(100_001), { id: "network.egress.allow[0]", area: "egress", action: "allow" });
});

Deno.test("RuleTable keeps written ids that only look placed exactly as written", () => {
  const rules: RuleInfo[] = [
    { id: "default", area: "ingress", action: "deny" },
    { id: "web[01]", area: "egress", action: "deny" },
    { id: "web[2]", area: "egress", action: "deny" },
    { id: "web[3]", area: "egress", action: "allow" },
    { id: "files.deny[0]", area: "file", action: "deny", path: "/etc/shadow" },
    { id: "x[99999999999999999999]", area: "bind", action: "deny" },
  ];
  const table = roundTrip(RuleTable.of(rules));
  rules.forEach((rule, ruleId) => assert.deepEqual(table.get(ruleId), rule));
});
