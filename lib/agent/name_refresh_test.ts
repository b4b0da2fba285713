import assert from "node:assert/strict";
import type { Answer } from "../kernel/learned.ts";
import { compilePolicy } from "../policy/compile.ts";
import type { HostRule, RuleSetPlan } from "../policy/plan.ts";
import { NameRefresher } from "./name_refresh.ts";

Deno.test("NameRefresher resolves the policy's names at once, then again at half the time kept", async () => {
  const learned: Answer[][] = [];
  const asked: string[][] = [];
  const plane = {
    learn: (_rules: readonly HostRule[], answers: readonly Answer[]) => void learned.push([...answers]),
  };
  const resolve = (plan: RuleSetPlan, warn: (message: string) => void) => {
    const names = (plan.egressHosts ?? []).map((rule) => rule.host);
    asked.push(names);
    if (names.includes("gone.test.example")) warn("gone.test.example did not resolve: no answer");
    return Promise.resolve(
      names.includes("api.test.example") ? [{ name: "api.test.example", addr: "192.0.2.1", ttl: 120 }] : [],
    );
  };
  const warnings: string[] = [];
  const refresher = new NameRefresher(plane, (message) => warnings.push(message), resolve);
  refresher.use(
    compilePolicy({
      apiVersion: "aegisbpf.io/v1",
      kind: "Policy",
      metadata: { name: "n", version: 1 },
      spec: {
        mode: "enforce",
        network: { egress: { allow: [{ host: "api.test.example" }, { host: "gone.test.example" }] } },
      },
    }),
    0,
  );
  await refresher.tick(0);
  assert.deepEqual(asked, [["api.test.example", "gone.test.example"]]);
  assert.deepEqual(learned, [[{ name: "api.test.example", addr: "192.0.2.1", ttl: 120 }]]);
  assert.deepEqual(warnings, ["gone.test.example did not resolve: no answer"]);
  await refresher.tick(15_000);
  assert.deepEqual(
    asked.at(-1),
    ["gone.test.example"],
    "a name without an address: again after the floor's half",
  );
  assert.equal(warnings.length, 1, "a failure that goes on is said once");
  await refresher.tick(59_000);
  assert.equal(learned.length, 1, "api is not due before half of 120 s");
  await refresher.tick(60_000);
  assert.deepEqual(asked.at(-1), ["api.test.example"]);
  assert.equal(learned.length, 2, "renewed at 60 s");
});
