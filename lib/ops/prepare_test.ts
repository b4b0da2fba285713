import assert from "node:assert/strict";
import { InputError } from "../errors.ts";
import { type ResolvedRuleSet, ruleSetEntries } from "../kernel/entries.ts";
import { compilePolicy } from "../policy/compile.ts";
import { appendHistory } from "../state/history.ts";
import { policySha256 } from "../policy/parse.ts";
import type { RuleSetPlan } from "../policy/plan.ts";
import { randomPolicy } from "../policy/random_policy.ts";
import { planAreas } from "./apply.ts";
import { compactPlan, prepareHere } from "./prepare.ts";

function unresolved(plan: RuleSetPlan): ResolvedRuleSet {
  return { plan, files: [], exec: [], scope: { include: [], exempt: [] }, interfaces: [] };
}

Deno.test("compactPlan() writes exactly the map entries of the plan it came from, for random policies", () => {
  const options = {
    paths: ["/etc/shadow", "/usr/bin/nc"],
    cgroups: ["/system.slice"],
    interfaces: ["eth0"],
    maxRules: 8,
  };
  for (let seed = 1; seed <= 400; seed++) {
    const plan = compilePolicy(randomPolicy(seed, options));
    const compact = compactPlan(plan);
    assert.deepEqual(compact.egress, []);
    assert.deepEqual(compact.ingress.rules, []);
    assert.deepEqual(planAreas(compact), planAreas(plan), `seed ${seed}`);
    assert.deepEqual(ruleSetEntries(unresolved(compact)), ruleSetEntries(unresolved(plan)), `seed ${seed}`);
    // File and exec rules keep their entries (with paths) for names the agent writes into applied.json.
    for (const target of [...plan.files, ...plan.exec]) {
      assert.deepEqual(compact.rules[target.ruleId], plan.rules[target.ruleId]);
    }
  }
});

Deno.test("prepareHere() answers for a history entry with its plan, identity and rule names, and no text", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "aegisbpf-prepare-" });
  try {
    const text = `apiVersion: aegisbpf.io/v1
kind: Policy
metadata: { name: stored, version: 4 }
spec:
  mode: enforce
  network:
    egress:
      deny: [{ cidr: 192.0.2.0/24 }, { id: named, cidr: "2001:db8::/32", port: 443 }]
`;
    const stateDir = `${dir}/state`;
    const entry = appendHistory(stateDir, {
      uid: 0,
      source: "p.yaml",
      kind: "policy",
      name: "stored",
      version: 4,
      sha256: policySha256(text),
      outcome: "applied",
      content: text,
    });
    const prepared = await prepareHere({ what: "stored", stateDir, seq: entry.seq });
    assert.deepEqual(prepared.input, {
      source: `history entry ${entry.seq} (p.yaml)`,
      kind: "policy",
      content: "",
      sha256: policySha256(text),
      name: "stored",
      version: 4,
    });
    assert.equal(prepared.origin, "applied");
    assert.equal(prepared.plan.mode, "enforce");
    assert.equal(prepared.plan.encodedNet?.egressRules, 2);
    assert.equal(prepared.rules.name(1), "network.egress.deny[0]");
    assert.equal(prepared.rules.name(2), "named");
    await assert.rejects(prepareHere({ what: "stored", stateDir, seq: 99 }), InputError);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
