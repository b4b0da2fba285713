import assert from "node:assert/strict";
import { scratch } from "./cli.ts";

const CANDIDATE = `apiVersion: aegisbpf.io/v1
kind: Policy
metadata:
  name: candidate
  version: 3
spec:
  mode: enforce
  network:
    egress:
      deny:
        - { id: imds, cidr: 169.254.169.254/32 }
        - { id: smtp, cidr: 0.0.0.0/0, ports: [25], protocol: tcp }
`;

const LOG = [
  { type: "agent.start", host: "h" },
  {
    type: "net.connect",
    rule: "imds",
    net: { protocol: "tcp", daddr: "169.254.169.254", dport: 80 },
    count: 9,
  },
  { type: "net.connect", rule: "old", net: { protocol: "tcp", daddr: "192.0.2.1", dport: 25 } },
  { type: "net.connect", rule: "old", net: { protocol: "tcp", daddr: "192.0.2.1", dport: 443 } },
].map((event) => JSON.stringify(event)).join("\n") + "\n";

Deno.test("policy simulate prints per rule what the candidate would deny", async () => {
  await using s = await scratch();
  await Deno.writeTextFile(`${s.dir}/c.yaml`, CANDIDATE);
  await Deno.writeTextFile(`${s.dir}/events.jsonl`, LOG);
  const { code, stdout, stderr } = await s.run(["policy", "simulate", "c.yaml", "--events", "events.jsonl"]);
  assert.equal(code, 0, stderr);
  assert.equal(
    stdout,
    "3 action events (11 actions) from events.jsonl under c.yaml (policy candidate version 3, mode enforce); " +
      "1 other event skipped\n" +
      "RULE  DECISION  ACTIONS  EVENTS  NOT BY THIS RULE BEFORE\n" +
      "imds  deny      9        1       0\n" +
      "smtp  deny      1        1       1\n" +
      "allowed: 1 action, of which 1 denied or audited when recorded\n",
  );
  const json = await s.run(["policy", "simulate", "c.yaml", "--events", "-", "--json"], { stdin: LOG });
  assert.equal(json.code, 0, json.stderr);
  const report = JSON.parse(json.stdout);
  assert.equal(report.policy.name, "candidate");
  assert.deepEqual(report.rules.map((r: { rule: string; actions: number }) => [r.rule, r.actions]), [
    ["imds", 9],
    ["smtp", 1],
  ]);
});

Deno.test("policy simulate names the line of a bad event and exits 2", async () => {
  await using s = await scratch();
  await Deno.writeTextFile(`${s.dir}/c.yaml`, CANDIDATE);
  await Deno.writeTextFile(`${s.dir}/bad.jsonl`, LOG + '{"type":"net.bind","net":{}}\n');
  const bad = await s.run(["policy", "simulate", "c.yaml", "--events", "bad.jsonl"]);
  assert.equal(bad.code, 2);
  assert.equal(bad.stdout, "");
  assert.match(bad.stderr, /^aegisbpf: error: bad\.jsonl:5: a net\.bind event needs net\.sport\n$/);
  const missing = await s.run(["policy", "simulate", "c.yaml"]);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /missing --events/);
  const noLog = await s.run(["policy", "simulate", "c.yaml", "--events", "nope.jsonl"]);
  assert.equal(noLog.code, 2);
  assert.match(noLog.stderr, /nope\.jsonl: no such event log/);
});

Deno.test("policy simulate warns about a torn last line and goes on", async () => {
  await using s = await scratch();
  await Deno.writeTextFile(`${s.dir}/c.yaml`, CANDIDATE);
  await Deno.writeTextFile(`${s.dir}/torn.jsonl`, LOG + '{"type":"net.con');
  const { code, stdout, stderr } = await s.run(["policy", "simulate", "c.yaml", "--events", "torn.jsonl"]);
  assert.equal(code, 0, stderr);
  assert.match(stderr, /torn\.jsonl:5: ignored a torn last line/);
  assert.match(stdout, /^3 action events/);
});
