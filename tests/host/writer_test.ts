/**
 * One writer, one agent, modes that hold (SPEC section 5), against the real kernel: the `run --audit` floor
 * holds whatever the CLI or the API applies; a restart or SIGHUP never undoes a newer apply; applying the
 * policy (or bundle) in force again changes nothing; two agents started at once leave exactly one running.
 * Egress rules on 127.0.0.2 scoped to the test cgroup show EPERM (BPF-LSM cannot load on this host). The race
 * of every writer against `policy apply` is in writer_race_test.ts.
 */
import assert from "node:assert/strict";
import { readModeWords } from "../../lib/kernel/mode_words.ts";
import { listHistory } from "../../lib/state/history.ts";
import { aegisbpf } from "../cli/cli.ts";
import type { AgentRun, Event } from "../support/agent_run.ts";
import { connect, type Host, NET, policy, spawn, withHost, writePolicy } from "../support/agent_host.ts";
import { curl, waitForSocket } from "../support/api_client.ts";
import { rootTest } from "../support/privileged.ts";

const after = (agent: AgentRun) => agent.events.length;

function agentState(host: Host) {
  return JSON.parse(Deno.readTextFileSync(`${host.stateDir}/agent.json`));
}

async function cli(host: Host, args: string[], want = 0): Promise<string> {
  const result = await aegisbpf(args, { env: host.env });
  assert.equal(result.code, want, `aegisbpf ${args.join(" ")}: ${result.stdout}${result.stderr}`);
  return result.stdout;
}

/** `status --json` or `health --json`, whatever its exit code. */
async function report(host: Host, command: "status" | "health") {
  const result = await aegisbpf([command, "--json"], { env: host.env });
  return JSON.parse(result.stdout);
}

/** Waits for the agent to take over the policy of history entry `seq` applied by another command. */
function pickedUp(agent: AgentRun, seq: number, from: number): Promise<Event> {
  return agent.waitFor((event) => event.type === "policy.applied" && event.history === seq, 10_000, from);
}

async function stop(agent: AgentRun): Promise<void> {
  agent.kill("SIGTERM");
  const { code, stderr } = await agent.exit();
  assert.equal(code, 0, stderr);
}

rootTest(
  "[root] run --audit is a floor: enforce policies applied by the CLI and the API while it runs deny nothing; the word outlives it until a run without --audit",
  async () => {
    await withHost(async (host) => {
      const socket = `${host.dir}/api.sock`;
      const first = writePolicy(host, "v1.yaml", policy(host, NET, { version: 1 }));
      const agent = spawn(host, ["--audit", "--policy", first, "--api", `unix:${socket}`]);
      await using _ = agent;
      await agent.ready();
      assert.ok(await waitForSocket(socket), "the API socket");
      assert.equal(await connect(host), "allowed", "the agent's own enforce policy audits");

      let from = after(agent);
      const second = writePolicy(host, "v2.yaml", policy(host, NET, { version: 2 }));
      assert.match(await cli(host, ["policy", "apply", second]), /^applied /);
      await pickedUp(agent, 2, from);
      assert.equal(await connect(host), "allowed", "an enforce policy applied by the CLI under the floor");

      from = after(agent);
      const posted = await curl(socket, [
        // An apply in a helper process, on a loaded machine: more than curl's default 5 s.
        "--max-time",
        "60",
        "-X",
        "POST",
        "--data-binary",
        policy(host, NET, { version: 3 }),
        "http://aegisbpf/v1/policy",
      ]);
      assert.equal(posted.status, 200, posted.body);
      assert.equal(JSON.parse(posted.body).outcome, "applied");
      await pickedUp(agent, 3, from);
      assert.equal(await connect(host), "allowed", "an enforce policy applied by the API under the floor");

      const floor = `the agent forces audit (run --audit, pid ${agent.pid}), whatever the policy's mode says`;
      for (const command of ["status", "health"] as const) {
        const json = await report(host, command);
        assert.equal(json.policy.version, 3, command);
        assert.deepEqual(
          json.mode,
          {
            effective: "audit",
            policy: "enforce",
            requested: "audit",
            belowRequested: false,
            reasons: [floor],
          },
          command,
        );
      }
      const state = agentState(host);
      assert.deepEqual([state.mode, state.policyMode, state.floor], ["audit", "enforce", "audit"]);
      const history = listHistory(host.stateDir);
      assert.deepEqual(history.map((entry) => entry.version), [1, 2, 3]);

      await stop(agent);
      assert.equal(readModeWords(host.bpffs)?.forceAudit, true, "the floor's word stays after SIGTERM");
      assert.equal(await connect(host), "allowed");
      const left = await report(host, "health");
      assert.equal(left.mode.effective, "audit");
      assert.match(left.mode.reasons.join("\n"), /left by a stopped run --audit agent/);

      await using enforcing = spawn(host, []);
      const ready = await enforcing.ready();
      assert.equal(ready.history, "unchanged", "the policy in force (version 3) is kept");
      assert.equal(ready.policy.version, 3);
      assert.equal(readModeWords(host.bpffs)?.forceAudit, false);
      assert.equal(await connect(host), "EPERM", "a run without --audit enforces");
      assert.equal((await report(host, "status")).mode.effective, "enforce");
      await stop(enforcing);
    });
  },
);

/** Sets a file's modification time `secondsAgo` in the past (0: now), as `touch -d` would. */
function touch(path: string, secondsAgo = 0): void {
  const when = new Date(Date.now() - secondsAgo * 1000);
  Deno.utimeSync(path, when, when);
}

rootTest(
  "[root] restart and SIGHUP never undo a newer apply: policy.yaml older than the policy in force is kept out, touched it wins, run --policy replaces with a warning",
  async () => {
    await withHost(async (host) => {
      const configured = `${host.configDir}/policy.yaml`;
      Deno.writeTextFileSync(configured, policy(host, NET, { version: 1 }));
      touch(configured, 60);
      const newer = writePolicy(host, "v2.yaml", policy(host, NET, { version: 2 }));
      {
        await using agent = spawn(host, []);
        const ready = await agent.ready();
        assert.equal(ready.history, 1);
        assert.equal(ready.policy.version, 1);
        const from = after(agent);
        await cli(host, ["policy", "apply", newer]);
        await pickedUp(agent, 2, from);
        await stop(agent);
      }

      // (a) A restart keeps version 2: policy.yaml was last changed before it was applied.
      {
        await using agent = spawn(host, []);
        const ready = await agent.ready();
        assert.equal(ready.history, "unchanged");
        assert.equal(ready.policy.version, 2);
        assert.equal(ready.choice?.kind, "kept", JSON.stringify(ready));
        assert.equal(ready.choice.inForce.seq, 2);
        assert.equal(agentState(host).policy.version, 2);
        assert.equal(listHistory(host.stateDir).length, 2, "no new history entry");
        await stop(agent);
      }

      // (b) Touched, policy.yaml is the newest intent: version 1 is applied again.
      touch(configured);
      {
        await using agent = spawn(host, []);
        const ready = await agent.ready();
        assert.equal(ready.history, 3);
        assert.equal(ready.policy.version, 1);
        assert.equal(ready.choice, undefined);
        await stop(agent);
      }

      // (c) --policy on the command line wins although older than the entry in force, and says so.
      const old = writePolicy(host, "old.yaml", policy(host, NET, { version: 4 }));
      touch(old, 3600);
      {
        await using agent = spawn(host, ["--policy", old]);
        const ready = await agent.ready();
        assert.equal(ready.history, 4);
        assert.equal(ready.policy.version, 4);
        assert.equal(ready.choice?.kind, "replaced", JSON.stringify(ready));
        assert.equal(ready.choice.inForce.seq, 3);
        assert.match(agent.stderr, /old\.yaml \(changed [^)]+\) replaces history entry 3 /);
        await stop(agent);
      }

      // (d) A SIGHUP with policy.yaml unchanged (older than a CLI apply) keeps the CLI's policy.
      {
        await using agent = spawn(host, []);
        const ready = await agent.ready();
        assert.equal(ready.policy.version, 4, "policy.yaml (touched before entry 4) is kept out");
        let from = after(agent);
        const bindOnly = NET.replace(/ {4}egress:\n(?: {6}.*\n)+/, "");
        const fifth = writePolicy(host, "v5.yaml", policy(host, bindOnly, { version: 5 }));
        await cli(host, ["policy", "apply", fifth]);
        await pickedUp(agent, 5, from);
        assert.equal(await connect(host), "allowed", "version 5 denies no egress");
        from = after(agent);
        agent.kill("SIGHUP");
        const reloaded = await agent.waitFor(
          (event) => event.type === "policy.applied" && event.reason === "reload",
          15_000,
          from,
        );
        assert.equal(reloaded.history, "unchanged");
        assert.equal(reloaded.policy.version, 5);
        assert.equal(reloaded.choice?.kind, "kept");
        assert.equal(await connect(host), "allowed", "policy.yaml (version 1, denying egress) stayed out");
        assert.equal(agentState(host).policy.version, 5);
        assert.deepEqual(listHistory(host.stateDir).map((entry) => entry.version), [1, 2, 1, 4, 5]);
        await stop(agent);
      }
    });
  },
);

rootTest(
  "[root] applying what is in force changes nothing: a policy twice, its dry run, a signed bundle twice and through the API; a bundle comes back after a detach; an older one stays refused",
  async () => {
    await withHost(async (host) => {
      const file = writePolicy(host, "p.yaml", policy(host, NET, { mode: "audit", version: 7 }));
      const count = () => listHistory(host.stateDir).length;
      await cli(host, ["policy", "apply", file]);
      const again = await cli(host, ["policy", "apply", file]);
      assert.match(
        again,
        /^unchanged: policy agent-test version 7 \(sha256 [0-9a-f]{64}\) is already in force as history entry 1, mode audit$/m,
      );
      const json = JSON.parse(await cli(host, ["policy", "apply", file, "--json"]));
      assert.deepEqual([json.outcome, json.seq], ["unchanged", 1]);
      assert.match(await cli(host, ["policy", "apply", file, "--dry-run"]), /^would change nothing: /);
      assert.equal(count(), 1);

      // The API's POST of the policy in force.
      const socket = `${host.dir}/api.sock`;
      {
        await using agent = spawn(host, ["--api", `unix:${socket}`]);
        const ready = await agent.ready();
        assert.equal(ready.history, "unchanged");
        assert.ok(await waitForSocket(socket));
        const text = Deno.readTextFileSync(file);
        const posted = await curl(socket, [
          "--max-time",
          "60",
          "-X",
          "POST",
          "--data-binary",
          text,
          "http://aegisbpf/v1/policy",
        ]);
        assert.equal(posted.status, 200, posted.body);
        assert.deepEqual([JSON.parse(posted.body).outcome, JSON.parse(posted.body).seq], ["unchanged", 1]);
        assert.equal(count(), 1);
        await stop(agent);
      }

      // Signed bundles, as docs/runbooks/fleet.md makes them.
      const key = `${host.dir}/release`;
      await cli(host, ["keys", "gen", "--out", key]);
      await cli(host, ["keys", "add", `${key}.pub`]);
      const bundle = async (version: number) => {
        const source = writePolicy(host, `b${version}.yaml`, policy(host, NET, { mode: "audit", version }));
        const out = `${host.dir}/b${version}.bundle.json`;
        await cli(host, ["policy", "sign", source, "--key", `${key}.key`, "--out", out]);
        return out;
      };
      const [nine, ten] = [await bundle(9), await bundle(10)];
      await cli(host, ["policy", "apply", nine]);
      await cli(host, ["policy", "apply", ten]);
      assert.equal(count(), 3);
      assert.match(
        await cli(host, ["policy", "apply", ten]),
        /^unchanged: .* version 10 .* history entry 3,/m,
      );
      assert.equal(count(), 3, "the bundle in force, applied again: no entry");

      await cli(host, ["detach"]);
      const back = await cli(host, ["policy", "apply", ten]);
      assert.match(back, /^applied /m, "the bundle that raised the counter comes back after a detach");
      assert.equal(count(), 4);
      assert.equal(listHistory(host.stateDir).at(-1)?.version, 10);
      const replay = await aegisbpf(["policy", "apply", nine], { env: host.env });
      assert.equal(replay.code, 3, `an older bundle replayed: ${replay.stderr}`);
      assert.equal(count(), 4, "a refused bundle writes no entry");
    });
  },
);

rootTest(
  "[root] two agents started at once, 20 times: exactly one runs, the other exits 3 naming the first's pid",
  async () => {
    await withHost(async (host) => {
      const tiny = writePolicy(
        host,
        "tiny.yaml",
        policy(host, `  network: { egress: { deny: [{ id: never, cidr: 240.0.0.1/32 }] } }\n`, {
          mode: "audit",
        }),
      );
      const rounds = 20;
      const started = performance.now();
      for (let round = 0; round < rounds; round++) {
        const pair = [spawn(host, ["--policy", tiny]), spawn(host, ["--policy", tiny])];
        try {
          const outcomes = await Promise.all(pair.map(async (agent) => {
            try {
              await agent.ready(60_000);
              return "running";
            } catch {
              return "exited";
            }
          }));
          const winner = pair[outcomes.indexOf("running")];
          const loser = pair[outcomes.indexOf("exited")];
          assert.ok(winner && loser, `round ${round}: ${outcomes.join(", ")}`);
          const refused = await loser.exit();
          assert.equal(refused.code, 3, `round ${round}: ${refused.stderr}`);
          assert.match(refused.stderr, new RegExp(`An agent is already running \\(pid ${winner.pid}[,)]`));
          assert.equal(loser.events.length, 0, "the loser wrote no event");
          assert.equal(agentState(host).pid, winner.pid);
          await stop(winner);
        } finally {
          for (const agent of pair) await agent[Symbol.asyncDispose]();
        }
      }
      console.log(
        `${rounds} rounds of two agents at once in ${((performance.now() - started) / 1000).toFixed(1)} s`,
      );
    });
  },
);
