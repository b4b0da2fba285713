/**
 * Time windows on the host: an egress deny rule whose window opens and closes within the test. The test
 * clock (AEGISBPF_TEST_CLOCK_OFFSET) makes every process read 12:00:00 UTC when the test starts, and the
 * test-only seconds form (AEGISBPF_TEST_WINDOW_SECONDS=1) makes the window seconds long. With the agent
 * running, it flips the rule on at the window's start and off at its end; with no agent, nothing flips,
 * health says a boundary was missed, and the next agent start catches up. Own bpffs, state and cgroup.
 */
import assert from "node:assert/strict";
import { aegisbpf } from "../cli/cli.ts";
import type { Event } from "../support/agent_run.ts";
import {
  connect,
  type Host,
  policy,
  spawn,
  TCP_PORT,
  withHost,
  within,
  writePolicy,
} from "../support/agent_host.ts";
import { rootTest } from "../support/privileged.ts";
import { assertMatchesSchema } from "../support/schema.ts";

/** The environment that sets every process's window clock to 12:00:00 UTC now, and allows seconds. */
function clockEnv(host: Host): Record<string, string> {
  const now = new Date();
  const noon = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate(), 12);
  return {
    ...host.env,
    AEGISBPF_TEST_CLOCK_OFFSET: String((noon - now.getTime()) / 1000),
    AEGISBPF_TEST_WINDOW_SECONDS: "1",
  };
}

/** 12:00:SS as the window's from or to. */
const noonPlus = (seconds: number) =>
  `12:${String(Math.floor(seconds / 60)).padStart(2, "0")}:${String(seconds % 60).padStart(2, "0")}`;

function windowPolicy(host: Host, from: number, to: number): string {
  return writePolicy(
    host,
    "window.yaml",
    policy(
      host,
      `  network:
    egress:
      deny:
        - id: in-window
          cidr: 127.0.0.2/32
          ports: [${TCP_PORT}]
          protocol: tcp
          when: { from: "${noonPlus(from)}", to: "${noonPlus(to)}", tz: UTC }
`,
    ),
  );
}

async function health(env: Record<string, string>) {
  const result = await aegisbpf(["health", "--json"], { env });
  const report = JSON.parse(result.stdout);
  assertMatchesSchema("health.schema.json", report);
  return report;
}

rootTest(
  "[root] time window, agent running: the rule flips on at the window's start and off at its end",
  async () => {
    await withHost(async (host) => {
      const env = clockEnv(host);
      const file = windowPolicy(host, 6, 14);
      await using agent = spawn(host, ["--policy", file], env);
      await agent.ready();
      assert.equal(await connect(host), "allowed", "before the window");
      const before = await health(env);
      assert.equal(before.windows.length, 1);
      assert.equal(before.windows[0].rule, "in-window");
      assert.equal(before.windows[0].open, false);
      await within(15_000, "EPERM", () => connect(host));
      const flip = (event: Event) => event.type === "policy.applied" && event.reason === "window";
      await agent.waitFor(flip);
      assert.equal((await health(env)).windows[0].open, true);
      await within(15_000, "allowed", () => connect(host));
      assert.equal((await health(env)).windows[0].open, false);
      agent.kill("SIGTERM");
      assert.equal((await agent.exit()).code, 0);
    });
  },
);

rootTest(
  "[root] time window, no agent: apply compiles for now, nothing flips, health warns, the agent catches up at start",
  async () => {
    await withHost(async (host) => {
      const env = clockEnv(host);
      const file = windowPolicy(host, 5, 40);
      const applied = await aegisbpf(["policy", "apply", file], { env });
      assert.equal(applied.code, 0, applied.stderr);
      assert.equal(await connect(host), "allowed", "applied before the window: the rule is left out");
      // Past the start, with no agent: nothing flips.
      await new Promise((resolve) => setTimeout(resolve, 7000));
      assert.equal(await connect(host), "allowed");
      const missed = await health(env);
      assert.equal(missed.windows[0].open, true);
      assert.ok(
        missed.warnings.some((w: string) => /a time window opened or closed at .* no agent runs/.test(w)),
        missed.warnings.join("\n"),
      );
      // Applying again inside the window compiles for now: in force at once.
      const again = await aegisbpf(["policy", "apply", file], { env });
      assert.equal(again.code, 0, again.stderr);
      assert.doesNotMatch(again.stdout, /unchanged/);
      assert.equal(await connect(host), "EPERM");
      // An agent started inside the window keeps the rule.
      {
        await using agent = spawn(host, ["--policy", file], env);
        await agent.ready();
        assert.equal(await connect(host), "EPERM", "the agent's start keeps the open window's rule");
        agent.kill("SIGTERM");
        assert.equal((await agent.exit()).code, 0);
      }
    });
  },
);

rootTest("[root] time window, no agent across the end: the next agent start catches up", async () => {
  await withHost(async (host) => {
    const env = clockEnv(host);
    const file = windowPolicy(host, 0, 6);
    const applied = await aegisbpf(["policy", "apply", file], { env });
    assert.equal(applied.code, 0, applied.stderr);
    assert.equal(await connect(host), "EPERM", "applied inside the window");
    await new Promise((resolve) => setTimeout(resolve, 7000));
    assert.equal(await connect(host), "EPERM", "no agent: the kernel keeps the rule past the end");
    await using agent = spawn(host, ["--policy", file], env);
    await agent.ready();
    assert.equal(await connect(host), "allowed", "caught up at start");
    agent.kill("SIGTERM");
    assert.equal((await agent.exit()).code, 0);
  });
});
