import assert from "node:assert/strict";
import { diffPolicies } from "./apply_diff.ts";
import { parsePolicy } from "./parse.ts";

const policy = (body: string) =>
  parsePolicy(
    `apiVersion: aegisbpf.io/v1\nkind: Policy\nmetadata: {name: p, version: 1}\nspec:\n${body}`,
    "p.yaml",
  );

Deno.test("diffPolicies() matches rules by id, and rules without one by what they say", () => {
  const before = policy(
    "  network:\n    egress:\n      deny:\n        - { id: a, cidr: 10.0.0.0/8 }\n        - { cidr: 10.1.0.0/16 }\n" +
      "        - { cidr: 10.2.0.0/16 }\n",
  );
  const after = policy(
    "  network:\n    egress:\n      deny:\n        - { cidr: 10.9.0.0/16 }\n        - { id: a, cidr: 10.0.0.0/9 }\n" +
      "        - { cidr: 10.2.0.0/16 }\n",
  );
  const { rules, settings } = diffPolicies(before, after);
  assert.deepEqual(settings, []);
  assert.deepEqual(rules.map((r) => [r.change, r.list, r.id]), [
    ["changed", "network.egress.deny", "a"],
    ["added", "network.egress.deny", "network.egress.deny[0]"],
    ["removed", "network.egress.deny", "network.egress.deny[1]"],
  ]);
});

Deno.test("diffPolicies() reports settings, and everything as added against no policy", () => {
  const after = policy(
    "  mode: enforce\n  bind:\n    deny: [{ port: 25, protocol: tcp }]\n".replace(
      "  bind",
      "  network:\n    bind",
    ).replace("    deny", "      deny"),
  );
  const { rules, settings } = diffPolicies(undefined, after);
  assert.deepEqual(settings, [{ setting: "mode", before: null, after: "enforce" }]);
  assert.deepEqual(rules.map((r) => r.change), ["added"]);
  assert.deepEqual(diffPolicies(after, after), { rules: [], settings: [] });
});
