import assert from "node:assert/strict";
import { InputError } from "../errors.ts";
import type { ResolvedRuleSet } from "../kernel/entries.ts";
import { emptyPlan } from "../policy/plan.ts";
import { readAgentPolicy } from "./policy_source.ts";
import { changedRules, forwardChanged, planFor } from "./run_checks.ts";

async function defaultPolicy() {
  const dir = Deno.makeTempDirSync();
  try {
    return await readAgentPolicy({ configDir: `${dir}/etc`, stateDir: `${dir}/state` }, undefined);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

Deno.test("planFor() applies --audit/--enforce over the policy's mode and adds --ingress interfaces once", async () => {
  const sourced = await defaultPolicy();
  assert.equal(sourced.origin, "default");
  const plain = planFor(sourced, { configDir: "/etc/aegisbpf", ingress: [] });
  assert.equal(plain.mode, "audit");
  const audited = planFor({ ...sourced, origin: "flag" }, {
    requestedMode: "enforce",
    configDir: "/etc/aegisbpf",
    ingress: ["eth0", "eth0", "eth1"],
  });
  assert.equal(audited.mode, "enforce");
  assert.deepEqual(audited.ingress.interfaces.map((iface) => [iface.name, iface.defaultDrop]), [
    ["eth0", false],
    ["eth1", false],
  ]);
  assert.throws(
    () => planFor(sourced, { requestedMode: "enforce", configDir: "/etc/aegisbpf", ingress: [] }),
    InputError,
  );
});

Deno.test("changedRules() names the rules whose resolved inodes differ, in either direction", () => {
  const plan = emptyPlan();
  plan.rules.push({ id: "a", area: "file", action: "deny" }, { id: "b", area: "exec", action: "deny" });
  const set = (files: [number, bigint][], exec: [number, bigint][]): ResolvedRuleSet => ({
    plan,
    files: files.map(([ruleId, ino]) => ({ ruleId, ino, dev: 8 })),
    exec: exec.map(([ruleId, ino]) => ({ ruleId, ino, dev: 8 })),
    scope: { include: [], exempt: [] },
    interfaces: [],
  });
  const before = set([[1, 10n]], [[2, 20n]]);
  assert.deepEqual(changedRules(before, set([[1, 10n]], [[2, 20n]])), []);
  assert.deepEqual(changedRules(before, set([[1, 11n]], [[2, 20n]])), ["a"]);
  assert.deepEqual(changedRules(before, set([[1, 10n]], [])), ["b"]);
  assert.deepEqual(changedRules(before, set([[1, 10n], [1, 12n]], [[2, 20n]])), ["a"]);
  plan.rules.push({ id: "c", area: "file", action: "deny" });
  const protect = (ino: bigint) => ({ ...before, protect: [{ ruleId: 3, ino, dev: 8 }] });
  assert.deepEqual(changedRules(protect(30n), protect(30n)), []);
  assert.deepEqual(changedRules(protect(30n), protect(31n)), ["c"], "a protected file created or replaced");
  assert.deepEqual(changedRules(before, protect(30n)), ["c"]);
});

Deno.test("changedRules() names network.egress.forwarded when an interface was added, removed or made anew", () => {
  const plan = emptyPlan();
  plan.forwarded = {
    ruleId: plan.rules.push({ id: "network.egress.forwarded", area: "egress", action: "deny" }) - 1,
  };
  const set = (...forward: [string, number][]): ResolvedRuleSet => ({
    plan,
    files: [],
    exec: [],
    scope: { include: [], exempt: [] },
    interfaces: [],
    forward: forward.map(([name, ifindex]) => ({ name, ifindex })),
  });
  const before = set(["eth0", 2], ["tun0", 7]);
  assert.deepEqual(changedRules(before, set(["tun0", 7], ["eth0", 2])), []);
  assert.deepEqual(changedRules(before, set(["eth0", 2], ["tun0", 7], ["gre1", 9])), [
    "network.egress.forwarded",
  ]);
  assert.deepEqual(changedRules(before, set(["eth0", 2])), ["network.egress.forwarded"]);
  assert.deepEqual(changedRules(before, set(["eth0", 2], ["tun0", 8])), ["network.egress.forwarded"]);
  assert.equal(forwardChanged(undefined, []), false);
});

Deno.test("changedRules() names a rule whose program (exe) resolved to another inode: a package upgrade", () => {
  const plan = emptyPlan();
  plan.rules.push({ id: "no-curl", area: "egress", action: "deny", exe: "/usr/bin/curl" });
  plan.subjects = [{ subject: 1, exe: "/usr/bin/curl", children: false, optional: false, ruleId: 1 }];
  const set = (ino: bigint): ResolvedRuleSet => ({
    plan,
    files: [],
    exec: [],
    scope: { include: [], exempt: [] },
    interfaces: [],
    subjects: [{ subject: 1, children: false, dev: 8, ino, path: "/usr/bin/curl" }],
  });
  assert.deepEqual(changedRules(set(10n), set(10n)), []);
  assert.deepEqual(changedRules(set(10n), set(11n)), ["no-curl"]);
});
