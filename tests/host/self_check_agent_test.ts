/**
 * Self-checking policies with a running agent: a policy posted to the local API, or reloaded by SIGHUP,
 * whose mustWork probe fails under it is rolled back at once (the old rules deny again, history and the
 * event log say why); the agent holds a deadman deadline while the probes run and releases it after; and a
 * `policy apply` killed (kill -9) between the flip and the end of its probes is finished by the agent, which
 * runs the probes of the policy in force and rolls back when they fail. Policies are scoped to the test
 * cgroup (tests/support/agent_host.ts): the probes run in cgroups of their own made under it.
 */
import assert from "node:assert/strict";
import { eventLogPath, recentLines } from "../../lib/agent/event_log.ts";
import { readModeWords } from "../../lib/kernel/mode_words.ts";
import { listHistory } from "../../lib/state/history.ts";
import { readSelfCheckMarker } from "../../lib/state/self_check_marker.ts";
import { connect, type Host, NET, policy, spawn, withHost, writePolicy } from "../support/agent_host.ts";
import type { AgentRun, Event } from "../support/agent_run.ts";
import { curl, exists } from "../support/api_client.ts";
import { spawnAegisbpf } from "../cli/cli.ts";
import { rootTest } from "../support/privileged.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const outcomes = (host: Host) => listHistory(host.stateDir).map((entry) => `${entry.seq}:${entry.outcome}`);

/** The events of the agent's event log (the agent's own, and those commands wrote there). */
function logged(host: Host): Record<string, unknown>[] {
  return recentLines(eventLogPath(host.stateDir), Number.MAX_SAFE_INTEGER).flatMap((line) =>
    line.ok ? [line.event as Record<string, unknown>] : []
  );
}

/** A policy that denies the test's listener in scope, with a mustWork probe connecting to it. */
function breaksItsProbe(host: Host, version: number, port: number): string {
  return policy(
    host,
    `  network:\n    egress:\n      deny: [{ id: listener, cidr: 127.0.0.1/32, port: ${port}, protocol: tcp }]\n` +
      `  checks:\n    implicit: false\n    mustWork:\n      - connect: 127.0.0.1:${port}\n`,
    { version },
  );
}

async function withListener(fn: (port: number) => Promise<void>): Promise<void> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepting = (async () => {
    for await (const conn of listener) conn.close();
  })().catch(() => {});
  try {
    await fn((listener.addr as Deno.NetAddr).port);
  } finally {
    listener.close();
    await accepting;
  }
}

type Started = { host: Host; port: number; file: string; agent: AgentRun };

/**
 * In a test host with a listener on 127.0.0.1: the agent started on p.yaml (NET's rules), with `args` for
 * that host besides, and its first policy applied.
 */
async function withAgent(
  fn: (started: Started) => Promise<void>,
  args: (host: Host) => string[] = () => [],
): Promise<void> {
  await withHost(async (host) => {
    await withListener(async (port) => {
      const file = writePolicy(host, "p.yaml", policy(host, NET));
      await using agent = spawn(host, ["--policy", file, ...args(host)]);
      await agent.ready();
      await fn({ host, port, file, agent });
    });
  });
}

/**
 * The agent's self-check of history entry `history` failed after event `from` and put entry `restored`
 * back as the next entry: the old rules deny again and no marker stays. The policy.check_failed event.
 */
async function assertRolledBack(
  { host, agent }: Started,
  from: number,
  history: number,
  restored: number,
): Promise<Event> {
  const failed = await agent.waitFor((event) => event.type === "policy.check_failed", 30_000, from);
  assert.equal(failed.history, history);
  assert.equal(failed.restored, restored);
  await agent.waitFor(
    (event) => event.type === "policy.rolled_back" && event.history === history + 1,
    15_000,
    from,
  );
  assert.equal(await connect(host), "EPERM", "the old rules deny again");
  assert.equal(readSelfCheckMarker(host.stateDir), undefined);
  return failed;
}

/** Writes `text` to the agent's policy file and sends SIGHUP: the index of the agent's first event after. */
function reload({ file, agent }: Started, text: string): number {
  Deno.writeTextFileSync(file, text);
  const from = agent.events.length;
  agent.kill("SIGHUP");
  return from;
}

/** The reload of `text` is applied. */
async function reloaded(started: Started, text: string): Promise<void> {
  const from = reload(started, text);
  await started.agent.waitFor(
    (event) => event.type === "policy.applied" && event.reason === "reload",
    30_000,
    from,
  );
}

const apiSocket = (host: Host) => `${host.dir}/api.sock`;

rootTest(
  "[root] a failing self-check through the API and through SIGHUP rolls back; a passing one stays",
  async () => {
    await withAgent(async (started) => {
      const { host, port, agent } = started;
      const socket = apiSocket(host);
      for (let i = 0; i < 200 && !(await exists(socket)); i++) await sleep(50);
      assert.equal(await connect(host), "EPERM", "the first policy denies");

      // The API: 409 naming the probe; the entry before is back.
      const posted = await curl(socket, [
        "-X",
        "POST",
        "--data-binary",
        breaksItsProbe(host, 2, port),
        "http://aegisbpf/v1/policy",
      ]);
      assert.equal(posted.status, 409, posted.body);
      assert.match(
        JSON.parse(posted.body).detail,
        new RegExp(
          `self-check failed: mustWork connect 127\\.0\\.0\\.1:${port}/tcp: expected it to work, got denied`,
        ),
      );
      assert.deepEqual(outcomes(host), ["1:applied", "2:check-failed", "3:rolled-back"]);
      await agent.waitFor((event) => event.type === "policy.rolled_back" && event.history === 3);
      assert.equal(await connect(host), "EPERM", "the old rules deny again");
      assert.ok(logged(host).some((event) => event.type === "policy.check_failed" && event.history === 2));

      // SIGHUP: the agent applies the file, runs its probes, and puts entry 3 back.
      const from = reload(started, breaksItsProbe(host, 4, port));
      const failed = await assertRolledBack(started, from, 4, 3);
      assert.equal(failed.got, "denied");
      await agent.waitFor((event) => event.type === "policy.reload_failed", 30_000, from);
      assert.deepEqual(outcomes(host).slice(3), ["4:check-failed", "5:rolled-back"]);
      assert.match(listHistory(host.stateDir)[3]!.note ?? "", /^self-check failed: mustWork connect/);
      assert.equal(
        readModeWords(host.bpffs)!.deadmanDeadlineNs,
        undefined,
        "the deadline held for the probes is gone",
      );

      // A passing one stays: the listener allowed, the first policy's deny kept.
      const passing = policy(
        host,
        NET + `  checks:\n    implicit: false\n    mustWork:\n      - connect: 127.0.0.1:${port}\n`,
        { version: 6 },
      );
      await reloaded(started, passing);
      assert.deepEqual(outcomes(host).slice(5), ["6:applied"]);
      assert.equal(await connect(host), "EPERM");
    }, (host) => ["--api", `unix:${apiSocket(host)}`]);
  },
);

rootTest(
  "[root] kill -9 of policy apply between the flip and its probes: the agent finishes the check",
  async () => {
    await withAgent(async (started) => {
      const { host, port, agent } = started;
      const hang = `${host.dir}/hang`;
      Deno.writeTextFileSync(hang, "");
      // Its probe hangs while the hang file exists; once it is gone the probe fails (the listener is denied).
      const held = writePolicy(
        host,
        "held.yaml",
        policy(
          host,
          `  network:\n    egress:\n      deny: [{ id: listener, cidr: 127.0.0.1/32, port: ${port}, protocol: tcp }]\n` +
            `  checks:\n    implicit: false\n    mustWork:\n` +
            `      - { exec: /bin/sh, args: [-c, "while [ -e ${hang} ]; do sleep 0.1; done; exec 3<>/dev/tcp/127.0.0.1/${port}"] }\n`,
          { version: 2 },
        ),
      );
      const child = spawnAegisbpf(["policy", "apply", held], { env: host.env, cwd: host.dir });
      for (let i = 0; i < 1200 && !outcomes(host).includes("2:applied"); i++) await sleep(50);
      assert.ok(outcomes(host).includes("2:applied"), outcomes(host).join(" "));
      // While the command runs its probe, the agent holds a deadman deadline (it has no --deadman).
      for (let i = 0; i < 200 && readModeWords(host.bpffs)!.deadmanDeadlineNs === undefined; i++) {
        await sleep(50);
      }
      assert.ok(readModeWords(host.bpffs)!.deadmanDeadlineNs !== undefined, "a deadline while it checks");
      const from = agent.events.length;
      child.kill("SIGKILL");
      await child.output();
      Deno.removeSync(hang);
      await assertRolledBack(started, from, 2, 1);
      assert.deepEqual(outcomes(host), ["1:applied", "2:check-failed", "3:rolled-back"]);
      assert.match(
        listHistory(host.stateDir)[1]!.note ?? "",
        /finished after policy apply, pid \d+, was killed/,
      );
    });
  },
);

rootTest(
  "[root] a rule refresh (a program a rule names replaced on disk) runs the probes; a failure rolls back",
  async () => {
    await withAgent(async (started) => {
      const { host, port, agent } = started;
      // A rule denies the listener to one program, which is not the probe's shell: the probe passes.
      const prog = `${host.dir}/prog`;
      Deno.copyFileSync("/bin/true", prog);
      Deno.chmodSync(prog, 0o755);
      await reloaded(
        started,
        policy(
          host,
          `  network:\n    egress:\n      deny:\n` +
            `        - { id: by-prog, cidr: 127.0.0.1/32, port: ${port}, protocol: tcp, exe: ${prog} }\n` +
            `  checks:\n    implicit: false\n    mustWork:\n      - connect: 127.0.0.1:${port}\n`,
          { version: 2 },
        ),
      );
      assert.deepEqual(outcomes(host), ["1:applied", "2:applied"]);

      // The path now names the probe's own shell (an upgrade renames a new binary over it): the watcher
      // resolves the rule again, the refresh runs the probes, the probe is denied, entry 1 is put back.
      const bash = Deno.realPathSync(
        new TextDecoder().decode(
          new Deno.Command("sh", { args: ["-c", "command -v bash"] }).outputSync().stdout,
        )
          .trim(),
      );
      const from = agent.events.length;
      Deno.linkSync(bash, `${prog}.new`);
      Deno.renameSync(`${prog}.new`, prog);
      const failed = await assertRolledBack(started, from, 2, 1);
      assert.equal(failed.got, "denied");
      assert.deepEqual(outcomes(host), ["1:applied", "2:check-failed", "3:rolled-back"]);
      assert.equal(readModeWords(host.bpffs)!.deadmanDeadlineNs, undefined, "the deadline is released");
    });
  },
);
