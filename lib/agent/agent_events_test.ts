import assert from "node:assert/strict";
import type { AegisEvent } from "../kernel/events.ts";
import { palette } from "../text/palette.ts";
import { agentEvent } from "./agent_events.ts";
import { eventLine } from "./event_text.ts";
import { concerns } from "./freshness.ts";
import { cmdlineBreakGlass } from "./break_glass_watch.ts";

const policy = { name: "web", version: 7, sha256: "ab".repeat(32) };

Deno.test("agentEvent() carries the envelope and the type's fields, with an RFC 3339 ns timestamp", () => {
  const event = agentEvent({ host: "h1", mode: "enforce", policy }, "break_glass.on", { reason: "INC 1" });
  assert.match(event.ts, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/);
  assert.deepEqual({ ...event, ts: "" }, {
    ts: "",
    host: "h1",
    type: "break_glass.on",
    mode: "enforce",
    policy,
    reason: "INC 1",
  });
  assert.match(eventLine(event, palette(false)), /^\S+Z {2}- {6}break_glass.on {24}reason=INC 1$/);
});

Deno.test("eventLine() prints a kernel event as run emits it on one line with process and address", () => {
  const event: AegisEvent = {
    ts: "2026-11-23T10:00:00.000000001Z",
    host: "h1",
    type: "net.connect",
    decision: "deny",
    mode: "enforce",
    rule: "imds",
    policy,
    process: { pid: 42, ppid: 1, uid: 0, gid: 0, comm: "curl x", cgroup: { id: 9, path: "/a.slice" } },
    net: { family: "ipv6", protocol: "tcp", daddr: "2001:db8::1", dport: 443 },
    count: 3,
  };
  assert.equal(
    eventLine(event, palette(false)),
    "2026-11-23T10:00:00.000Z  deny   net.connect   rule=imds             curl x[42] uid=0 cgroup=/a.slice  " +
      "tcp [2001:db8::1]:443  x3",
  );
});

Deno.test("concerns() matches the rule path, files under a recursive directory, and missing parents", () => {
  const file = { ruleId: 1, path: "/etc/shadow" };
  const tree = { ruleId: 2, path: "/srv/keys", recursive: true };
  assert.equal(concerns(file, "/etc/shadow"), true);
  assert.equal(concerns(file, "/etc/shadow-"), false);
  assert.equal(concerns(file, "/etc/passwd"), false);
  assert.equal(concerns(tree, "/srv/keys/a/b"), true);
  assert.equal(concerns(file, "/etc/shadow/x"), false);
  assert.equal(concerns({ ruleId: 3, path: "/opt/new/bin/tool" }, "/opt/new"), true);
});

Deno.test("cmdlineBreakGlass() finds the exact flag among the kernel's words", () => {
  const dir = Deno.makeTempDirSync();
  try {
    const file = `${dir}/cmdline`;
    Deno.writeTextFileSync(file, "BOOT_IMAGE=/vmlinuz ro quiet aegisbpf.break_glass=1\n");
    assert.equal(cmdlineBreakGlass(file), true);
    Deno.writeTextFileSync(file, "ro aegisbpf.break_glass=10 xaegisbpf.break_glass=1\n");
    assert.equal(cmdlineBreakGlass(file), false);
    assert.equal(cmdlineBreakGlass(`${dir}/missing`), false);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
