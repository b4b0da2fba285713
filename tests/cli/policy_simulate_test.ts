import assert from "node:assert/strict";
import { agentEvent, type AnyEvent, nowRfc3339 } from "../../lib/agent/agent_events.ts";
import { eventLogPath } from "../../lib/agent/event_log.ts";
import type { AegisEvent } from "../../lib/kernel/events.ts";
import { fileIdentity } from "../../lib/kernel/resolve.ts";
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

/** The agent's own log as it writes it: agent events, kernel events, a rate-limit summary, a drop report. */
function agentLog(): string {
  const envelope = {
    host: "web-1",
    mode: "audit" as const,
    policy: { name: "base", version: 1, sha256: "a".repeat(64) },
  };
  const kernel = (event: Omit<AegisEvent, "ts" | "host" | "mode" | "policy">): AegisEvent => ({
    ts: nowRfc3339(),
    ...envelope,
    ...event,
  });
  const process = { pid: 42, ppid: 1, uid: 1000, gid: 1000, comm: "curl", cgroup: { id: 7 } };
  const events: AnyEvent[] = [
    agentEvent(envelope, "agent.start", { pid: 40, requestedMode: "audit", deadmanMs: null, ingress: [] }),
    agentEvent(envelope, "policy.applied", { history: 1 }),
    kernel({
      type: "net.connect",
      decision: "audit",
      rule: "imds",
      process,
      net: {
        family: "ipv4",
        protocol: "tcp",
        daddr: "169.254.169.254",
        dport: 80,
        saddr: "10.0.0.5",
        sport: 5000,
      },
      count: 3,
    }),
    // A rate-limit summary: the kernel kept only the pid and the rule.
    kernel({
      type: "net.connect",
      decision: "audit",
      rule: "imds",
      process: { pid: 42 },
      count: 17,
      summary: true,
    }),
    // A file event of a rule that names no path (recursive match): no path to decide by.
    kernel({
      type: "file.open",
      decision: "audit",
      rule: "keys",
      process,
      file: { dev: 2049, ino: 131 },
      count: 1,
    }),
    agentEvent(envelope, "events.dropped", { count: 5, total: 5 }),
    agentEvent(envelope, "break_glass.on", { source: "marker", reason: "INC-1" }),
    agentEvent(envelope, "agent.stop", { signal: "SIGTERM", pid: 40 }),
  ];
  return events.map((event) => JSON.stringify(event)).join("\n") + "\n";
}

Deno.test("policy simulate replays the agent's own log through events --json, skipping and counting what it cannot decide", async () => {
  await using s = await scratch();
  await Deno.writeTextFile(`${s.dir}/c.yaml`, CANDIDATE);
  await Deno.writeTextFile(eventLogPath(s.stateDir), agentLog());
  const printed = await s.run(["events", "--json", "-n", "100"]);
  assert.equal(printed.code, 0, printed.stderr);
  assert.equal(printed.stdout.split("\n").filter(Boolean).length, 8);
  const json = await s.run(["policy", "simulate", "c.yaml", "--events", "-", "--json"], {
    stdin: printed.stdout,
  });
  assert.equal(json.code, 0, json.stderr);
  const report = JSON.parse(json.stdout);
  assert.equal(report.events, 1);
  assert.equal(report.actions, 3);
  assert.equal(report.skipped, 5, "agent.start, policy.applied, events.dropped, break_glass.on, agent.stop");
  assert.deepEqual(report.unreplayable, { events: 2, actions: 18 });
  assert.equal(report.dropped, 5);
  assert.deepEqual(report.rules.map((r: { rule: string; actions: number }) => [r.rule, r.actions]), [[
    "imds",
    3,
  ]]);
  const text = await s.run(["policy", "simulate", "c.yaml", "--events", "-"], { stdin: printed.stdout });
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /^1 action event \(3 actions\) from stdin .*; 5 other events skipped\n/);
  assert.match(text.stdout, /^not replayed: 2 events \(18 actions\) recorded without an address or path /m);
  assert.match(text.stdout, /^the log misses 5 events the agent lost \(events\.dropped\)$/m);
});

Deno.test("policy simulate replays this host's untrusted execs by inode against a candidate allowlist", async () => {
  await using s = await scratch();
  const tools = `${s.dir}/tools`;
  await Deno.mkdir(tools);
  await Deno.writeTextFile(`${tools}/tool`, "#!/bin/sh\n");
  await Deno.writeTextFile(`${s.dir}/stray`, "#!/bin/sh\n");
  await Deno.writeTextFile(
    `${s.dir}/c.yaml`,
    CANDIDATE.replace(
      / {2}network:[\s\S]*$/,
      `  exec:\n    default: deny\n    allow:\n      - { id: tools, path: ${tools}, recursive: true }\n`,
    ),
  );
  const mountinfo = await Deno.readTextFile("/proc/self/mountinfo");
  const exec = (path: string, host: string) => {
    const { dev, ino } = fileIdentity(path, mountinfo);
    return JSON.stringify({
      type: "exec",
      host,
      rule: "exec.default",
      file: { name: path.split("/").at(-1), dev, ino: Number(ino) },
      reason: "untrusted",
    });
  };
  const log = [exec(`${tools}/tool`, Deno.hostname()), exec(`${s.dir}/stray`, Deno.hostname())];
  await Deno.writeTextFile(
    `${s.dir}/events.jsonl`,
    [...log, exec(`${tools}/tool`, "elsewhere"), ""].join("\n"),
  );
  const { code, stdout, stderr } = await s.run([
    "policy",
    "simulate",
    "c.yaml",
    "--events",
    "events.jsonl",
    "--json",
  ]);
  assert.equal(code, 0, stderr);
  const report = JSON.parse(stdout);
  assert.equal(report.events, 2, "this host's two execs replayed");
  assert.equal(report.allowed, 1, "the tool is in the candidate's allowed set now");
  assert.deepEqual(report.rules.map((rule: { rule: string; actions: number }) => [rule.rule, rule.actions]), [
    ["exec.default", 1],
  ]);
  assert.deepEqual(report.unreplayable, { events: 1, actions: 1 }, "another host's event is not replayed");
});
