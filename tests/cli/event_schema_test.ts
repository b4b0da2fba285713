/** docs/schema/event.schema.json against events as the agent formats them, and against broken ones. */
import assert from "node:assert/strict";
import { agentEvent } from "../../lib/agent/agent_events.ts";
import { z } from "zod";
import { addressWords, EXEC_REASON, HOOK, PTRACE_OP, rawEvent } from "../../ffi/mod.ts";
import { formatEvent } from "../../lib/kernel/events.ts";
import { RuleTable } from "../../lib/policy/rule_table.ts";
import { assertMatchesSchema } from "../support/schema.ts";

const POLICY = { name: "web", version: 7, sha256: "a".repeat(64) };
const KERNEL = {
  ts: "2026-11-23T12:00:00.123456789Z",
  host: "node-1",
  type: "net.connect",
  decision: "deny",
  mode: "enforce",
  rule: "imds",
  policy: POLICY,
  process: { pid: 42, ppid: 1, uid: 1000, gid: 1000, comm: "curl", cgroup: { id: 7, path: "/user.slice" } },
  net: {
    family: "ipv4",
    protocol: "tcp",
    daddr: "169.254.169.254",
    dport: 80,
    saddr: "10.0.0.2",
    sport: 4242,
  },
  count: 1,
};

Deno.test("event.schema.json accepts kernel and agent events as the agent writes them", () => {
  assertMatchesSchema("event.schema.json", KERNEL);
  assertMatchesSchema("event.schema.json", { ...KERNEL, process: { pid: 42 }, summary: true, count: 9 });
  assertMatchesSchema("event.schema.json", {
    ...KERNEL,
    subject: "/usr/bin/curl",
    process: { ...KERNEL.process, exe: { dev: 2049, ino: 1234567 } },
  });
  assertMatchesSchema("event.schema.json", {
    ...KERNEL,
    type: "exec",
    net: undefined,
    file: { path: "/usr/bin/nc", dev: 2049, ino: 1234 },
    signal: { name: "SIGKILL", by: "kernel" },
  });
  assertMatchesSchema("event.schema.json", {
    ...KERNEL,
    type: "file.change",
    net: undefined,
    file: { path: "/etc/shadow", dev: 2049, ino: 1234 },
    op: "truncate",
  });
  const start = agentEvent({ host: "node-1", mode: "audit", policy: POLICY }, "agent.start", { pid: 1 });
  assertMatchesSchema("event.schema.json", JSON.parse(JSON.stringify(start)));
});

Deno.test("event.schema.json refuses what a consumer could not rely on", () => {
  const schema = z.fromJSONSchema(
    JSON.parse(Deno.readTextFileSync(new URL("../../docs/schema/event.schema.json", import.meta.url))),
  );
  const bad: Record<string, unknown>[] = [
    { ...KERNEL, ts: "2026-11-23T12:00:00Z" },
    { ...KERNEL, decision: "allow" },
    { ...KERNEL, count: 0 },
    { ...KERNEL, rule: undefined },
    { ...KERNEL, type: "net.teleport" },
    { ...KERNEL, policy: { ...POLICY, sha256: "xyz" } },
    { ...KERNEL, extra: 1 },
    { ...KERNEL, type: "file.change", op: "shred" },
  ];
  for (const event of bad) {
    assert.equal(schema.safeParse(JSON.parse(JSON.stringify(event))).success, false, JSON.stringify(event));
  }
});

Deno.test("event.schema.json accepts a process.ptrace event as formatEvent() writes it", () => {
  const raw = rawEvent({
    tsHi: 1,
    tsLo: 0,
    cgroupIdHi: 0,
    cgroupIdLo: 42,
    inoHi: 0,
    inoLo: 77,
    dev: 640,
    pid: 812,
    ppid: 1,
    uid: 65534,
    gid: 65534,
    ruleId: 1,
    count: 1,
    ifindex: 0,
    hook: HOOK.PTRACE,
    decision: 0,
    mode: 1,
    family: 0,
    protocol: 0,
    gen: 0,
    flags: 0,
    signal: 0,
    op: PTRACE_OP.VM_WRITE,
    dport: 0,
    sport: 0,
    comm: "gdb",
    daddrWords: addressWords(new Uint8Array(16)),
    saddrWords: addressWords(new Uint8Array(16)),
  });
  const event = formatEvent(raw, {
    host: "node-1",
    generations: [{ rules: RuleTable.of([{ id: "scope.ptrace", area: "exec", action: "deny" }]) }, undefined],
    bootToWallNs: 0n,
    cgroupPath: (id) => id === 77 ? "/system.slice/cron.service" : undefined,
  });
  assertMatchesSchema("event.schema.json", JSON.parse(JSON.stringify(event)));
});

Deno.test("event.schema.json accepts an exec the allowlist refused, with its reason and file name", () => {
  const name = new Uint8Array(32);
  name.set(new TextEncoder().encode("payload"));
  const raw = rawEvent({
    tsHi: 1,
    tsLo: 0,
    cgroupIdHi: 0,
    cgroupIdLo: 42,
    inoHi: 0,
    inoLo: 1835012,
    dev: 2049,
    pid: 5120,
    ppid: 1,
    uid: 1000,
    gid: 1000,
    ruleId: 1,
    count: 1,
    ifindex: 0,
    hook: HOOK.EXEC,
    decision: 1,
    mode: 0,
    family: 0,
    protocol: 0,
    gen: 0,
    flags: 0,
    signal: 0,
    op: EXEC_REASON.UNTRUSTED,
    dport: 0,
    sport: 0,
    comm: "bash",
    daddrWords: addressWords(name.slice(0, 16)),
    saddrWords: addressWords(name.slice(16)),
  });
  const event = formatEvent(raw, {
    host: "node-1",
    generations: [{
      rules: RuleTable.of([{ id: "default", area: "ingress", action: "deny" }, {
        id: "exec.default",
        area: "exec",
        action: "deny",
      }]),
    }, undefined],
    bootToWallNs: 0n,
  });
  assert.deepEqual(event.file, { name: "payload", dev: 2049, ino: 1835012 });
  assert.equal(event.reason, "untrusted");
  assertMatchesSchema("event.schema.json", JSON.parse(JSON.stringify(event)));
});
