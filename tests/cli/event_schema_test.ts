/** docs/schema/event.schema.json against events as the agent formats them, and against broken ones. */
import assert from "node:assert/strict";
import { agentEvent } from "../../lib/agent/agent_events.ts";
import { z } from "zod";
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
