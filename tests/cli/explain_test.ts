/**
 * `explain` takes what `events` prints: the text line, or only its time, looked up in the agent's log.
 */
import assert from "node:assert/strict";
import { eventLogPath } from "../../lib/agent/event_log.ts";
import type { AegisEvent } from "../../lib/kernel/events.ts";
import { fileIdentity } from "../../lib/kernel/resolve.ts";
import { type Scratch, scratch } from "./cli.ts";

const POLICY = `apiVersion: aegisbpf.io/v1
kind: Policy
metadata: { name: web, version: 4 }
spec:
  mode: enforce
  network:
    egress:
      deny:
        - { id: imds, cidr: 169.254.169.254/32 }
`;

const process = {
  pid: 42,
  ppid: 1,
  uid: 1000,
  gid: 1000,
  comm: "curl",
  cgroup: { id: 7, path: "/user.slice" },
};
const connect = (ts: string, daddr: string, rule: string): AegisEvent => ({
  ts,
  host: "web-1",
  type: "net.connect",
  decision: "deny",
  mode: "enforce",
  rule,
  policy: { name: "web", version: 4, sha256: "b".repeat(64) },
  process,
  net: { family: "ipv4", protocol: "tcp", daddr, dport: 80, saddr: "10.0.0.5", sport: 41000 },
  count: 1,
});

async function withLog(fn: (s: Scratch) => Promise<void>): Promise<void> {
  await using s = await scratch();
  await Deno.writeTextFile(`${s.dir}/p.yaml`, POLICY);
  const lines = [
    { ts: "2026-11-23T10:00:00.100000001Z", host: "web-1", type: "agent.start", mode: "enforce", pid: 9 },
    connect("2026-11-23T10:00:01.200000001Z", "169.254.169.254", "imds"),
    // The same decision twice in one millisecond (a flood): one answer.
    connect("2026-11-23T10:00:02.300000001Z", "192.0.2.7", "old"),
    connect("2026-11-23T10:00:02.300000002Z", "192.0.2.7", "old"),
    // Two different events in one millisecond: ambiguous by time alone.
    connect("2026-11-23T10:00:03.400000001Z", "192.0.2.8", "old"),
    connect("2026-11-23T10:00:03.400000002Z", "169.254.169.254", "imds"),
  ];
  await Deno.writeTextFile(
    eventLogPath(s.stateDir),
    lines.map((line) => JSON.stringify(line)).join("\n") + "\n",
  );
  await fn(s);
}

Deno.test("explain takes a text line as events prints it, and finds its JSON line in the log", async () => {
  await withLog(async (s) => {
    const printed = await s.run(["events"], { env: { NO_COLOR: "1" } });
    assert.equal(printed.code, 0, printed.stderr);
    const line = printed.stdout.split("\n").find((l) => l.startsWith("2026-11-23T10:00:01.200"));
    assert.ok(line, printed.stdout);
    const text = await s.run(["explain", line, "--policy", "p.yaml"]);
    assert.equal(text.code, 0, text.stderr);
    const log = eventLogPath(s.stateDir);
    assert.equal(
      text.stdout,
      `net.connect (logged at ${log}:2): deny by rule imds under p.yaml (policy web version 4)\n`,
    );
    const json = await s.run(["explain", line, "--policy", "p.yaml", "--json"]);
    const answer = JSON.parse(json.stdout);
    assert.equal(answer.ruleName, "imds");
    assert.equal(answer.logged, `${log}:2`);
    assert.equal(answer.agrees, true);
  });
});

Deno.test("explain takes only the time, and - reads text and JSON lines mixed", async () => {
  await withLog(async (s) => {
    const time = await s.run(["explain", "2026-11-23T10:00:02.300Z", "--policy", "p.yaml"]);
    assert.equal(time.code, 0, time.stderr);
    assert.match(
      time.stdout,
      /^net\.connect \(logged at .*:3\): allow by no rule matches under p\.yaml .*; the event's rule old is not in this policy\n$/,
    );
    const stdin = [
      "2026-11-23T10:00:01.200Z",
      JSON.stringify({ type: "net.bind", net: { protocol: "tcp", sport: 6667 } }),
    ].join("\n") + "\n";
    const mixed = await s.run(["explain", "-", "--policy", "p.yaml"], { stdin });
    assert.equal(mixed.code, 0, mixed.stderr);
    assert.match(mixed.stdout, /^net\.connect \(logged at .*:2\): deny by rule imds /);
    assert.match(mixed.stdout, /\nnet\.bind: allow by no rule matches under p\.yaml/);
  });
});

Deno.test("explain says which lines an ambiguous time matches, and what to give when none does (exit 2)", async () => {
  await withLog(async (s) => {
    const ambiguous = await s.run(["explain", "2026-11-23T10:00:03.400Z", "--policy", "p.yaml"]);
    assert.equal(ambiguous.code, 2);
    assert.match(
      ambiguous.stderr,
      /^aegisbpf: error: EVENT: 2 different events at 2026-11-23T10:00:03\.400Z \(.*events\.jsonl:5, .*events\.jsonl:6\); pass the JSON line/,
    );
    const narrowed = await s.run([
      "explain",
      "2026-11-23T10:00:03.400Z net.connect rule=imds",
      "--policy",
      "p.yaml",
    ]);
    assert.equal(narrowed.code, 0, narrowed.stderr);
    assert.match(narrowed.stdout, /:6\): deny by rule imds/);
    const none = await s.run(["explain", "2026-11-23T11:00:00.000Z", "--policy", "p.yaml"]);
    assert.equal(none.code, 2);
    assert.match(
      none.stderr,
      /EVENT: no event at 2026-11-23T11:00:00\.000Z in .*events\.jsonl or .*events\.jsonl\.1; it may have rotated away/,
    );
    const junk = await s.run(["explain", "hello", "--policy", "p.yaml"]);
    assert.equal(junk.code, 2);
    assert.match(junk.stderr, /EVENT: not an event: give the JSON line \(aegisbpf events --json\), the line/);
  });
});

Deno.test("explain decides an untrusted exec of this host by its inode, under a policy with an allowlist", async () => {
  await using s = await scratch();
  const tools = `${s.dir}/tools`;
  await Deno.mkdir(tools);
  await Deno.writeTextFile(`${tools}/tool`, "#!/bin/sh\n");
  await Deno.writeTextFile(`${s.dir}/stray`, "#!/bin/sh\n");
  await Deno.writeTextFile(
    `${s.dir}/p.yaml`,
    "apiVersion: aegisbpf.io/v1\nkind: Policy\nmetadata: { name: web, version: 5 }\nspec:\n  mode: enforce\n" +
      `  exec:\n    default: deny\n    allow:\n      - { id: tools, path: ${tools}, recursive: true }\n`,
  );
  const mountinfo = await Deno.readTextFile("/proc/self/mountinfo");
  const line = (path: string) => {
    const { dev, ino } = fileIdentity(path, mountinfo);
    return JSON.stringify({
      type: "exec",
      host: Deno.hostname(),
      rule: "exec.default",
      file: { name: path.split("/").at(-1), dev, ino: Number(ino) },
      reason: "untrusted",
    });
  };
  const allowed = await s.run(["explain", "--policy", "p.yaml", line(`${tools}/tool`)]);
  assert.equal(allowed.code, 0, allowed.stderr);
  assert.match(allowed.stdout, /^exec: allow by no rule matches under p\.yaml/);
  const refused = await s.run(["explain", "--policy", "p.yaml", "--json", line(`${s.dir}/stray`)]);
  assert.equal(refused.code, 0, refused.stderr);
  assert.deepEqual(
    (({ decision, ruleName, reason, agrees }) => ({ decision, ruleName, reason, agrees }))(
      JSON.parse(refused.stdout),
    ),
    { decision: "deny", ruleName: "exec.default", reason: "untrusted", agrees: true },
  );
});
