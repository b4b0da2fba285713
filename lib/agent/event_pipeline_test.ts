import assert from "node:assert/strict";
import { EventPipeline } from "./event_pipeline.ts";

Deno.test("EventPipeline.agent() stamps the envelope as it is now, and writes the log before the caller", () => {
  const order: string[] = [];
  let mode: "enforce" | "audit" = "audit";
  const events = new EventPipeline({
    log: { appendLine: (line: string) => void order.push(`log ${JSON.parse(line).type}`) },
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
