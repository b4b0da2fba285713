import assert from "node:assert/strict";
import { FAMILY, HOOK, type RawEvent, rawEvent } from "../../ffi/mod.ts";
import type { EventContext } from "../kernel/events.ts";
import { RuleTable } from "../policy/rule_table.ts";
import { EventPipeline } from "./event_pipeline.ts";

Deno.test("EventPipeline.agent() stamps the envelope as it is now, and writes the log before the caller", () => {
  const order: string[] = [];
  let mode: "enforce" | "audit" = "audit";
  const events = new EventPipeline({
    log: {
      appendLine: (line: string) => void order.push(`log ${JSON.parse(line).type}`),
      appendBytes: () => assert.fail("an agent event as bytes"),
    },
    emit: (event) => order.push(`emit ${event.type} ${(event as { mode?: string }).mode}`),
    context: {} as never,
    enforceSignal: "none",
    envelope: () => ({ host: "h", mode, policy: undefined }),
    warn: () => {},
  });
  events.agent("agent.start", { pid: 1 });
  mode = "enforce";
  events.agent("agent.stop", { signal: "SIGTERM" });
  assert.deepEqual(order, [
    "log agent.start",
    "emit agent.start audit",
    "log agent.stop",
    "emit agent.stop enforce",
  ]);
});

const CONTEXT: EventContext = {
  host: "h",
  generations: [{ rules: RuleTable.of([{ id: 'r\u202e"x', area: "egress", action: "deny" }]) }, undefined],
  bootToWallNs: 0n,
  cgroupPath: () => "/a\x1bb",
};

function raw(hook: number, family: number): RawEvent {
  return rawEvent({
    tsHi: 1,
    tsLo: 2,
    cgroupIdHi: 0,
    cgroupIdLo: 9,
    inoHi: 0,
    inoLo: 0,
    dev: 0,
    pid: 4000,
    ppid: 1,
    uid: 0,
    gid: 0,
    ruleId: 0,
    count: 1,
    ifindex: 0,
    dport: 22,
    sport: 0,
    hook,
    decision: 1,
    mode: 0,
    family,
    protocol: 6,
    gen: 0,
    flags: 0,
    signal: 0,
    op: 0,
    daddrWords: [0x7f000001, 0, 0, 0],
    saddrWords: [0, 0, 0, 0],
    comm: "c\u009b\xff",
  });
}

/** What a pipeline writes for `events`: to the log, and to the caller (`emit` or `emitJson`, marked). */
function written(events: RawEvent[], bytes: boolean): string[] {
  const out: string[] = [];
  const decoder = new TextDecoder();
  const pipeline = new EventPipeline({
    log: {
      appendLine: (line) => out.push(`log ${line}\n`),
      appendBytes: (line) => out.push(`log ${decoder.decode(line)}`),
    },
    emit: (_event, line) => out.push(`emit ${line}\n`),
    ...(bytes ? { emitJson: (line: Uint8Array) => out.push(`emit ${decoder.decode(line)}`) } : {}),
    context: CONTEXT,
    enforceSignal: "none",
    envelope: () => ({ host: "h", mode: "audit", policy: undefined }),
    warn: () => {},
  });
  for (const event of events) pipeline.kernel(event, () => []);
  return out;
}

Deno.test("EventPipeline.kernel() with emitJson writes the same lines, to the log and the caller, as without", () => {
  const events = [raw(HOOK.CONNECT, FAMILY.IPV4), raw(HOOK.SOCKET, FAMILY.PACKET), raw(HOOK.FILE_OPEN, 0)];
  const lines = written(events, true);
  assert.deepEqual(lines, written(events, false));
  assert.equal(lines.length, 6);
});
