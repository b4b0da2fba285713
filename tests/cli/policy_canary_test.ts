import assert from "node:assert/strict";
import { listHistory } from "../../lib/state/history.ts";
import { scratch } from "./cli.ts";

const POLICY = `apiVersion: aegisbpf.io/v1
kind: Policy
metadata:
  name: c
  version: 1
spec:
  mode: enforce
  network:
    egress:
      deny: [{ id: t, cidr: 192.0.2.77/32 }]
`;

Deno.test("policy apply --canary checks its flags before touching anything", async () => {
  await using s = await scratch();
  await Deno.writeTextFile(`${s.dir}/p.yaml`, POLICY);
  const cases: [string[], RegExp][] = [
    [["--canary", "5m"], /--canary needs --max-deny-rate N/],
    [["--max-deny-rate", "5"], /--max-deny-rate needs --canary DUR/],
    [["--canary", "soon", "--max-deny-rate", "5"], /--canary/],
    [["--canary", "500ms", "--max-deny-rate", "5"], /--canary: 500ms is too short/],
    [["--canary", "5m", "--max-deny-rate", "lots"], /--max-deny-rate: "lots" is not a rate/],
    [["--canary", "5m", "--max-deny-rate", "5", "--dry-run"], /--canary and --dry-run do not go together/],
  ];
  for (const [flags, message] of cases) {
    const { code, stdout, stderr } = await s.run(["policy", "apply", "p.yaml", ...flags]);
    assert.equal(code, 2, `${flags.join(" ")}: ${stderr}`);
    assert.equal(stdout, "");
    assert.match(stderr, message);
    assert.equal(stderr.split("\n").length, 2, "one line");
  }
});

Deno.test("policy apply --canary with nothing in force to roll back to exits 2 and records nothing", async () => {
  await using s = await scratch();
  await Deno.writeTextFile(`${s.dir}/p.yaml`, POLICY);
  const { code, stderr } = await s.run([
    "policy",
    "apply",
    "p.yaml",
    "--canary",
    "1m",
    "--max-deny-rate",
    "1",
  ]);
  assert.equal(code, 2);
  assert.match(stderr, /--canary needs a policy in force to roll back to, and history holds none/);
  assert.deepEqual(listHistory(s.stateDir), []);
});
