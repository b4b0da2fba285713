/**
 * The local API cannot be used to end the agent, and the runtime's inspector never opens, tried as the
 * issue's local attacker (uid 65534, no capabilities) against a real root agent:
 * - 10,000 idle TCP clients (half send the start of a request head, half nothing) under a 1,024-descriptor
 *   limit, with 3,000 idle clients on the Unix socket (opened up to them) at the same time: the agent stays alive and
 *   enforcing (with --deadman), never runs out of descriptors (a full listener leaves the rest in the
 *   kernel's listen queue), closes idle clients after its header timeout, and answers /health/ready during
 *   (Unix socket) and after (TCP) the flood;
 * - SIGUSR1, which opens Deno's inspector on 127.0.0.1:9229 in any other Deno process, is ignored by the
 *   agent: no listener appears, the agent goes on.
 */
import assert from "node:assert/strict";
import { CONNECTION_LIMITS } from "../../lib/api/relay.ts";
import { AgentRun } from "../support/agent_run.ts";
import { type Host, withHost as withAgentHost } from "../support/agent_host.ts";
import { listeningTcpPorts, openDescriptors, signalIgnored } from "../support/listeners.ts";
import { rootTest, run } from "../support/privileged.ts";

const DENIED_PORT = 61900 + (Deno.pid % 90);
const API_PORT = 30000 + (Deno.pid % 9000);
const IDLE_CLIENTS = new URL("../support/idle_clients.ts", import.meta.url).pathname;
const NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"];
const SIGUSR1 = 10;
const INSPECTOR_PORT = 9229;
/** How long an idle client waits for the agent to close it: past the agent's header timeout. */
const HOLD_MS = CONNECTION_LIMITS.headerTimeoutMs + 3_000;

/** A host of tests/support/agent_host.ts with a policy denying 127.0.0.2:DENIED_PORT in its test cgroup. */
async function withHost(fn: (host: Host) => Promise<void>): Promise<void> {
  await withAgentHost(async (host) => {
    Deno.writeTextFileSync(
      `${host.dir}/policy.yaml`,
      `apiVersion: aegisbpf.io/v1\nkind: Policy\nmetadata: { name: flood-test, version: 1 }\nspec:\n` +
        `  mode: enforce\n  scope: { cgroups: ["${host.cgroup.relativePath}"] }\n  network:\n    egress:\n` +
        `      deny: [{ id: lo2, cidr: 127.0.0.2/32, ports: [${DENIED_PORT}], protocol: tcp }]\n`,
    );
    await fn(host);
  });
}

function spawnAgent(host: Host, args: string[], prefix: string[] = []): AgentRun {
  return AgentRun.spawn(host, ["--policy", `${host.dir}/policy.yaml`, ...args], {
    env: { AEGISBPF_PROC_CMDLINE: `${host.dir}/cmdline` },
    prefix,
  });
}

async function denied(host: Host): Promise<boolean> {
  return await host.cgroup.connect("127.0.0.2", DENIED_PORT) === "EPERM";
}

function alive(pid: number): boolean {
  try {
    return !/^State:\s+[ZX]/m.test(Deno.readTextFileSync(`/proc/${pid}/status`));
  } catch {
    return false;
  }
}

async function curl(args: string[]): Promise<{ status: number; body: string }> {
  const result = await run("curl", ["-sS", "--max-time", "5", "-w", "\n%{http_code}", ...args]);
  const lines = result.stdout.split("\n");
  return { status: Number(lines.pop()), body: lines.join("\n") + result.stderr };
}

type Tally = {
  connected: number;
  closedByServer: number;
  answered: number;
  stillOpen: number;
  failed: number;
  longestMs: number;
  started: number;
};

/** tests/support/idle_clients.ts as `runAs`, with room for its own descriptors. */
async function idleClients(runAs: string[], target: string, count: number, denoDir: string): Promise<Tally> {
  const args = ["--nofile=16384:16384", ...runAs, "env", `DENO_DIR=${denoDir}`, Deno.execPath(), "run"];
  const result = await run("prlimit", [
    ...args,
    "--allow-net",
    "--allow-read",
    "--allow-write",
    "--quiet",
    IDLE_CLIENTS,
    target,
    String(count),
    "1500",
    String(HOLD_MS),
    "45000",
  ]);
  assert.equal(result.code, 0, `idle clients (${target}): ${result.stderr}`);
  return JSON.parse(result.stdout);
}

rootTest(
  "[root] 10,000 idle API clients from uid 65534 under a 1,024-descriptor limit leave the agent alive and enforcing",
  async () => {
    await withHost(async (host) => {
      const socket = `${host.dir}/api.sock`;
      await using agent = spawnAgent(host, [
        "--deadman",
        "5s",
        "--api",
        `unix:${socket}`,
        "--api",
        `tcp:127.0.0.1:${API_PORT}`,
      ], ["prlimit", "--nofile=1024:1024", "--"]);
      await agent.ready();
      const ready = `http://127.0.0.1:${API_PORT}/health/ready`;
      for (let i = 0; i < 100 && (await curl([ready])).status !== 200; i++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      assert.equal((await curl([ready])).status, 200, "the TCP API answers before the flood");
      // A slow start can outlast the deadman: the agent's next refresh arms it again.
      for (
        let i = 0;
        i < 100 && JSON.parse((await curl([ready])).body).health.mode.effective !== "enforce";
        i++
      ) {
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      assert.ok(await denied(host), "denied before the flood");

      // The Unix socket is 0600 in a 0700 directory: opened up, uid 65534 reaches it and is refused by uid.
      Deno.chmodSync(host.dir, 0o755);
      Deno.chmodSync(socket, 0o666);
      const denoDir = Deno.makeTempDirSync({ prefix: "aegisbpf-flood-deno-" });
      Deno.chownSync(denoDir, 65534, 65534);
      let peakDescriptors = 0;
      let sampling = true;
      const sampler = (async () => {
        while (sampling && alive(agent.pid)) {
          peakDescriptors = Math.max(peakDescriptors, openDescriptors(agent.pid));
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      })();
      const started = performance.now();
      try {
        const tcp = idleClients(NOBODY, `tcp:127.0.0.1:${API_PORT}`, 10_000, denoDir);
        const unix = idleClients(NOBODY, `unix:${socket}`, 3_000, denoDir);
        await new Promise((resolve) => setTimeout(resolve, 3_000));
        assert.ok(alive(agent.pid), `the agent is alive during the flood: ${agent.stderr}`);
        assert.ok(await denied(host), "still denied during the flood");
        const duringReady = await curl(["--unix-socket", socket, "http://aegisbpf/health/ready"]);
        const [tcpTally, unixTally] = await Promise.all([tcp, unix]);
        const floodMs = performance.now() - started;
        console.log(
          `tcp ${JSON.stringify(tcpTally)}\nunix ${JSON.stringify(unixTally)}\n` +
            `flood ${(floodMs / 1000).toFixed(1)} s, agent peak ${peakDescriptors} descriptors; ` +
            `ready over the Unix socket during the flood: ${duringReady.status}`,
        );
        assert.ok(alive(agent.pid), `the agent is alive after the flood: ${agent.stderr}`);
        assert.equal(tcpTally.started, 10_000, "every idle client was tried");
        assert.ok(tcpTally.connected >= 500, "the flood reached the listener (its listen queue)");
        assert.ok(unixTally.connected >= 64, "the Unix flood reached the listener");
        // The agent closed idle clients itself: on TCP with 408 after its header timeout, on the Unix socket
        // with 403 (refused by uid) or at once.
        assert.ok(tcpTally.closedByServer >= 32, "idle TCP clients closed by the agent");
        assert.ok(unixTally.closedByServer >= 64, "idle Unix clients closed by the agent");
        assert.ok(peakDescriptors < 400, `the agent held ${peakDescriptors} descriptors at its peak`);
        assert.equal(
          duringReady.status,
          200,
          `ready over the Unix socket during the flood: ${duringReady.body}`,
        );
        assert.doesNotMatch(agent.stderr, /Too many open files/, "the agent never ran out of descriptors");
      } finally {
        sampling = false;
        await sampler;
        Deno.removeSync(denoDir, { recursive: true });
      }
      // The deadman (3 s) would have fallen back to audit had the agent stopped refreshing it.
      assert.ok(await denied(host), "still denied after the flood: enforcement never lapsed");
      const after = await curl([ready]);
      assert.equal(after.status, 200, `ready over TCP after the flood: ${after.body}`);
      assert.equal(JSON.parse(after.body).health.mode.effective, "enforce");
      const rebound = await curl(["-H", "Host: attacker.example", ready]);
      assert.equal(rebound.status, 421, rebound.body);
      assert.doesNotMatch(agent.stderr, /Uncaught|panicked/);

      agent.kill("SIGTERM");
      assert.equal((await agent.exit()).code, 0);
    });
  },
);

rootTest("[root] SIGUSR1 opens no inspector in the agent, which goes on running", async () => {
  // The control: any other Deno process opens the inspector on SIGUSR1 (once its 500 ms grace is over).
  // Run as uid 65534, so the inspector it opens reaches nothing privileged.
  const control = new Deno.Command(NOBODY[0]!, {
    args: [...NOBODY.slice(1), Deno.execPath(), "eval", "setTimeout(() => {}, 8000)"],
    env: { DENO_DIR: "/tmp", NO_COLOR: "1" },
    stdout: "null",
    stderr: "piped",
  }).spawn();
  try {
    await new Promise((resolve) => setTimeout(resolve, 1500));
    Deno.kill(control.pid, "SIGUSR1");
    await new Promise((resolve) => setTimeout(resolve, 1000));
    assert.deepEqual(listeningTcpPorts(control.pid), [INSPECTOR_PORT], "the control opened the inspector");
  } finally {
    control.kill("SIGKILL");
    await control.output();
  }

  await withHost(async (host) => {
    await using agent = spawnAgent(host, []);
    await agent.ready();
    await new Promise((resolve) => setTimeout(resolve, 1000)); // past the runtime's grace
    assert.ok(signalIgnored(agent.pid, SIGUSR1), "the kernel discards SIGUSR1 for the agent");
    for (let i = 0; i < 3; i++) agent.kill("SIGUSR1");
    await new Promise((resolve) => setTimeout(resolve, 1500));
    assert.ok(alive(agent.pid), `the agent is alive: ${agent.stderr}`);
    assert.deepEqual(listeningTcpPorts(agent.pid), [], "the agent listens on nothing (no --api)");
    assert.doesNotMatch(agent.stderr, /Debugger listening/);
    assert.ok(await denied(host), "still enforcing");
    agent.kill("SIGTERM");
    assert.equal((await agent.exit()).code, 0);
  });
});
