// Reading /proc/PID needs --allow-all in Deno: these run with the host suite, without root.
import assert from "node:assert/strict";
import { partialAreas, processGone, readAgentState } from "../../lib/agent/agent_state.ts";

Deno.test("processGone() knows this process, and a pid that is not running", () => {
  assert.equal(processGone(Deno.pid, Date.now()), undefined);
  assert.match(processGone(2 ** 22 + 12345, Date.now()) ?? "", /is not running/);
});

Deno.test("processGone() takes a process started after the record for a reused pid", () => {
  assert.match(processGone(Deno.pid, Date.now() - 3_600_000) ?? "", /is another process now/);
});

Deno.test("readAgentState() says absent, running, unreadable, and reads partial areas in both forms", () => {
  const dir = Deno.makeTempDirSync({ prefix: "aegisbpf-agent-" });
  try {
    assert.deepEqual(readAgentState(dir), { state: "absent" });
    const record = {
      pid: Deno.pid,
      startedAt: new Date().toISOString(),
      partial: ["exec", { area: "file", reason: "EPERM" }],
      extra: "kept",
    };
    Deno.writeTextFileSync(`${dir}/agent.json`, JSON.stringify(record));
    const state = readAgentState(dir);
    assert.equal(state.state, "running");
    if (state.state === "running") {
      assert.deepEqual(partialAreas(state.record), [{ area: "exec" }, { area: "file", reason: "EPERM" }]);
    }
    Deno.writeTextFileSync(`${dir}/agent.json`, "{");
    const broken = readAgentState(dir);
    assert.equal(broken.state, "unreadable");
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
