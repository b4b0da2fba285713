import assert from "node:assert/strict";
import { stringify } from "yaml";
import { compilePolicy } from "./compile.ts";
import { decide, type DecisionEvent } from "./decide.ts";
import { parsePolicy } from "./parse.ts";
import {
  Random,
  randomBindEvent,
  randomEgressEvent,
  randomIngressEvent,
  randomPolicy,
  type RandomPolicyOptions,
} from "./random_policy.ts";
import { policySchema } from "./schema.ts";

const OPTIONS: RandomPolicyOptions = {
  interfaces: ["eth0", "eth1"],
  cgroups: ["/app.slice", "/app.slice/web.service", "/system.slice"],
  paths: ["/etc/shadow", "/usr/bin/nc", "/srv/keys"],
};
const CGROUPS = ["/", "/app.slice/web.service/x", "/app.slice/db.service", "/system.slice/sshd.service"];
const SEEDS = Array.from({ length: 400 }, (_, i) => i * 7919 + 1);

Deno.test("Random repeats its sequence for a seed", () => {
  const a = new Random(42);
  const b = new Random(42);
  const first = Array.from({ length: 100 }, () => a.int(1000));
  assert.deepEqual(first, Array.from({ length: 100 }, () => b.int(1000)));
  assert.notDeepEqual(first, Array.from({ length: 100 }, () => new Random(43).int(1000)));
  assert.ok(first.every((n) => Number.isInteger(n) && n >= 0 && n < 1000));
});

Deno.test("randomPolicy() gives the same policy for the same seed, and valid policies for every seed", () => {
  assert.deepEqual(randomPolicy(7, OPTIONS), randomPolicy(7, OPTIONS));
  for (const seed of SEEDS) {
    const policy = randomPolicy(seed, OPTIONS);
    const result = policySchema.safeParse(policy);
    assert.ok(result.success, `seed ${seed}: ${JSON.stringify(result.error?.issues)}`);
    assert.deepEqual(result.data, policy, `seed ${seed}: the schema changed the policy`);
  }
});

Deno.test("compilePolicy() of a random policy is deterministic and survives YAML and JSON round trips", () => {
  for (const seed of SEEDS) {
    const policy = randomPolicy(seed, OPTIONS);
    const plan = compilePolicy(policy);
    assert.deepEqual(compilePolicy(structuredClone(policy)), plan, `seed ${seed}`);
    const yaml = parsePolicy(stringify(policy), "random.yaml");
    assert.deepEqual(yaml, policy, `seed ${seed}: YAML round trip`);
    assert.deepEqual(compilePolicy(yaml), plan, `seed ${seed}: YAML round trip`);
    const json = parsePolicy(JSON.stringify(policy, null, 2), "random.json");
    assert.deepEqual(compilePolicy(json), plan, `seed ${seed}: JSON round trip`);
  }
});

function randomEvents(random: Random, count: number): DecisionEvent[] {
  return Array.from({ length: count }, () => {
    const area = random.int(3);
    if (area === 0) return randomEgressEvent(random, CGROUPS);
    if (area === 1) return randomBindEvent(random, CGROUPS);
    return randomIngressEvent(random, ["eth0", "eth1", "lo"]);
  });
}

Deno.test("decide() on random policies names a deny rule of the event's area, or the ingress default", () => {
  for (const seed of SEEDS) {
    const plan = compilePolicy(randomPolicy(seed, OPTIONS));
    for (const event of randomEvents(new Random(seed), 30)) {
      const result = decide(plan, event);
      if (result.decision === "allow") continue;
      const rule = plan.rules[result.ruleId!];
      assert.equal(result.decision, plan.mode === "enforce" ? "deny" : "audit");
      assert.equal(rule?.id, result.ruleName);
      assert.equal(rule?.action, "deny", `seed ${seed}: ${JSON.stringify(event)}`);
      assert.equal(rule?.area, event.area, `seed ${seed}: ${JSON.stringify(event)}`);
    }
  }
});

Deno.test("decide() on random policies matches an IPv4 address and its ::ffff: form alike", () => {
  for (const seed of SEEDS) {
    const plan = compilePolicy(randomPolicy(seed, OPTIONS));
    const random = new Random(seed);
    for (let i = 0; i < 30; i++) {
      const event = randomEgressEvent(random, CGROUPS);
      if (event.addr.includes(":")) continue;
      assert.deepEqual(decide(plan, { ...event, addr: `::ffff:${event.addr}` }), decide(plan, event));
    }
  }
});

Deno.test("decide() on random policies denies in enforce exactly what it audits in audit", () => {
  for (const seed of SEEDS.slice(0, 100)) {
    const plan = compilePolicy(randomPolicy(seed, OPTIONS));
    for (const event of randomEvents(new Random(seed), 30)) {
      const enforce = decide(plan, event, { mode: "enforce" });
      const audit = decide(plan, event, { mode: "audit" });
      assert.deepEqual(audit, enforce.decision === "deny" ? { ...enforce, decision: "audit" } : enforce);
    }
  }
});

Deno.test("decide() on random policies allows every task once the root cgroup is exempt", () => {
  for (const seed of SEEDS.slice(0, 100)) {
    const plan = compilePolicy(randomPolicy(seed, OPTIONS));
    const exempt = { ...plan, scope: { include: plan.scope.include, exempt: ["/"] } };
    for (const event of randomEvents(new Random(seed), 30)) {
      if (event.area !== "ingress") assert.deepEqual(decide(exempt, event), { decision: "allow" });
    }
  }
});
