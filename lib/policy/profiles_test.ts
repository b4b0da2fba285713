import assert from "node:assert/strict";
import { gatherLintFacts } from "./facts.ts";
import { lintPolicy } from "./lint.ts";
import { parsePolicySource } from "./parse.ts";
import { PROFILES, profileTestText, profileText, testFileBeside } from "./profiles.ts";
import { parsePolicyTest } from "./test_file.ts";
import { policyRules } from "./schema.ts";

const TECHNIQUES = [
  "T1003.008",
  "T1053.003",
  "T1543.002",
  "T1548.003",
  "T1574.006",
  "T1098.004",
  "T1552.005",
];

for (const { name } of PROFILES) {
  Deno.test(`profile ${name} validates, is audit mode, and lints without errors on this host`, async () => {
    const source = parsePolicySource(await profileText(name), `policies/${name}.yaml`);
    assert.equal(source.policy.metadata.name, name);
    assert.equal(source.policy.spec.mode, "audit");
    const facts = await gatherLintFacts(source.policy, { sshConnection: "192.0.2.7 50000 192.0.2.1 22" });
    const errors = lintPolicy(source.policy, source.locate, facts).filter((w) => w.severity === "error");
    assert.deepEqual(errors.map((w) => w.message), []);
  });

  Deno.test(`profile ${name} tags every rule and covers the baseline techniques`, async () => {
    const source = parsePolicySource(await profileText(name), `policies/${name}.yaml`);
    const rules = policyRules(source.policy);
    for (const { id, rule } of rules) {
      assert.ok(rule.tags && rule.tags.length > 0, `${name}: rule ${id} has no tags`);
    }
    const tags = new Set(rules.flatMap(({ rule }) => rule.tags ?? []));
    for (const technique of TECHNIQUES) assert.ok(tags.has(technique), `${name} lacks ${technique}`);
    // Nothing denies the survival set: no files.deny at all, no exec.default: deny.
    assert.equal(source.policy.spec.files?.deny, undefined);
    assert.notEqual(source.policy.spec.exec?.default, "deny");
  });
}

Deno.test("profiles web-server and bastion keep curl and wget to this host (T1105)", async () => {
  for (const name of ["web-server", "bastion"] as const) {
    const { policy } = parsePolicySource(await profileText(name), name);
    const t1105 = policyRules(policy).filter(({ rule }) => rule.tags?.includes("T1105"));
    assert.deepEqual(
      [...new Set(t1105.map(({ rule }) => "exe" in rule ? rule.exe : undefined))].sort(),
      ["/usr/bin/curl", "/usr/bin/wget"],
    );
  }
});

for (const { name } of PROFILES) {
  Deno.test(`profile ${name} has a policy test file whose events name rules of the profile`, async () => {
    const policy = parsePolicySource(await profileText(name), `policies/${name}.yaml`).policy;
    const ids = new Set(policyRules(policy).map((rule) => rule.id));
    const test = parsePolicyTest(await profileTestText(name, "p.yaml"), `/x/${name}.test.yaml`);
    assert.equal(test.policy, "/x/p.yaml");
    assert.equal(test.mode, "enforce", "tested as enforced: no probe leaves the host");
    const named = test.cases.flatMap((c) => c.event?.rule === undefined ? [] : [String(c.event.rule)]);
    assert.ok(named.length >= 3);
    for (const rule of named) assert.ok(ids.has(rule), `${rule} is a rule of ${name}`);
  });
}

Deno.test("testFileBeside() puts the test file beside the policy", () => {
  assert.equal(testFileBeside("/etc/aegisbpf/policy.yaml"), "/etc/aegisbpf/policy.test.yaml");
  assert.equal(testFileBeside("p.json"), "p.test.yaml");
  assert.equal(testFileBeside("policy"), "policy.test.yaml");
});
