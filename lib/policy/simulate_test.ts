import assert from "node:assert/strict";
import { InputError } from "../errors.ts";
import { minimal } from "./_testdata.ts";
import { compilePolicy } from "./compile.ts";
import { parsePolicy } from "./parse.ts";
import { simulate } from "./simulate.ts";

const plan = (mode: "enforce" | "audit", spec: string) =>
  compilePolicy(parsePolicy(minimal(`  mode: ${mode}\n${spec}`), "p.yaml"));

const CANDIDATE = `  network:
    egress:
      deny:
        - { id: imds, cidr: 169.254.169.254/32 }
        - { id: smtp, cidr: 0.0.0.0/0, ports: [25], protocol: tcp }
`;

const connect = (daddr: string, dport: number, extra: Record<string, unknown> = {}) =>
  JSON.stringify({ type: "net.connect", net: { protocol: "tcp", daddr, dport }, ...extra });

Deno.test("simulate() counts per rule what the candidate would deny, weighted by count", () => {
  const log = [
    connect("169.254.169.254", 80, { rule: "imds" }),
    connect("169.254.169.254", 80, { rule: "imds", count: 41 }),
    connect("192.0.2.9", 25, { rule: "old-smtp" }),
    connect("192.0.2.9", 443, { rule: "old-web" }),
    JSON.stringify({ type: "agent.start", host: "h" }),
    JSON.stringify({ type: "policy.applied" }),
    "",
  ].join("\n");
  const report = simulate(plan("enforce", CANDIDATE), log, "events.jsonl");
  assert.deepEqual(report, {
    events: 4,
    actions: 44,
    allowed: 1,
    newlyAllowed: 1,
    skipped: 2,
    unreplayable: { events: 0, actions: 0 },
    dropped: 0,
    rules: [
      { rule: "imds", decision: "deny", actions: 42, events: 2, newlyMatched: 0 },
      { rule: "smtp", decision: "deny", actions: 1, events: 1, newlyMatched: 1 },
    ],
  });
});

Deno.test("simulate() reports audit for an audit-mode candidate", () => {
  const report = simulate(plan("audit", CANDIDATE), connect("169.254.169.254", 80) + "\n", "log");
  assert.deepEqual(report.rules, [{
    rule: "imds",
    decision: "audit",
    actions: 1,
    events: 1,
    newlyMatched: 1,
  }]);
});

Deno.test("simulate() names the line of a malformed event", () => {
  const log = `${connect("10.0.0.1", 80)}\n{"type":"net.connect","net":{"protocol":"tcp"}}\n`;
  assert.throws(() => simulate(plan("enforce", CANDIDATE), log, "events.jsonl"), (error: unknown) => {
    assert.ok(error instanceof InputError);
    assert.match(error.message, /^events\.jsonl:2: a net\.connect event needs net\.daddr/);
    return true;
  });
  assert.throws(
    () => simulate(plan("enforce", CANDIDATE), "not json\n", "x.log"),
    /^InputError: x\.log:1: not a JSON event line/,
  );
  assert.throws(
    () => simulate(plan("enforce", CANDIDATE), "[1]\n", "x.log"),
    /x\.log:1: not a JSON event object/,
  );
  assert.throws(
    () => simulate(plan("enforce", CANDIDATE), `${connect("10.0.0.1", 1, { count: 0 })}\n`, "x.log"),
    /x\.log:1: count: expected a whole number/,
  );
});

Deno.test("simulate() tolerates only a torn last line, and says so", () => {
  const log = `${connect("169.254.169.254", 80)}\n{"type":"net.conn`;
  const report = simulate(plan("enforce", CANDIDATE), log, "events.jsonl");
  assert.equal(report.tornLastLine, "events.jsonl:2");
  assert.equal(report.events, 1);
  assert.throws(() =>
    simulate(plan("enforce", CANDIDATE), `{"type":"net.conn\n${connect("1.1.1.1", 1)}`, "l")
  );
});

Deno.test("simulate() replays a program's connects against rules that name it, and the egress default", () => {
  const candidate = plan(
    "enforce",
    "  network:\n    egress:\n      default: deny\n      allow:\n" +
      "        - { id: curl-api, cidr: 192.0.2.0/24, port: 443, exe: /usr/bin/curl }\n",
  );
  const log = [
    // A line written by hand names the program's path; the agent's names the rule's program (subject).
    connect("192.0.2.9", 443, { process: { uid: 0, exe: { path: "/usr/bin/curl" } } }),
    connect("192.0.2.9", 443, { subject: "/usr/bin/curl", rule: "old" }),
    connect("192.0.2.9", 443, { process: { uid: 0, exe: { path: "/usr/bin/wget" } } }),
    connect("127.0.0.1", 8080),
    "",
  ].join("\n");
  const report = simulate(candidate, log, "events.jsonl");
  assert.equal(report.allowed, 3, "curl to its allowed network, twice, and loopback");
  assert.deepEqual(report.rules.map((rule) => [rule.rule, rule.actions]), [["network.egress.default", 1]]);
});

Deno.test("simulate() replays an untrusted exec by its inode, against a candidate allowlist, for this host's events", () => {
  const candidate = plan(
    "enforce",
    "  exec:\n    default: deny\n    allow:\n      - { id: tools, path: /opt/tools, recursive: true }\n",
  );
  const exec = (ino: number, host: string) =>
    JSON.stringify({
      type: "exec",
      host,
      rule: "exec.default",
      file: { name: "tool", dev: 2049, ino },
      reason: "untrusted",
    });
  // The candidate's targets as resolved here: inode 10 is under /opt/tools (rule 1).
  const inodeRules = (dev: number, ino: number, host: string | undefined) =>
    host !== "here" ? undefined : dev === 2049 && ino === 10 ? [1] : [];
  const log = [exec(10, "here"), exec(11, "here"), exec(12, "elsewhere"), ""].join("\n");
  const report = simulate(candidate, log, "events.jsonl", inodeRules);
  assert.equal(report.events, 2);
  assert.equal(report.allowed, 1, "inode 10 is in the candidate's allowed set");
  assert.equal(report.newlyAllowed, 1);
  assert.deepEqual(report.rules.map((rule) => [rule.rule, rule.actions, rule.newlyMatched]), [[
    "exec.default",
    1,
    0,
  ]]);
  assert.deepEqual(report.unreplayable, { events: 1, actions: 1 }, "another host's inode is not replayed");
  const withoutInodes = simulate(candidate, log, "events.jsonl");
  assert.deepEqual(
    withoutInodes.unreplayable,
    { events: 3, actions: 3 },
    "no path, no inode map: not replayed",
  );
});

Deno.test("simulate() replays file.write events against files.protect entries, by op and path", () => {
  const write = (op: string, path: string, extra: Record<string, unknown> = {}) =>
    JSON.stringify({ type: "file.write", op, file: { path, dev: 1, ino: 2 }, ...extra });
  const log = [
    write("open-write", "/etc/sudoers", { rule: "sudoers" }),
    write("create", "/etc/cron.d", { rule: "cron", count: 3 }),
    write("create", "/etc/cron.d/new"),
    write("open-write", "/etc/hosts", { rule: "hosts" }),
    "",
  ].join("\n");
  const candidate = "  files:\n    protect:\n      - { id: sudoers, path: /etc/sudoers }\n" +
    "      - { id: cron, path: /etc/cron.d, recursive: true }\n";
  const report = simulate(plan("audit", candidate), log, "events.jsonl");
  assert.equal(report.events, 4);
  assert.equal(report.actions, 6);
  assert.equal(report.allowed, 1);
  assert.equal(report.newlyAllowed, 1, "hosts is no longer protected");
  assert.deepEqual(report.rules, [
    { rule: "cron", decision: "audit", actions: 4, events: 2, newlyMatched: 1 },
    { rule: "sudoers", decision: "audit", actions: 1, events: 1, newlyMatched: 0 },
  ]);
  assert.throws(
    () =>
      simulate(
        plan("audit", candidate),
        `${JSON.stringify({ type: "file.write", file: { path: "/x" } })}\n`,
        "l",
      ),
    /l:1: a file.write event needs op/,
  );
});
