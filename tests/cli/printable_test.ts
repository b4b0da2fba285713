/**
 * A policy author's or a process's escape sequences never reach the operator's terminal raw: every text
 * and JSON sink escapes C0 controls (but the newline), DEL, C1 controls and bidi/invisible format characters.
 */
import assert from "node:assert/strict";
import { type Result, scratch } from "./cli.ts";

/** Characters a terminal acts on or hides; a newline is the one control a line writer may end a line with. */
// deno-lint-ignore no-control-regex -- finding them is the point
const UNSAFE = /[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]/u;

function assertPrintable(what: string, { stdout, stderr }: Result): void {
  for (const [name, text] of [["stdout", stdout], ["stderr", stderr]]) {
    const found = UNSAFE.exec(text!);
    assert.equal(
      found,
      null,
      `${what}: raw U+${found?.[0].codePointAt(0)?.toString(16)} on ${name}: ${text}`,
    );
  }
}

/** Bad names and ids: refused, and the message quotes them. */
const BAD_NAMES = `apiVersion: aegisbpf.io/v1
kind: Policy
metadata:
  name: "web\\e[2J\\u009b2J\\u202e"
  version: 1
spec:
  files:
    deny:
      - { id: "x\\e[2J", path: /etc/shadow }
  network:
    egress:
      deny:
        - { id: "imds\\u009b2J", cidr: 169.254.169.254/32 }
`;

/** Valid, but its paths and cgroups carry escapes that lint, apply and diff print. */
const BAD_PATHS = `apiVersion: aegisbpf.io/v1
kind: Policy
metadata:
  name: web
  version: 1
spec:
  scope:
    cgroups: ["/sys\\e[2J\\u009b.slice"]
  files:
    deny:
      - { path: "/tmp/\\e]0;pwn\\anope\\u009b2J", optional: true }
  exec:
    deny:
      - { path: "/tmp/\\e[2Jnope\\r\\u200b" }
`;

const EVENT = JSON.stringify({
  ts: "2026-12-01T00:00:00.000000000Z",
  host: "h\x1b[2J",
  type: "exec",
  decision: "deny",
  mode: "enforce",
  rule: "r\x9b2J",
  process: {
    pid: 7,
    ppid: 1,
    uid: 0,
    gid: 0,
    comm: "\x1b[2Jevil\x07",
    cgroup: { id: 1, path: "/e\x1b]0;x\x07" },
  },
  file: { path: "/tmp/\x1b[1A\u202e", dev: 1, ino: 2 },
  count: 1,
}).replace("\\u001b[2Jevil", "\\u001b[2Jevil\u009b\u007f");

Deno.test("policy lint, validate, apply and diff print a policy's escape sequences escaped, text and json", async () => {
  await using s = await scratch();
  await Deno.writeTextFile(`${s.dir}/names.yaml`, BAD_NAMES);
  await Deno.writeTextFile(`${s.dir}/paths.yaml`, BAD_PATHS);
  for (const file of ["names.yaml", "paths.yaml"]) {
    for (const format of ["text", "json"]) {
      const global = ["--log-format", format];
      const json = format === "json" ? ["--json"] : [];
      for (
        const args of [
          ["policy", "lint", file, ...json],
          ["policy", "validate", file, ...json],
          ["policy", "apply", "--dry-run", file, ...json],
          ["policy", "diff", file, ...json],
        ]
      ) {
        const result = await s.run([...global, ...args]);
        assertPrintable(`${args.join(" ")} (${format})`, result);
        // validate checks the schema only: the paths are valid, and it says nothing about them.
        if (file === "paths.yaml" && args[1] === "validate") continue;
        if (file === "names.yaml") assert.equal(result.code, 2, `${args.join(" ")} accepted ${file}`);
        assert.match(result.stdout + result.stderr, /\\x1b|\\u001b/, `${args.join(" ")}: shown escaped`);
        if (format === "json") {
          // (apply --dry-run prints lint warnings as text even with --json: not this test's concern)
          const lines = (result.stdout + result.stderr).trimEnd().split("\n");
          for (const line of lines.filter((line) => line.startsWith("{"))) JSON.parse(line);
        }
      }
    }
  }
});

Deno.test("events, explain and simulate print an event's escape sequences escaped", async () => {
  await using s = await scratch();
  await Deno.writeTextFile(`${s.stateDir}/events.jsonl`, `${EVENT}\n`);
  await Deno.writeTextFile(
    `${s.dir}/ok.yaml`,
    BAD_PATHS.replace('"/tmp/\\e[2Jnope\\r\\u200b"', "/tmp"),
  );
  const runs: [string, Promise<Result>][] = [
    ["events", s.run(["events"])],
    ["events --json", s.run(["events", "--json"])],
    ["explain", s.run(["explain", EVENT, "--policy", "ok.yaml"])],
    ["explain --json", s.run(["explain", EVENT, "--policy", "ok.yaml", "--json"])],
    ["simulate", s.run(["policy", "simulate", "ok.yaml", "--events", `${s.stateDir}/events.jsonl`])],
  ];
  for (const [what, running] of runs) {
    const result = await running;
    assertPrintable(what, result);
    if (what.endsWith("--json")) JSON.parse(result.stdout.trimEnd().split("\n")[0]!);
  }
  const events = await runs[0]![1];
  assert.equal(events.code, 0, events.stderr);
  assert.match(events.stdout, /\\x1b\[2Jevil\\u009b\\u007f\\x07\[7\]/);
  const json = JSON.parse((await runs[1]![1]).stdout);
  assert.equal(json.process.comm, "\x1b[2Jevil\x9b\x7f\x07", "--json keeps the value, escaped as JSON");
});
