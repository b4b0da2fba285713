/**
 * The agent (`aegisbpf run`) against the real kernel, spawned as a user would. The socket programs attach
 * to the cgroup v2 root (the command's default); every policy here is scoped to a test cgroup, so nothing
 * outside it is ever denied. Each test has its own bpffs mount, state and config directories and cgroup,
 * and detaches everything in `finally`.
 */
import assert from "node:assert/strict";
import { COUNTER, encodeU32 } from "../../ffi/mod.ts";
import { DataPlane } from "../../lib/kernel/dataplane.ts";
import { listHistory } from "../../lib/state/history.ts";
import { aegisbpf } from "../cli/cli.ts";
import { AgentRun, type Event } from "../support/agent_run.ts";
import {
  BIND_PORT,
  connect,
  everyAreaPolicy,
  type Host,
  NET,
  policy,
  spawn,
  TCP_PORT,
  UDP_PORT,
  withHost,
  within,
  writePolicy,
} from "../support/agent_host.ts";
import { startConnectLoop } from "../support/loops.ts";
import { VethPair } from "../support/netns.ts";
import { probeLsm } from "../../lib/kernel/load.ts";
import { rootTest, run } from "../support/privileged.ts";
import { rateWindowStart } from "../support/rate_window.ts";
import { assertMatchesSchema } from "../support/schema.ts";

const RFC3339_NS = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/;

/** Every SPEC section 6 field of a kernel event, from a process of the test cgroup. */
function assertKernelEvent(host: Host, event: Event, type: string, rule: string, mode: string): void {
  assert.match(event.ts, RFC3339_NS);
  assert.equal(event.host, Deno.hostname());
  assert.equal(event.type, type);
  assert.equal(event.rule, rule);
  assert.equal(event.mode, mode);
  assert.equal(event.decision, mode === "enforce" ? "deny" : "audit");
  assert.equal(event.policy.name, "agent-test");
  assert.equal(typeof event.policy.version, "number");
  assert.match(event.policy.sha256, /^[0-9a-f]{64}$/);
  const { process } = event;
  for (const field of ["pid", "ppid", "uid", "gid"]) assert.equal(typeof process[field], "number", field);
  assert.equal(typeof process.comm, "string");
  assert.equal(process.cgroup.id, Deno.statSync(host.cgroup.path).ino);
  assert.equal(process.cgroup.path, host.cgroup.relativePath);
  assert.ok(event.count >= 1);
}

const isKernel = (type: string, rule: string) => (event: Event) => event.type === type && event.rule === rule;

rootTest(
  "[root] run --audit: egress connect and sendmsg, bind, file open and exec are reported with every SPEC field; SIGTERM leaves the pins, removes agent.json, keeps the log",
  async () => {
    await withHost(async (host) => {
      const { secret, tool, file } = everyAreaPolicy(host);
      await using agent = spawn(host, ["--audit", "--policy", file]);
      const applied = await agent.ready();
      assert.equal(applied.policy.name, "agent-test");
      assert.equal(applied.history, 1);
      const state = JSON.parse(Deno.readTextFileSync(`${host.stateDir}/agent.json`));
      assert.deepEqual({ ...state, startedAt: "", policy: state.policy.name, eventsLog: "" }, {
        pid: agent.pid,
        startedAt: "",
        mode: "audit",
        requestedMode: "audit",
        // --audit is a floor: the policy keeps its own mode.
        policyMode: "enforce",
        floor: "audit",
        areas: {
          file: "audit-only",
          exec: "audit-only",
          egress: "audit-only",
          bind: "audit-only",
          ingress: "unused",
        },
        partial: [],
        ingress: [],
        deadmanMs: null,
        unresolved: [],
        policy: "agent-test",
        eventsLog: "",
      });
      assert.equal(state.eventsLog, `${host.stateDir}/events.jsonl`);

      assert.equal(await connect(host), "allowed", "audit lets the connect through");
      assert.equal(await host.cgroup.probe("udp-sendto", "127.0.0.3", String(UDP_PORT)), "sent");
      assert.equal(await host.cgroup.probe("bind", "tcp", String(BIND_PORT)), "bound");
      const read = await host.cgroup.runBash(`cat '${secret}'`);
      assert.equal(read.stdout, "s3cret\n");
      assert.equal((await host.cgroup.runBash(`'${tool}'`)).code, 0);

      const connectEvent = await agent.waitFor(isKernel("net.connect", "tcp-lo2"));
      assertKernelEvent(host, connectEvent, "net.connect", "tcp-lo2", "audit");
      assert.deepEqual(connectEvent.net, {
        family: "ipv4",
        protocol: "tcp",
        daddr: "127.0.0.2",
        dport: TCP_PORT,
      });
      const send = await agent.waitFor(isKernel("net.sendmsg", "udp-lo3"));
      assertKernelEvent(host, send, "net.sendmsg", "udp-lo3", "audit");
      assert.deepEqual(send.net, { family: "ipv4", protocol: "udp", daddr: "127.0.0.3", dport: UDP_PORT });
      const bind = await agent.waitFor(isKernel("net.bind", "bind-port"));
      assertKernelEvent(host, bind, "net.bind", "bind-port", "audit");
      assert.equal(bind.net.sport, BIND_PORT);
      assert.equal(bind.net.protocol, "tcp");
      const open = await agent.waitFor(isKernel("file.open", "secret-file"));
      assertKernelEvent(host, open, "file.open", "secret-file", "audit");
      assert.equal(open.process.comm, "cat");
      assert.deepEqual(open.file, { path: secret, dev: open.file.dev, ino: Deno.statSync(secret).ino });
      const exec = await agent.waitFor(isKernel("exec", "tool-exec"));
      assertKernelEvent(host, exec, "exec", "tool-exec", "audit");
      assert.equal(exec.file.ino, Deno.statSync(tool).ino);

      agent.kill("SIGTERM");
      const { code, stderr } = await agent.exit();
      assert.equal(code, 0, stderr);
      assert.equal(agent.events.at(-1)?.type, "agent.stop");
      assert.equal(agent.events[0]?.type, "agent.start");
      assert.throws(() => Deno.statSync(`${host.stateDir}/agent.json`), Deno.errors.NotFound);
      assert.ok(Deno.readDirSync(`${host.bpffs}/aegisbpf/links`).some((l) => l.name === "aegis_connect4"));
      const logged = Deno.readTextFileSync(`${host.stateDir}/events.jsonl`).trim().split("\n").map((l) =>
        JSON.parse(l)
      );
      assert.deepEqual(logged, agent.events, "the log holds exactly what stdout showed");
      for (const event of logged) assertMatchesSchema("event.schema.json", event);
    });
  },
);

function agentState(host: Host) {
  return JSON.parse(Deno.readTextFileSync(`${host.stateDir}/agent.json`));
}

/** Waits until agent.json says `mode`. */
async function stateMode(host: Host, mode: string): Promise<void> {
  await within(2000, mode, () => Promise.resolve(agentState(host).mode));
}

const after = (agent: AgentRun) => agent.events.length;
const isType = (type: string) => (event: Event) => event.type === type;

rootTest(
  "[root] break-glass: touch and rm of the marker, and the command, flip enforce to audit and back within a second; the command works on a kill -9'd agent's pins",
  async () => {
    await withHost(async (host) => {
      const file = writePolicy(host, "p.yaml", policy(host, NET));
      const marker = `${host.configDir}/break_glass`;
      const agent = spawn(host, ["--policy", file]);
      await using _ = agent;
      await agent.ready();
      assert.equal(await connect(host), "EPERM");
      assert.equal(agentState(host).mode, "enforce");
      assert.equal(agentState(host).areas.egress, "enforce");

      let from = after(agent);
      Deno.writeTextFileSync(marker, "");
      const touched = await within(1000, "allowed", () => connect(host));
      const on = await agent.waitFor(isType("break_glass.on"), 2000, from);
      assert.equal(on.source, "marker");
      assert.equal(on.reason, "marker created by hand");
      await stateMode(host, "audit");

      from = after(agent);
      Deno.removeSync(marker);
      const removed = await within(1000, "EPERM", () => connect(host));
      const off = await agent.waitFor(isType("break_glass.off"), 2000, from);
      assert.equal(off.reason, "marker removed");
      await stateMode(host, "enforce");

      from = after(agent);
      const command = await aegisbpf(["break-glass", "on", "--reason", "INC-1"], { env: host.env });
      assert.equal(command.code, 0, command.stderr);
      assert.equal(await connect(host), "allowed", "the command flips the kernel word itself");
      const byCommand = await agent.waitFor(isType("break_glass.on"), 2000, from);
      assert.equal(byCommand.reason, "INC-1");
      from = after(agent);
      assert.equal((await aegisbpf(["break-glass", "off"], { env: host.env })).code, 0);
      assert.equal(await connect(host), "EPERM");
      await agent.waitFor(isType("break_glass.off"), 2000, from);

      agent.kill("SIGKILL");
      await agent.exit();
      assert.equal(await connect(host), "EPERM", "enforcement outlives the agent");
      assert.equal(
        (await aegisbpf(["break-glass", "on", "--reason", "dead agent"], { env: host.env })).code,
        0,
      );
      assert.equal(await connect(host), "allowed");
      assert.equal((await aegisbpf(["break-glass", "off"], { env: host.env })).code, 0);
      assert.equal(await connect(host), "EPERM");
      console.log(
        `marker touched -> audit in ${touched.toFixed(0)} ms, removed -> enforce in ${removed.toFixed(0)} ms`,
      );
    });
  },
);

rootTest(
  "[root] break-glass --ttl ends by itself: enforcement returns and the agent reports it",
  async () => {
    await withHost(async (host) => {
      const file = writePolicy(host, "p.yaml", policy(host, NET));
      await using agent = spawn(host, ["--policy", file]);
      await agent.ready();
      const from = after(agent);
      const command = await aegisbpf(["break-glass", "on", "--reason", "window", "--ttl", "2s"], {
        env: host.env,
      });
      assert.equal(command.code, 0, command.stderr);
      assert.equal(await connect(host), "allowed");
      const on = await agent.waitFor(isType("break_glass.on"), 2000, from);
      assert.match(on.until, /^\d{4}-\d\d-\d\dT[\d:.]+Z$/);
      await within(3500, "EPERM", () => connect(host));
      const off = await agent.waitFor(isType("break_glass.off"), 2000, from);
      assert.equal(off.reason, "ttl expired");
      assert.throws(
        () => Deno.statSync(`${host.configDir}/break_glass`),
        Deno.errors.NotFound,
        "marker removed",
      );
      await stateMode(host, "enforce");
    });
  },
);

rootTest(
  "[root] deadman: a stopped agent's kernel falls back to audit after the TTL, and enforces again once it refreshes; a new agent reports a dead one's expiry",
  async () => {
    await withHost(async (host) => {
      const file = writePolicy(host, "p.yaml", policy(host, NET));
      // 2 s: room for a loaded machine to schedule the agent's refreshes (every 500 ms).
      const agent = spawn(host, ["--policy", file, "--deadman", "2s"]);
      await using _ = agent;
      await agent.ready();
      assert.equal(agentState(host).deadmanMs, 2000);
      assert.equal(await connect(host), "EPERM", "a refreshed deadman enforces");
      agent.kill("SIGSTOP");
      const fellBack = await within(5000, "allowed", () => connect(host));
      let from = after(agent);
      agent.kill("SIGCONT");
      const late = await agent.waitFor(isType("deadman.expired"), 5000, from);
      assert.equal(late.source, "this agent, late");
      await within(2500, "EPERM", () => connect(host));

      agent.kill("SIGKILL");
      await agent.exit();
      await within(5000, "allowed", () => connect(host));
      await using next = spawn(host, ["--policy", file]);
      from = 0;
      const dead = await next.waitFor(isType("deadman.expired"), 30_000, from);
      assert.equal(dead.source, "previous agent");
      await next.ready();
      assert.equal(await connect(host), "EPERM", "no deadman on the new agent: enforcing again");
      assert.ok(fellBack < 5000);
    });
  },
);

rootTest(
  "[root] SIGHUP with a broken policy keeps the old one and says why; a valid one is applied; a second agent is refused (3)",
  async () => {
    await withHost(async (host) => {
      const file = writePolicy(host, "p.yaml", policy(host, NET));
      await using agent = spawn(host, ["--policy", file]);
      await agent.ready();
      assert.equal(await connect(host), "EPERM");

      let from = after(agent);
      Deno.writeTextFileSync(file, policy(host, NET).replace("kind: Policy", "kind: Policy\nbogus: 1"));
      agent.kill("SIGHUP");
      const failed = await agent.waitFor(isType("policy.reload_failed"), 10_000, from);
      assert.match(failed.error, /p\.yaml:3:1/);
      assert.equal(failed.kept, "agent-test version 1");
      assert.equal(await connect(host), "EPERM", "the old policy still enforces");
      assert.equal(agentState(host).policy.version, 1);
      assert.match(agent.stderr, /reload failed, still enforcing agent-test version 1/);

      from = after(agent);
      const bindOnly =
        `  network:\n    bind: { deny: [{ id: bind-port, port: ${BIND_PORT}, protocol: tcp }] }\n`;
      Deno.writeTextFileSync(file, policy(host, bindOnly, { version: 2 }));
      agent.kill("SIGHUP");
      const applied = await agent.waitFor(isType("policy.applied"), 10_000, from);
      assert.equal(applied.policy.version, 2);
      assert.equal(applied.history, 2);
      assert.equal(applied.reason, "reload");
      assert.equal(await connect(host), "allowed");
      assert.equal(agentState(host).policy.version, 2);
      assert.deepEqual(listHistory(host.stateDir).map((entry) => entry.outcome), ["applied", "applied"]);
    });
  },
);

rootTest(
  "[root] kill -9 of the agent keeps enforcement, and a new run adopts it: no connect of a loop running throughout gets through",
  async () => {
    await withHost(async (host) => {
      const file = writePolicy(host, "p.yaml", policy(host, NET));
      const first = spawn(host, ["--policy", file]);
      await using _ = first;
      await first.ready();
      const loop = await startConnectLoop(host.cgroup, "127.0.0.2", TCP_PORT, { maxSeconds: 60 });
      let tally;
      try {
        await new Promise((resolve) => setTimeout(resolve, 300));
        first.kill("SIGKILL");
        await first.exit();
        await new Promise((resolve) => setTimeout(resolve, 300));
        await using second = spawn(host, ["--policy", file]);
        const adopted = await second.ready();
        assert.equal(adopted.history, "unchanged", "the same policy: no new history entry");
        await new Promise((resolve) => setTimeout(resolve, 300));
        second.kill("SIGTERM");
        assert.equal((await second.exit()).code, 0);
      } finally {
        tally = await loop.stop();
      }
      assert.equal(tally.leaks, 0, `${tally.leaks} of ${tally.attempts} connects got through`);
      assert.ok(tally.attempts > 50, `only ${tally.attempts} attempts`);
      assert.equal(listHistory(host.stateDir).length, 1);
      assert.equal(await connect(host), "EPERM");
      console.log(`${tally.attempts} connects across kill -9 and adoption, 0 through`);
    });
  },
);

rootTest(
  "[root] the embedded default audit policy produces real events within a minute and denies nothing",
  async () => {
    await withHost(async (host) => {
      await using agent = spawn(host, []);
      const applied = await agent.ready();
      assert.equal(applied.origin, "default");
      assert.equal(applied.policy.name, "aegisbpf-default-audit");
      const started = performance.now();
      // What any host does all the time; the test does it too so as not to wait on the host's own activity.
      await host.cgroup.runBash("id >/dev/null; cat /etc/passwd >/dev/null; uname >/dev/null");
      const first = await agent.waitFor((event) => event.decision !== undefined, 60_000);
      assert.equal(first.decision, "audit");
      assert.equal(first.mode, "audit");
      assert.equal(first.policy.name, "aegisbpf-default-audit");
      const file = await agent.waitFor(isKernel("file.open", "read-passwd"), 30_000);
      assert.equal(file.file.path, "/etc/passwd");
      await agent.waitFor((event) => event.type === "exec" && /^exec-/.test(event.rule), 30_000);
      assert.equal(agentState(host).mode, "audit");
      assert.ok(agent.events.every((event) => event.decision !== "deny"));
      console.log(
        `first default-policy event after ${
          (performance.now() - started).toFixed(0)
        } ms: ${first.type} ${first.rule}`,
      );
    });
  },
);

rootTest(
  "[root] run --enforce with file rules where BPF-LSM cannot load is refused (exit 3) naming the area; --allow-partial runs them audit-only and says so in agent.json",
  async () => {
    await withHost(async (host) => {
      const secret = `${host.dir}/secret`;
      Deno.writeTextFileSync(secret, "s3cret\n");
      const file = writePolicy(
        host,
        "p.yaml",
        policy(host, `  files: { deny: [{ id: secret-file, path: ${secret} }] }\n${NET}`),
      );
      const lsm = probeLsm();
      const refused = await aegisbpf(["run", "--enforce", "--policy", file], { env: host.env });
      if (lsm.ok) {
        // A kernel that loads BPF-LSM programs (the VM suite covers enforcement there).
        assert.notEqual(refused.code, 3, refused.stderr);
        return;
      }
      assert.equal(refused.code, 3, refused.stderr);
      assert.match(
        refused.stderr,
        /^aegisbpf: error: Refused enforce mode: this kernel cannot enforce file rules \(BPF-LSM program load failed: EPERM.*\); pass --allow-partial/,
      );
      assert.equal(refused.stdout, "");
      assert.throws(
        () => Deno.statSync(`${host.bpffs}/aegisbpf`),
        Deno.errors.NotFound,
        "refused before loading",
      );

      await using agent = spawn(host, ["--enforce", "--allow-partial", "--policy", file]);
      await agent.ready();
      const state = agentState(host);
      assert.equal(state.mode, "enforce");
      assert.equal(state.requestedMode, "enforce");
      assert.deepEqual(state.areas, {
        file: "audit-only",
        exec: "unused",
        egress: "enforce",
        bind: "enforce",
        ingress: "unused",
      });
      assert.equal(state.partial.length, 1);
      assert.equal(state.partial[0].area, "file");
      assert.match(state.partial[0].reason, /EPERM/);
      assert.equal(await connect(host), "EPERM", "egress enforces");
      assert.equal((await host.cgroup.runBash(`cat '${secret}'`)).stdout, "s3cret\n", "file only audits");
      const open = await agent.waitFor(isKernel("file.open", "secret-file"));
      assert.equal(open.decision, "audit");
      assert.match(agent.stderr, /file runs audit-only \(--allow-partial\)/);
    });
  },
);

rootTest(
  "[root] rule freshness (audit fallback): a file replaced by rename, an optional path created, a symlink's target replaced or the link repointed, and a file new under a recursive directory are covered again within a second, with no new history entry",
  async () => {
    await withHost(async (host) => {
      const victim = `${host.dir}/victim`;
      const later = `${host.dir}/later`;
      const tree = `${host.dir}/tree`;
      Deno.writeTextFileSync(victim, "v1\n");
      Deno.mkdirSync(`${host.dir}/real`);
      Deno.writeTextFileSync(`${host.dir}/real/tool`, "t1\n");
      Deno.symlinkSync(`${host.dir}/real/tool`, `${host.dir}/alternative`);
      Deno.symlinkSync(`${host.dir}/alternative`, `${host.dir}/linked`);
      Deno.mkdirSync(tree);
      Deno.writeTextFileSync(`${tree}/a`, "a\n");
      const file = writePolicy(
        host,
        "p.yaml",
        policy(
          host,
          `  files:\n    deny:\n      - { id: victim, path: ${victim} }\n` +
            `      - { id: later, path: ${later}, optional: true }\n` +
            `      - { id: linked, path: ${host.dir}/linked }\n` +
            `      - { id: tree, path: ${tree}, recursive: true }\n`,
          { mode: "audit" },
        ),
      );
      await using agent = spawn(host, ["--policy", file]);
      await agent.ready();
      const timings: number[] = [];
      const refreshed = async (change: () => void, rule: string) => {
        const from = after(agent);
        const start = performance.now();
        change();
        const event = await agent.waitFor(
          (e) => e.type === "policy.refreshed" && e.rules.includes(rule),
          1000,
          from,
        );
        timings.push(performance.now() - start);
        return event;
      };
      await refreshed(() => {
        Deno.writeTextFileSync(`${host.dir}/victim.new`, "v2\n");
        Deno.renameSync(`${host.dir}/victim.new`, victim);
      }, "victim");
      await refreshed(() => Deno.writeTextFileSync(later, "now\n"), "later");
      await refreshed(() => {
        Deno.writeTextFileSync(`${host.dir}/real/tool.new`, "t2\n");
        Deno.renameSync(`${host.dir}/real/tool.new`, `${host.dir}/real/tool`);
      }, "linked");
      await refreshed(() => {
        Deno.writeTextFileSync(`${host.dir}/real/other`, "t3\n");
        Deno.removeSync(`${host.dir}/alternative`);
        Deno.symlinkSync(`${host.dir}/real/other`, `${host.dir}/alternative`);
      }, "linked");
      await refreshed(() => Deno.writeTextFileSync(`${tree}/b`, "b\n"), "tree");

      for (
        const [path, rule] of [[victim, "victim"], [later, "later"], [`${host.dir}/linked`, "linked"], [
          `${tree}/b`,
          "tree",
        ]] as const
      ) {
        const from = after(agent);
        await host.cgroup.runBash(`cat '${path}' >/dev/null`);
        const open = await agent.waitFor(
          (e) => isKernel("file.open", rule)(e) && e.file.ino === Deno.statSync(path).ino,
          5000,
          from,
        );
        assert.equal(open.decision, "audit");
      }
      assert.equal(listHistory(host.stateDir).length, 1, "a refresh is not a new policy");
      console.log(`refreshed after ${timings.map((t) => t.toFixed(0)).join(", ")} ms`);
    });
  },
);

rootTest("[root] run --ingress IFACE filters that interface with XDP and reports net.ingress", async () => {
  await withHost(async (host) => {
    const pair = await VethPair.create();
    try {
      const file = writePolicy(
        host,
        "p.yaml",
        policy(
          host,
          `  network:\n    ingress:\n      interfaces: [lo]\n      deny: [{ id: from-client, cidr: ${pair.clientAddress}/32 }]\n`,
          {
            mode: "audit",
          },
        ),
      );
      await using agent = AgentRun.spawn(host, ["--policy", file, "--ingress", pair.serverInterface], {
        env: host.env,
        prefix: ["nsenter", `--net=/run/netns/${pair.server}`],
      });
      await agent.ready();
      assert.deepEqual(
        agentState(host).ingress,
        ["lo", pair.serverInterface],
        "the policy's and --ingress's",
      );
      assert.equal(agentState(host).areas.ingress, "audit-only");
      await run("ip", [
        "netns",
        "exec",
        pair.client,
        "ping",
        "-c",
        "2",
        "-i",
        "0.2",
        "-W",
        "1",
        pair.serverAddress,
      ]);
      const event = await agent.waitFor(isType("net.ingress"), 10_000);
      assert.match(event.ts, RFC3339_NS);
      assert.equal(event.rule, "from-client");
      assert.equal(event.decision, "audit");
      assert.equal(event.policy.name, "agent-test");
      assert.equal(event.net.saddr, pair.clientAddress);
      assert.equal(event.net.daddr, pair.serverAddress);
      assert.equal(event.net.interface, pair.serverInterface);
    } finally {
      await pair.remove();
    }
  });
});

rootTest(
  "[root] at start the agent honours aegisbpf.break_glass=1 on the kernel command line and resets a forced-audit word a failed detach left",
  async () => {
    await withHost(async (host) => {
      const file = writePolicy(host, "p.yaml", policy(host, NET));
      const applied = await aegisbpf(["policy", "apply", file], { env: host.env });
      assert.equal(applied.code, 0, applied.stderr);
      {
        using plane = DataPlane.open({ bpffs: host.bpffs, areas: [] });
        plane.setConfig({ forceAudit: true });
      }
      assert.equal(await connect(host), "allowed", "forced audit");
      Deno.writeTextFileSync(`${host.dir}/cmdline`, "BOOT_IMAGE=/vmlinuz ro aegisbpf.break_glass=1 quiet\n");
      {
        await using agent = spawn(host, ["--policy", file]);
        const on = await agent.waitFor(isType("break_glass.on"), 30_000);
        assert.equal(on.source, "cmdline");
        const ready = await agent.ready();
        assert.equal(ready.history, "unchanged");
        assert.equal(await connect(host), "allowed", "break-glass from the command line");
        assert.equal(agentState(host).mode, "audit");
        agent.kill("SIGTERM");
        assert.equal((await agent.exit()).code, 0);
      }
      Deno.writeTextFileSync(`${host.dir}/cmdline`, "ro quiet\n");
      await using agent = spawn(host, ["--policy", file]);
      await agent.ready();
      assert.equal(await connect(host), "EPERM", "neither forced audit nor break-glass is left");
      assert.equal(agentState(host).mode, "enforce");
      assert.ok(!agent.events.some(isType("break_glass.on")));
    });
  },
);

rootTest(
  "[root] a policy applied or rolled back by another command while the agent runs is picked up: its events carry its rules and name",
  async () => {
    await withHost(async (host) => {
      const file = writePolicy(host, "p.yaml", policy(host, NET, { mode: "audit" }));
      await using agent = spawn(host, ["--policy", file]);
      await agent.ready();
      const other =
        `  network:\n    egress:\n      deny: [{ id: other-rule, cidr: 127.0.0.2/32, ports: [${TCP_PORT}], protocol: tcp }]\n`;
      const next = writePolicy(
        host,
        "q.yaml",
        policy(host, other, { version: 5 }).replace("agent-test", "other"),
      );
      const from = after(agent);
      const applied = await aegisbpf(["policy", "apply", next], { env: host.env });
      assert.equal(applied.code, 0, applied.stderr);
      const picked = await agent.waitFor(isType("policy.applied"), 3000, from);
      assert.equal(picked.source, "another command");
      assert.equal(picked.policy.name, "other");
      assert.equal(picked.history, 2);
      assert.equal(await connect(host), "EPERM");
      const denied = await agent.waitFor(isKernel("net.connect", "other-rule"), 5000, from);
      assert.equal(denied.decision, "deny");
      assert.deepEqual(denied.policy.version, 5);
      assert.equal(agentState(host).policy.name, "other");

      const back = after(agent);
      const rollback = await aegisbpf(["policy", "rollback"], { env: host.env });
      assert.equal(rollback.code, 0, rollback.stderr);
      const rolled = await agent.waitFor(isType("policy.rolled_back"), 3000, back);
      assert.equal(rolled.restored, 1);
      assert.equal(rolled.history, 3);
      assert.equal(rolled.policy.name, "agent-test");
      assert.equal(agentState(host).policy.name, "agent-test");
      assert.equal(agentState(host).mode, "audit");
      assert.equal(await connect(host), "allowed");
    });
  },
);

rootTest(
  "[root] events.dropped reports each rise of the kernel's lost-event counter with the number lost (counter raised through the pinned map)",
  async () => {
    await withHost(async (host) => {
      const file = writePolicy(host, "p.yaml", policy(host, NET, { mode: "audit" }));
      await using agent = spawn(host, ["--policy", file]);
      await agent.ready();
      const raiseLost = (by: bigint) => {
        using plane = DataPlane.open({ bpffs: host.bpffs, areas: [] });
        const counters = plane.map("counters");
        const key = encodeU32(COUNTER.EVENTS_LOST);
        const value = counters.lookup(key)!;
        const view = new DataView(value.buffer);
        view.setBigUint64(0, view.getBigUint64(0, true) + by, true);
        counters.update(key, value);
        return plane.counters().eventsLost;
      };
      let from = after(agent);
      const total = raiseLost(7n);
      const first = await agent.waitFor(isType("events.dropped"), 3000, from);
      assert.equal(first.count, 7);
      assert.equal(first.total, Number(total));
      from = after(agent);
      raiseLost(3n);
      const second = await agent.waitFor(isType("events.dropped"), 3000, from);
      assert.equal(second.count, 3);
      assert.equal(second.total, Number(total) + 3);
      assert.match(second.ts, RFC3339_NS);
      assert.equal(second.policy.name, "agent-test");
    });
  },
);

/** The decisions `mine`'s events stand for (the sum of their counts), once it reaches `attempts` or `ms` pass. */
async function countedWithin(
  ms: number,
  agent: { events: Event[] },
  mine: (event: Event) => boolean,
  attempts: number,
): Promise<number> {
  let counted = 0;
  await within(ms, "all", () => {
    counted = agent.events.filter(mine).reduce((sum, event) => sum + event.count, 0);
    return Promise.resolve(counted >= attempts ? "all" : String(counted));
  });
  return counted;
}

rootTest(
  "[root] a flood from one process is rate limited in the kernel and the agent's flush reports the rest: counts add up to every attempt",
  async () => {
    await withHost(async (host) => {
      const file = writePolicy(host, "p.yaml", policy(host, NET, { mode: "audit" }));
      await using agent = spawn(host, ["--policy", file]);
      await agent.ready();
      const attempts = 200;
      const script = `echo $BASHPID; for i in $(seq ${attempts}); do ` +
        `{ exec 3<>/dev/tcp/127.0.0.2/${TCP_PORT}; } 2>/dev/null; exec 3>&-; done`;
      const result = await host.cgroup.runBash(script);
      const pid = Number(result.stdout.trim().split("\n")[0]);
      const mine = (event: Event) => event.rule === "tcp-lo2" && event.process?.pid === pid;
      const summary = await agent.waitFor((event) => mine(event) && event.summary === true, 5000);
      assert.equal(summary.type, "net.connect");
      const counted = await countedWithin(5000, agent, mine, attempts);
      assert.equal(counted, attempts);
      assert.ok(agent.events.filter(mine).length < attempts / 4, "most decisions were carried in counts");
    });
  },
);

rootTest(
  "[root] a flood across a window boundary that ends in the second window: the agent's flushes still report that window's suppressed count",
  async () => {
    await withHost(async (host) => {
      const file = writePolicy(host, "p.yaml", policy(host, NET, { mode: "audit" }));
      await using agent = spawn(host, ["--policy", file]);
      await agent.ready();
      // Started just after a rate window begins and lasting 1.3 windows: the first window's events schedule
      // a flush that comes just after the second window's burst, when nothing else comes to schedule one.
      await rateWindowStart();
      const script = `echo $BASHPID; end=$(( $(date +%s%N) + 1400000000 )); n=0; ` +
        `while (( $(date +%s%N) < end )); do n=$((n+1)); ` +
        `{ exec 3<>/dev/tcp/127.0.0.2/${TCP_PORT}; } 2>/dev/null; exec 3>&-; done; echo $n`;
      const result = await host.cgroup.runBash(script);
      const [pidLine, countLine] = result.stdout.trim().split("\n");
      const pid = Number(pidLine);
      const attempts = Number(countLine);
      assert.ok(attempts > 16, `${attempts} attempts: more than two windows' bursts`);
      const mine = (event: Event) => event.rule === "tcp-lo2" && event.process?.pid === pid;
      const counted = await countedWithin(8000, agent, mine, attempts);
      assert.equal(counted, attempts, "every attempt is in some event's count");
    });
  },
);

rootTest("[root] run --log-format text prints one readable line per event, as events prints it", async () => {
  await withHost(async (host) => {
    const file = writePolicy(host, "p.yaml", policy(host, NET));
    await using agent = AgentRun.spawn(host, ["--policy", file], { env: host.env, text: true });
    await agent.waitFor((event) => / policy\.applied /.test(event.line), 30_000);
    assert.equal(await connect(host), "EPERM");
    const denied = await agent.waitFor((event) => / deny +net\.connect +rule=tcp-lo2 /.test(event.line));
    const cgroup = host.cgroup.relativePath;
    assert.match(
      denied.line,
      new RegExp(
        String
          .raw`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z  deny   net\.connect   rule=tcp-lo2 +bash\[\d+\] ` +
          String.raw`uid=0 cgroup=${cgroup}  tcp 127\.0\.0\.2:${TCP_PORT}$`,
      ),
    );
    const events = await aegisbpf(["events"], { env: host.env });
    assert.ok(events.stdout.split("\n").includes(denied.line), "events prints the line run printed");
    assert.ok(agent.events.every((event) => event.type === "text" && !event.line.startsWith("{")));
    assert.ok(!agent.events.some((event) => event.line.includes("\x1b[")), "no colour off a terminal");
  });
});

rootTest(
  "[root] a process, a cgroup and a file named with escape sequences reach run's text, its log, the event log and events escaped",
  async () => {
    await withHost(async (host) => {
      const evil = host.cgroup.child("\x1b[2Jcg\x9b\u202e");
      // The policy names the file with YAML escapes; file rules only audit here (tracepoints).
      const secret = `${host.dir}/\x1b[2Jsec\x9bret`;
      Deno.writeTextFileSync(secret, "s3cret\n");
      const files = `  files: { deny: [{ id: secret-file, path: "${host.dir}/\\e[2Jsec\\u009bret" }] }\n`;
      const file = writePolicy(host, "p.yaml", policy(host, NET + files));
      await using agent = AgentRun.spawn(host, ["--allow-partial", "--policy", file], {
        env: host.env,
        text: true,
      });
      await agent.waitFor((event) => / policy\.applied /.test(event.line), 30_000);
      // bash renames itself (its comm: ESC [ 2 J, a C1 CSI, BEL), reads the file and connects, from the
      // cgroup named with escapes.
      const script =
        `echo $$ > '${evil.path}/cgroup.procs' && printf '\\033[2Jev\\302\\233\\a' > /proc/self/comm && ` +
        `read -r _ < '${secret}' && exec 3<>/dev/tcp/127.0.0.2/${TCP_PORT}`;
      const connected = await run("bash", ["-c", script]);
      assert.match(connected.stderr, /Operation not permitted/);
      const denied = await agent.waitFor((event) => / deny +net\.connect +rule=tcp-lo2 /.test(event.line));
      assert.ok(
        denied.line.includes(String.raw`\x1b[2Jev\u009b\x07[`) &&
          denied.line.includes(String.raw`/\x1b[2Jcg\u009b\u202e`),
        denied.line,
      );
      const read = await agent.waitFor((event) => / audit +file\.open +rule=secret-file /.test(event.line));
      assert.ok(read.line.includes(String.raw`/\x1b[2Jsec\u009bret`), read.line);
      const logged = Deno.readTextFileSync(`${host.stateDir}/events.jsonl`);
      const [events, json] = await Promise.all([
        aegisbpf(["events"], { env: host.env }),
        aegisbpf(["events", "--json"], { env: host.env }),
      ]);
      agent.kill("SIGTERM");
      const { stderr } = await agent.exit();
      const texts: [string, string][] = [
        ["run's stdout", agent.events.map((event) => event.line).join("\n")],
        ["run's log", stderr],
        ["the event log", logged],
        ["events", events.stdout + events.stderr],
        ["events --json", json.stdout + json.stderr],
      ];
      for (const [what, text] of texts) {
        // deno-lint-ignore no-control-regex -- finding them is the point
        const raw = /[\x00-\x09\x0b-\x1f\x7f-\x9f\u202e]/.exec(text);
        assert.equal(raw, null, `${what} holds a raw U+${raw?.[0].codePointAt(0)?.toString(16)}: ${text}`);
      }
      assert.ok(events.stdout.includes(String.raw`\x1b[2Jev\u009b\x07[`), events.stdout);
      const event = json.stdout.trimEnd().split("\n").map((line) => JSON.parse(line))
        .find((e) => e.type === "net.connect");
      assert.equal(event?.process.comm, "\x1b[2Jev\x9b\x07", "the JSON keeps the exact value");
      assert.equal(event?.process.cgroup.path, `${host.cgroup.relativePath}/\x1b[2Jcg\x9b\u202e`);
      const opened = json.stdout.trimEnd().split("\n").map((line) => JSON.parse(line))
        .find((e) => e.type === "file.open");
      assert.equal(opened?.file.path, secret);
    });
  },
);

/** A shell in the test cgroup that connects to the denied address, then waits in the same process. */
function connectThenWait(host: Host): Deno.ChildProcess {
  const script = `echo $$ > '${host.cgroup.path}/cgroup.procs'; ` +
    `{ : 3<>/dev/tcp/127.0.0.2/${TCP_PORT}; } 2>/dev/null; exec sleep 30`;
  return new Deno.Command("bash", { args: ["-c", script], stdout: "null", stderr: "null" }).spawn();
}

rootTest(
  "[root] run --enforce-signal term: a task whose connect is denied gets SIGTERM from the agent, and the event says so",
  async () => {
    await withHost(async (host) => {
      const file = writePolicy(host, "p.yaml", policy(host, NET));
      await using agent = spawn(host, ["--policy", file, "--enforce-signal", "term"]);
      await agent.ready();
      const task = connectThenWait(host);
      const status = await task.status;
      assert.equal(status.signal, "SIGTERM");
      const event = await agent.waitFor(
        (e) => e.type === "net.connect" && e.process?.pid === task.pid,
        10_000,
      );
      assert.equal(event.decision, "deny");
      assert.deepEqual(event.signal, { name: "SIGTERM", by: "agent" });
      assertMatchesSchema("event.schema.json", event);
      agent.kill("SIGTERM");
      assert.equal((await agent.exit()).code, 0);
      // In audit nothing is denied, so nothing is signalled, even with kill configured.
      await using audit = spawn(host, ["--policy", file, "--audit", "--enforce-signal", "kill"]);
      await audit.ready();
      const spared = connectThenWait(host);
      const audited = await audit.waitFor(
        (e) => e.type === "net.connect" && e.process?.pid === spared.pid,
        10_000,
      );
      assert.equal(audited.decision, "audit");
      assert.equal(audited.signal, undefined);
      await new Promise((resolve) => setTimeout(resolve, 500));
      spared.kill("SIGKILL");
      assert.equal((await spared.status).signal, "SIGKILL", "still alive until the test ended it");
    });
  },
);

rootTest(
  "[root] decisions made while no agent ran are named by the policy that made them, at a restart and under a new policy",
  async () => {
    await withHost(async (host) => {
      const first = writePolicy(host, "first.yaml", policy(host, NET));
      // The same denial under another rule id: the queued decision must keep its old name.
      const second = writePolicy(
        host,
        "second.yaml",
        policy(host, NET.replace("id: tcp-lo2", "id: renamed-lo2"), { version: 2 }),
      );
      const env = { ...host.env, NO_COLOR: "1" };
      const applied = await aegisbpf(["policy", "apply", first], { env });
      assert.equal(applied.code, 0, applied.stderr);
      // The first start takes the table from the policy it starts with, the second from history (a helper).
      for (const [label, file] of [["restart on the same policy", first], ["a new policy", second]]) {
        // Queued in the ring buffer with no agent to read it.
        assert.equal(await connect(host), "EPERM", label);
        await using agent = spawn(host, ["--policy", file!]);
        await agent.ready();
        const queued = await agent.waitFor(isKernel("net.connect", "tcp-lo2"), 10_000);
        assert.equal(queued.policy.version, 1, label);
        agent.kill("SIGTERM");
        assert.equal((await agent.exit()).code, 0);
      }
    });
  },
);
