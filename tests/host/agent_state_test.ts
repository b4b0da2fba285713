// Reading /proc/PID needs --allow-all in Deno: these run with the host suite, without root.
import assert from "node:assert/strict";
import { partialAreas, processGone, readAgentState } from "../../lib/state/agent_state.ts";
import { liveAgent, takeAgentLock } from "../../lib/state/agent_lock.ts";
import { RefusedError } from "../../lib/errors.ts";

Deno.test("processGone() knows this process, and a pid that is not running", () => {
  assert.equal(processGone(Deno.pid, Date.now()), undefined);
  assert.match(processGone(2 ** 22 + 12345, Date.now()) ?? "", /is not running/);
});

Deno.test("processGone() takes a process started after the record for a reused pid", () => {
  assert.match(processGone(Deno.pid, Date.now() - 3_600_000) ?? "", /is another process now/);
});

Deno.test("readAgentState() says absent, running, died, unreadable, and reads partial areas in both forms", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "aegisbpf-agent-" });
  let lock: Disposable | undefined = await takeAgentLock(dir);
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
    // The record's pid is alive, but no agent holds the lock: the agent that wrote it is gone.
    lock[Symbol.dispose]();
    lock = undefined;
    const died = readAgentState(dir);
    assert.equal(died.state, "died");
    if (died.state === "died") assert.match(died.why, /no process holds the agent lock/);
    Deno.writeTextFileSync(`${dir}/agent.json`, "{");
    const broken = readAgentState(dir);
    assert.equal(broken.state, "unreadable");
  } finally {
    lock?.[Symbol.dispose]();
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("takeAgentLock() refuses a second agent naming the first, and liveAgent() names the holder", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "aegisbpf-agent-" });
  try {
    assert.equal(liveAgent(dir), undefined);
    {
      using _first = await takeAgentLock(dir);
      assert.equal(liveAgent(dir)?.pid, Deno.pid);
      assert.equal((Deno.statSync(`${dir}/agent.lock`).mode ?? 0) & 0o777, 0o600);
      await assert.rejects(
        () => takeAgentLock(dir),
        (error: unknown) =>
          error instanceof RefusedError &&
          new RegExp(`An agent is already running \\(pid ${Deno.pid},`).test(error.message),
      );
    }
    // Released: the next agent takes it.
    using _next = await takeAgentLock(dir);
    assert.equal(liveAgent(dir)?.pid, Deno.pid);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
