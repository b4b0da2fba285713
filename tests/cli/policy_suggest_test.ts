import assert from "node:assert/strict";
import { fileIdentity } from "../../lib/kernel/resolve.ts";
import { PROFILES } from "../../lib/policy/profiles.ts";
import { scratch } from "./cli.ts";

/** A program every Linux host has, in a directory suggest searches. */
const PROGRAM = "/usr/bin/env";

function auditLog(): string {
  const { dev, ino } = fileIdentity(PROGRAM, Deno.readTextFileSync("/proc/self/mountinfo"));
  const host = Deno.hostname();
  const process = { pid: 4242, ppid: 1, uid: 0, gid: 0, comm: "job\nspec:", cgroup: { id: 7 } };
  const base = { host, decision: "audit", mode: "audit", process, count: 1 };
  return [
    { ts: "2026-05-01T10:00:00.000000001Z", type: "agent.start", host },
    {
      ...base,
      ts: "2026-05-01T10:00:01.000000001Z",
      type: "exec",
      rule: "exec.default",
      reason: "untrusted",
      file: { name: "env", dev, ino: Number(ino) },
      count: 3,
    },
    {
      ...base,
      ts: "2026-05-01T10:00:02.000000001Z",
      type: "net.connect",
      rule: "network.egress.default",
      net: {
        family: "ipv4",
        protocol: "tcp",
        daddr: "198.51.100.7",
        dport: 443,
        saddr: "10.0.0.2",
        sport: 5000,
      },
    },
    {
      ...base,
      ts: "2026-05-01T10:00:03.000000001Z",
      type: "net.bind",
      rule: "no-high-ports",
      net: { family: "ipv4", protocol: "tcp", saddr: "0.0.0.0", sport: 9000 },
    },
  ].map((event) => JSON.stringify(event)).join("\n") + "\n";
}

Deno.test("policy suggest writes a candidate from the agent's log that validates, lints and lets the run through", async () => {
  await using s = await scratch();
  const log = auditLog();
  await Deno.writeTextFile(`${s.stateDir}/events.jsonl`, log);
  const suggested = await s.run(["policy", "suggest", "-o", "candidate.yaml"]);
  assert.equal(suggested.code, 0, suggested.stderr);
  assert.match(suggested.stderr, /not suggested: net\.bind refused by rule "no-high-ports"/);
  const text = await Deno.readTextFile(`${s.dir}/candidate.yaml`);
  assert.match(text, /# suggested: 3 would-deny, .*comm "job\\nspec:"/);
  assert.match(text, new RegExp(`- path: ${PROGRAM}\\n`));
  assert.match(text, /- cidr: 198\.51\.100\.7\/32\n\s+port: 443\n\s+protocol: tcp/);
  for (const command of ["validate", "lint"]) {
    const result = await s.run(["policy", command, "candidate.yaml"]);
    assert.equal(result.code, 0, `${command}: ${result.stdout}${result.stderr}`);
    assert.doesNotMatch(result.stdout, /error/);
  }
  // simulate, the reverse report: the candidate lets the recorded exec and connect through.
  const simulated = await s.run(["policy", "simulate", "candidate.yaml", "--events", "-", "--json"], {
    stdin: log,
  });
  assert.equal(simulated.code, 0, simulated.stderr);
  const report = JSON.parse(simulated.stdout);
  // Nothing recorded is denied under it (the bind too: the candidate has no bind rule).
  assert.deepEqual(report.rules, []);
  assert.equal(report.allowed, 5);
  // The same log through stdin gives the same candidate; an existing output is not replaced without --force.
  const again = await s.run(["policy", "suggest", "--events", "-"], { stdin: log });
  assert.equal(again.stdout, text);
  const refused = await s.run(["policy", "suggest", "-o", "candidate.yaml"]);
  assert.equal(refused.code, 2);
  assert.match(refused.stderr, /candidate\.yaml: exists; give another -o FILE, or --force/);
  assert.equal((await s.run(["policy", "suggest", "-o", "candidate.yaml", "--force"])).code, 0);
});

Deno.test("policy suggest --from adds to a policy, and --since leaves older events out", async () => {
  await using s = await scratch();
  await Deno.writeTextFile(`${s.dir}/events.jsonl`, auditLog());
  await Deno.writeTextFile(
    `${s.dir}/base.yaml`,
    "apiVersion: aegisbpf.io/v1\nkind: Policy\nmetadata: { name: base, version: 4 }\nspec:\n  mode: audit\n" +
      "  files:\n    protect: [{ id: shadow, path: /etc/shadow, tags: [T1003.008] }]\n",
  );
  const from = await s.run(["policy", "suggest", "--events", "events.jsonl", "--from", "base.yaml"]);
  assert.equal(from.code, 0, from.stderr);
  assert.match(from.stdout, /name: base\n/);
  assert.match(from.stdout, /id: shadow\n\s+tags:\n\s+- T1003\.008\n\s+path: \/etc\/shadow/);
  assert.match(from.stdout, new RegExp(`- path: ${PROGRAM}`));
  const recent = await s.run(["policy", "suggest", "--events", "events.jsonl", "--since", "1h"]);
  assert.equal(recent.code, 0, recent.stderr);
  assert.doesNotMatch(recent.stdout, /allow:/);
  const bad = await s.run(["policy", "suggest", "--events", "events.jsonl", "--since", "soon"]);
  assert.equal(bad.code, 2);
});

Deno.test("policy init writes each profile, which validates and lints without errors", async () => {
  await using s = await scratch();
  const list = await s.run(["policy", "init", "--list"]);
  assert.equal(list.code, 0, list.stderr);
  for (const { name } of PROFILES) {
    assert.match(list.stdout, new RegExp(`^${name} `, "m"));
    const written = await s.run(["policy", "init", "--profile", name, "-o", `${name}.yaml`]);
    assert.equal(written.code, 0, written.stderr);
    const lint = await s.run(["policy", "lint", `${name}.yaml`]);
    assert.equal(lint.code, 0, `${name}: ${lint.stdout}${lint.stderr}`);
    assert.match(await Deno.readTextFile(`${s.dir}/${name}.yaml`), /mode: audit/);
    const again = await s.run(["policy", "init", "--profile", name, "-o", `${name}.yaml`]);
    assert.equal(again.code, 2, `${name}: replaced without --force`);
  }
  const stdout = await s.run(["policy", "init", "--profile", "bastion"]);
  assert.match(stdout.stdout, /name: bastion/);
  assert.equal((await s.run(["policy", "init", "--profile", "nope"])).code, 2);
  assert.equal((await s.run(["policy", "init"])).code, 2);
});

Deno.test("policy init --with-test writes the profile's test file beside the policy, naming it", async () => {
  await using s = await scratch();
  const written = await s.run(["policy", "init", "--profile", "web-server", "-o", "web.yaml", "--with-test"]);
  assert.equal(written.code, 0, written.stderr);
  const test = await Deno.readTextFile(`${s.dir}/web.test.yaml`);
  assert.match(test, /^policy: "web\.yaml"$/m);
  assert.match(test, /rule: imds/);
  assert.equal((await s.run(["policy", "init", "--profile", "baseline", "--with-test"])).code, 2, "needs -o");
  // An existing test file is refused before anything is written.
  const again = await s.run(["policy", "init", "--profile", "bastion", "-o", "other.yaml", "--with-test"]);
  assert.equal(again.code, 0, again.stderr);
  await Deno.remove(`${s.dir}/other.yaml`);
  const refused = await s.run(["policy", "init", "--profile", "bastion", "-o", "other.yaml", "--with-test"]);
  assert.equal(refused.code, 2);
  assert.match(refused.stderr, /other\.test\.yaml: exists/);
  await assert.rejects(Deno.stat(`${s.dir}/other.yaml`), Deno.errors.NotFound);
});
