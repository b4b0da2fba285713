import assert from "node:assert/strict";
import type { RawEvent } from "../../ffi/mod.ts";
import { signalDeniedTask } from "../../lib/agent/enforce_signal.ts";
import type { DataPlane } from "../../lib/kernel/dataplane.ts";
import { rootTest } from "../support/privileged.ts";
import { drain, ruleSet, withPlane } from "../support/plane.ts";
import { ipv4Rule } from "../support/slice.ts";

// Kill on deny where the kernel cannot signal (cgroup socket hooks have no bpf_send_signal): the agent
// signals the task as it reads the deny event.
const RULES = [
  { id: "default", area: "ingress" as const, action: "deny" as const },
  { id: "blocked", area: "egress" as const, action: "deny" as const },
];

/** A shell in `cgroupPath` that connects to a denied address (refused) and then waits as `sleep`, same pid. */
function deniedTask(cgroupPath: string, port: number) {
  const script =
    `echo $$ > '${cgroupPath}/cgroup.procs'; { : 3<>/dev/tcp/127.0.0.2/${port}; } 2>/dev/null; ` +
    "exec sleep 30";
  return new Deno.Command("bash", { args: ["-c", script], stdout: "null", stderr: "null" }).spawn();
}

async function denyEventOf(plane: DataPlane, pid: number): Promise<RawEvent> {
  for (let i = 0; i < 100; i++) {
    const event = drain(plane).find((candidate) => candidate.pid === pid);
    if (event) return event;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`No deny event from pid ${pid}`);
}

rootTest(
  "[root] kill on deny: the agent sends term or kill for a connect denial, never to an exempt task",
  async () => {
    await withPlane({ areas: ["egress"] }, async ({ plane, cgroup, server }) => {
      await plane.apply(ruleSet({ mode: "enforce", rules: RULES, egress: [ipv4Rule("127.0.0.2/32", 1)] }));
      for (const [configured, name] of [["term", "SIGTERM"], ["kill", "SIGKILL"]] as const) {
        const task = deniedTask(cgroup.path, server.port);
        const event = await denyEventOf(plane, task.pid);
        assert.equal(event.signal, 0, "the connect hook cannot signal: the agent must");
        assert.deepEqual(signalDeniedTask(event, configured, []), {
          send: name,
          signal: name === "SIGTERM" ? 15 : 9,
        });
        assert.equal((await task.status).signal, name);
      }

      const exempt = deniedTask(cgroup.path, server.port);
      try {
        const event = await denyEventOf(plane, exempt.pid);
        assert.deepEqual(signalDeniedTask(event, "kill", [cgroup.relativePath]), {
          skip: "the task is in an exempt cgroup",
        });
        assert.deepEqual(signalDeniedTask(event, "none", []), { skip: "no enforce signal configured" });
      } finally {
        exempt.kill("SIGKILL");
        await exempt.status;
      }
      const gone = deniedTask(cgroup.path, server.port);
      const event = await denyEventOf(plane, gone.pid);
      gone.kill("SIGKILL");
      await gone.status;
      assert.deepEqual(signalDeniedTask(event, "kill", []), { skip: "the task has exited" });
    });
  },
);
