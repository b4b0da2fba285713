/**
 * `health` against a real plane, through the real command: a policy applied with `policy apply` (its
 * socket programs attach to the cgroup v2 root, so it denies only binds of an unused high port, plus a
 * file rule on a temporary file), then break-glass, an unpinned link, a file replaced by rename and a dead
 * agent each make the answer change. Every test has its own bpffs and directories and detaches in `finally`.
 */
import assert from "node:assert/strict";
import { takeAgentLock } from "../../lib/state/agent_lock.ts";
import { checkHealth } from "../../lib/report/health.ts";
import { bootTimeNs } from "../../ffi/mod.ts";
import { DataPlane } from "../../lib/kernel/dataplane.ts";
import { FILE_FALLBACK_COVERAGE } from "../../lib/kernel/load.ts";
import { type Scratch, scratch } from "../cli/cli.ts";
import { TestBpffs } from "../support/bpffs.ts";
import { TestCgroup } from "../support/cgroup.ts";
import { AgentRun } from "../support/agent_run.ts";
import { HEARTBEAT_STALE_MS } from "../../lib/state/heartbeat.ts";
import { VethPair } from "../support/netns.ts";
import { must, rootTest } from "../support/privileged.ts";
import { assertMatchesSchema } from "../support/schema.ts";
import { connectBurst } from "../support/loops.ts";
import { ruleSet, withPlane } from "../support/plane.ts";
import { ipv4Rule } from "../support/slice.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

/** An unused high port, away from the ephemeral range and from the other host tests' ports. */
const PORT = 61851;

type Env = {
  s: Scratch;
  bpffs: string;
  denied: string;
  run: (args: string[]) => ReturnType<Scratch["run"]>;
  // deno-lint-ignore no-explicit-any
  health: (...args: string[]) => Promise<{ code: number; report: Record<string, any>; stderr: string }>;
};

async function withApplied(fn: (env: Env) => Promise<void>): Promise<void> {
  const bpffs = await TestBpffs.mount();
  try {
    await using s = await scratch();
    const run = (args: string[]) => s.run(args, { env: { AEGISBPF_BPFFS: bpffs.path, NO_COLOR: "1" } });
    const denied = `${s.dir}/secret`;
    await Deno.writeTextFile(denied, "secret\n");
    await Deno.writeTextFile(
      `${s.dir}/p.yaml`,
      `apiVersion: aegisbpf.io/v1
kind: Policy
metadata: { name: health-test, version: 3 }
spec:
  mode: enforce
  files:
    deny: [{ id: secret, path: ${denied} }]
  network:
    bind:
      deny: [{ id: port, port: ${PORT}, protocol: tcp }]
`,
    );
    try {
      const applied = await run(["policy", "apply", "p.yaml", "--allow-partial"]);
      assert.equal(applied.code, 0, applied.stderr);
      const health = async (...args: string[]) => {
        const result = await run(["health", "--json", ...args]);
        const report = JSON.parse(result.stdout);
        assertMatchesSchema("health.schema.json", report);
        return { code: result.code, report, stderr: result.stderr };
      };
      await fn({ s, bpffs: bpffs.path, denied, run, health });
    } finally {
      DataPlane.detach(bpffs.path);
    }
  } finally {
    await bpffs.unmount();
  }
}

rootTest("[root] health after policy apply: healthy, enforce, the policy named, fast", async () => {
  await withApplied(async ({ s, bpffs, health, run }) => {
    const { code, report } = await health();
    assert.equal(code, 0, JSON.stringify(report.problems));
    assert.equal(report.healthy, true);
    assert.equal(report.mode.effective, "enforce");
    assert.equal(report.policy.name, "health-test");
    assert.equal(report.policy.version, 3);
    assert.match(report.policy.sha256, /^[0-9a-f]{64}$/);
    assert.deepEqual(report.missingLinks, []);
    const names = report.links.map((link: { name: string }) => link.name);
    for (const name of ["aegis_bind4", "aegis_bind6", "aegis_tp_openat"]) {
      assert.ok(names.includes(name), name);
    }
    assert.ok(report.links.every((link: { attached: boolean }) => link.attached));
    assert.deepEqual(
      report.partial.map((entry: { area: string }) => entry.area),
      ["file"],
      "LSM refused here",
    );
    assert.equal(report.staleRules.checked, 1);
    assert.deepEqual(report.staleRules.stale, []);
    assert.equal(report.agent.state, "absent");
    assert.equal(report.events.lost, 0);

    const timings: number[] = [];
    for (let i = 0; i < 20; i++) {
      const started = performance.now();
      checkHealth({ bpffs, stateDir: s.stateDir, configDir: s.configDir }, { requireEnforce: false });
      timings.push(performance.now() - started);
    }
    timings.sort((a, b) => a - b);
    const median = timings[10] ?? 0;
    console.log(
      `checkHealth in process: median ${median.toFixed(1)} ms, max ${timings.at(-1)?.toFixed(1)} ms`,
    );
    assert.ok(median < 100, `health took ${median} ms`);
    const started = performance.now();
    const text = await run(["health"]);
    console.log(`aegisbpf health, whole process: ${(performance.now() - started).toFixed(0)} ms`);
    assert.equal(text.code, 0);
    assert.match(text.stdout, /^healthy: mode enforce, but file only audits\n/);
    assert.match(text.stdout, /^ {2}policy +health-test version 3 sha256 [0-9a-f]{12} \(history entry 1, /m);

    const strict = await health("--require-enforce");
    assert.equal(strict.code, 1, "file only audits on this kernel");
    assert.ok(strict.report.problems.includes("file only audits (--require-enforce)"));
  });
});

rootTest(
  "[root] health --require-enforce AREAS fails only for the areas named that do not enforce",
  async () => {
    await withApplied(async ({ health, run }) => {
      const bind = await health("--require-enforce", "bind");
      assert.equal(bind.code, 0, JSON.stringify(bind.report.problems));
      const file = await health("--require-enforce", "bind,file");
      assert.equal(file.code, 1, "file only audits on this kernel");
      assert.deepEqual(file.report.problems, [
        "file is not enforcing (--require-enforce bind,file): BPF-LSM not attached: audited through tracepoints; " +
        FILE_FALLBACK_COVERAGE,
      ]);
      assert.match(
        file.report.problems[0]!,
        /an open for writing of a protected one \(file\.write open-write\)/,
      );
      const egress = await health("--require-enforce=egress");
      assert.equal(egress.code, 1);
      assert.deepEqual(egress.report.problems, [
        "egress is not enforcing (--require-enforce egress): the policy in force does not use it",
      ]);
      const bad = await run(["health", "--require-enforce", "bind,frob"]);
      assert.equal(bad.code, 2);
      assert.match(
        bad.stderr,
        /^aegisbpf: error: --require-enforce: unknown area "frob"; name some of file, /,
      );
      assert.equal((await run(["break-glass", "on", "--reason", "INC-7"])).code, 0);
      const glass = await health("--require-enforce", "bind");
      assert.equal(glass.code, 1, "break-glass: nothing enforces");
      assert.match(
        glass.report.problems[0],
        /^bind is not enforcing \(--require-enforce bind\): break-glass is on/,
      );
      assert.equal((await health()).code, 0, "break-glass alone is deliberate: healthy");
    });
  },
);

rootTest(
  "[root] health with break-glass on: mode audit, still healthy, not with --require-enforce",
  async () => {
    await withApplied(async ({ run, health }) => {
      assert.equal((await run(["break-glass", "on", "--reason", "INC-9"])).code, 0);
      const { code, report } = await health();
      assert.equal(code, 0, JSON.stringify(report.problems));
      assert.equal(report.mode.effective, "audit");
      assert.equal(report.mode.policy, "enforce");
      assert.deepEqual(report.mode.reasons, ["break-glass is on"]);
      assert.deepEqual(report.breakGlass, { on: true, until: null, reason: "INC-9", marker: true });
      const strict = await health("--require-enforce");
      assert.equal(strict.code, 1);
      assert.match(strict.report.problems[0], /^not enforcing \(--require-enforce\): break-glass is on/);
    });
  },
);

rootTest("[root] health with a link unpinned: unhealthy, naming the program", async () => {
  await withApplied(async ({ bpffs, health, run }) => {
    await Deno.remove(`${bpffs}/aegisbpf/links/aegis_bind4`);
    const { code, report } = await health();
    assert.equal(code, 1);
    assert.deepEqual(report.missingLinks, ["aegis_bind4"]);
    assert.match(report.problems.join("\n"), /programs not attached: aegis_bind4: re-apply the policy/);
    const text = await run(["health"]);
    assert.equal(text.code, 1);
    assert.match(text.stdout, /^unhealthy: /);
  });
});

rootTest(
  "[root] health finds a denied file replaced by rename, and a removed one, as stale rules",
  async () => {
    await withApplied(async ({ s, denied, health }) => {
      await Deno.writeTextFile(`${s.dir}/new`, "replacement\n");
      await Deno.rename(`${s.dir}/new`, denied);
      const replaced = await health();
      assert.equal(replaced.code, 1);
      const [stale] = replaced.report.staleRules.stale;
      assert.equal(stale.rule, "secret");
      assert.equal(stale.problem, "replaced");
      assert.equal(stale.path, denied);
      assert.notEqual(stale.now.ino, stale.denied.ino);
      assert.match(replaced.report.problems.join("\n"), /stale file rule secret: .* now holds another file/);
      await Deno.remove(denied);
      const removed = await health();
      assert.equal(removed.code, 1);
      assert.equal(removed.report.staleRules.stale[0].problem, "missing");
    });
  },
);

rootTest(
  "[root] health says the agent died when no process holds the agent lock, running when its holder lives",
  async () => {
    await withApplied(async ({ s, health }) => {
      const child = new Deno.Command("true").spawn();
      const { pid } = child;
      await child.status;
      const record = (pid: number) =>
        JSON.stringify({
          pid,
          startedAt: new Date().toISOString(),
          mode: "enforce",
          requestedMode: "enforce",
          areas: { file: "audit-only", exec: "unused", egress: "unused", bind: "enforce", ingress: "unused" },
          partial: [{ area: "file", reason: "BPF-LSM refused" }],
          ingress: [],
          deadmanMs: null,
          policy: { name: "health-test", version: 3, sha256: "0".repeat(64) },
          eventsLog: `${s.stateDir}/events.jsonl`,
        });
      await Deno.writeTextFile(`${s.stateDir}/agent.json`, record(pid));
      const dead = await health();
      assert.equal(dead.code, 1);
      assert.equal(dead.report.agent.state, "died");
      // No process holds the agent lock: the agent that wrote the record is gone, whatever its pid is now.
      assert.match(dead.report.problems.join("\n"), /the agent died \(no process holds the agent lock /);

      using _agentLock = await takeAgentLock(s.stateDir);
      await Deno.writeTextFile(`${s.stateDir}/agent.json`, record(Deno.pid));
      const alive = await health();
      assert.equal(alive.code, 0, JSON.stringify(alive.report.problems));
      assert.equal(alive.report.agent.state, "running");
      assert.equal(alive.report.agent.pid, Deno.pid);
      assert.deepEqual(alive.report.partial, [{ area: "file", reason: "BPF-LSM refused" }]);

      await Deno.writeTextFile(`${s.stateDir}/agent.json`, "{not json");
      const broken = await health();
      assert.equal(broken.code, 1);
      assert.equal(broken.report.agent.state, "unreadable");
    });
  },
);

const PROBE = new URL("../support/net_probe.ts", import.meta.url).pathname;

async function bindPort(port: number): Promise<string> {
  const { stdout } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net", PROBE, "bind", "tcp", String(port)],
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(5000),
  }).output();
  return new TextDecoder().decode(stdout).trim();
}

rootTest(
  "[root] status shows the hooks attached and the denies counted per hook, colour only when asked",
  async () => {
    await withApplied(async ({ s, run }) => {
      for (let i = 0; i < 3; i++) assert.equal(await bindPort(PORT), "EPERM");
      const text = await run(["status"]);
      assert.equal(text.code, 0, text.stderr);
      assert.match(text.stdout, /^aegisbpf {2}mode enforce {2}healthy\n/);
      assert.match(text.stdout, /^bind +aegis_bind4, aegis_bind6 +3 +0$/m);
      assert.match(text.stdout, /^file_open +aegis_tp_open, aegis_tp_openat, aegis_tp_openat2 +0 +\d+$/m);
      assert.match(text.stdout, /^ {2}policy +health-test version 3 /m);
      assert.match(
        text.stdout,
        /^packets dropped by XDP: 0; events lost: 0; suppressed by the rate limit: \d+$/m,
      );
      assert.ok(!text.stdout.includes("\x1b["));
      const json = JSON.parse((await run(["status", "--json"])).stdout);
      const bind = json.counters.find((row: { hook: string }) => row.hook === "bind");
      assert.deepEqual(bind, { hook: "bind", links: ["aegis_bind4", "aegis_bind6"], deny: 3, audit: 0 });
      const coloured = await s.run(["status"], {
        env: { AEGISBPF_BPFFS: json.pins.dir.replace(/\/aegisbpf$/, ""), FORCE_COLOR: "1" },
      });
      assert.ok(coloured.stdout.includes("\x1b[32menforce\x1b[39m"), "green enforce with FORCE_COLOR");
    });
  },
);

rootTest(
  "[root] health names a file created under a recursive rule's directory after the apply as not covered",
  async () => {
    const bpffs = await TestBpffs.mount();
    try {
      await using s = await scratch();
      const run = (args: string[]) => s.run(args, { env: { AEGISBPF_BPFFS: bpffs.path, NO_COLOR: "1" } });
      await Deno.mkdir(`${s.dir}/keys/sub`, { recursive: true });
      await Deno.writeTextFile(`${s.dir}/keys/a.pem`, "a\n");
      await Deno.writeTextFile(`${s.dir}/keys/sub/b.pem`, "b\n");
      await Deno.writeTextFile(
        `${s.dir}/p.yaml`,
        `apiVersion: aegisbpf.io/v1\nkind: Policy\nmetadata: { name: recursive-test, version: 1 }\nspec:\n` +
          `  files:\n    deny: [{ id: keys, path: ${s.dir}/keys, recursive: true }]\n`,
      );
      try {
        const applied = await run(["policy", "apply", "p.yaml"]);
        assert.equal(applied.code, 0, applied.stderr);
        const before = JSON.parse((await run(["health", "--json"])).stdout);
        assertMatchesSchema("health.schema.json", before);
        assert.equal(before.healthy, true, JSON.stringify(before.problems));
        assert.equal(before.staleRules.checked, 2, "both files recorded");
        await Deno.writeTextFile(`${s.dir}/keys/sub/c.pem`, "c\n");
        const after = await run(["health", "--json"]);
        assert.equal(after.code, 1);
        const report = JSON.parse(after.stdout);
        assert.deepEqual(
          report.staleRules.stale.map((r: { path: string; problem: string }) => [r.path, r.problem]),
          [
            [`${s.dir}/keys/sub/c.pem`, "new"],
          ],
        );
        assert.match(report.problems.join("\n"), /was created after the apply and is not covered/);
      } finally {
        DataPlane.detach(bpffs.path);
      }
    } finally {
      await bpffs.unmount();
    }
  },
);

rootTest(
  "[root] health reads the deadman's time left, its expiry and forced audit from the kernel words",
  async () => {
    await withApplied(async ({ bpffs, health }) => {
      const setWords = (change: { deadmanDeadlineNs?: bigint; forceAudit?: boolean }) => {
        using plane = DataPlane.open({ bpffs, areas: [] });
        plane.setConfig(change);
      };
      setWords({ deadmanDeadlineNs: bootTimeNs() + 30_000_000_000n });
      const armed = await health();
      assert.equal(armed.code, 0, JSON.stringify(armed.report.problems));
      assert.equal(armed.report.deadman.armed, true);
      assert.equal(armed.report.deadman.expired, false);
      assert.ok(armed.report.deadman.remainingMs > 25_000 && armed.report.deadman.remainingMs <= 30_000);
      assert.equal(armed.report.mode.effective, "enforce");

      setWords({ deadmanDeadlineNs: bootTimeNs() - 1_000_000n });
      const expired = await health();
      assert.equal(expired.code, 1, "an expired deadman is unhealthy, not a warning");
      assert.equal(expired.report.deadman.expired, true);
      assert.equal(expired.report.mode.effective, "audit");
      assert.equal(expired.report.mode.requested, "enforce");
      assert.equal(expired.report.mode.belowRequested, true);
      assert.deepEqual(expired.report.mode.reasons, ["the deadman expired: the agent stopped refreshing it"]);
      assert.match(expired.report.problems.join("\n"), /^the deadman expired: the hooks only audit/m);
      assert.equal((await health("--require-enforce")).code, 1);

      setWords({ deadmanDeadlineNs: 0n, forceAudit: true });
      const forced = await health();
      assert.equal(forced.code, 1, "audit forced in the kernel with no break-glass is unhealthy");
      assert.equal(forced.report.deadman.armed, false);
      // No run --audit agent and no detach left it (no forced_audit.json): written behind aegisbpf's back.
      assert.deepEqual(forced.report.mode.reasons, [
        "force-audit word set but no agent or command asked for audit (written behind aegisbpf's back): " +
        "the next aegisbpf run without --audit lifts it",
      ]);
      assert.match(
        forced.report.problems.join("\n"),
        /the hooks only audit although the policy asks for enforce and break-glass is off: force-audit word set but no/,
      );

      setWords({ forceAudit: false });
      assert.equal((await health()).code, 0, "enforcing again: healthy again");
    });
  },
);

rootTest(
  "[root] health reports the kernel's lost-event counter, exactly, after a flood overflowed the ring",
  async () => {
    const denied = "127.0.0.2";
    // One page of ring holds 31 records: a burst of new pids overflows it.
    await withPlane(
      { areas: ["egress"], ringBufferBytes: 4096 },
      async ({ plane, cgroup, bpffs, server }) => {
        await plane.apply(ruleSet({
          mode: "enforce",
          rules: [{ id: "default", area: "ingress", action: "deny" }, {
            id: "lo2",
            area: "egress",
            action: "deny",
          }],
          egress: [ipv4Rule(`${denied}/32`, 1)],
        }));
        const result = await cgroup.runBash(connectBurst(denied, server.port, 200, { fork: true }));
        assert.equal(result.code, 0, result.stderr);
        const { eventsLost, eventsSuppressed } = plane.counters();
        assert.ok(eventsLost > 0n, "the burst overflowed the ring");
        const dir = Deno.makeTempDirSync({ prefix: "aegisbpf-test-health-" });
        try {
          const report = checkHealth({ bpffs: bpffs.path, stateDir: dir, configDir: dir }, {
            requireEnforce: false,
          });
          assert.deepEqual(report.events, { lost: Number(eventsLost), suppressed: Number(eventsSuppressed) });
          assert.equal(report.counters?.decisions.connect.deny, 200n);
          assert.ok(
            report.warnings.includes(
              `${eventsLost} events were lost (ring buffer full): the agent read too slowly`,
            ),
          );
        } finally {
          Deno.removeSync(dir, { recursive: true });
        }
      },
    );
  },
);

rootTest(
  "[root] health expects one XDP link per applied interface, and a deleted interface's link as detached",
  async () => {
    const bpffs = await TestBpffs.mount();
    const pair = await VethPair.create();
    try {
      await using s = await scratch();
      await Deno.writeTextFile(
        `${s.dir}/p.yaml`,
        `apiVersion: aegisbpf.io/v1\nkind: Policy\nmetadata: { name: ingress-test, version: 1 }\nspec:\n` +
          `  network:\n    ingress:\n      interfaces: [${pair.serverInterface}]\n      deny: [{ cidr: 203.0.113.0/24 }]\n`,
      );
      const env = { AEGISBPF_BPFFS: bpffs.path, NO_COLOR: "1" };
      try {
        // The interface exists only in the server namespace: apply from there (bpffs is the same).
        const apply = await new Deno.Command("ip", {
          args: [
            "netns",
            "exec",
            pair.server,
            Deno.execPath(),
            "run",
            "--allow-all",
            MAIN,
            "policy",
            "apply",
            "p.yaml",
          ],
          cwd: s.dir,
          env: { ...env, AEGISBPF_STATE_DIR: s.stateDir, AEGISBPF_CONFIG_DIR: s.configDir },
          stdout: "piped",
          stderr: "piped",
        }).output();
        assert.equal(apply.code, 0, new TextDecoder().decode(apply.stderr));
        const health = async () => JSON.parse((await s.run(["health", "--json"], { env })).stdout);
        const before = await health();
        assertMatchesSchema("health.schema.json", before);
        assert.equal(before.healthy, true, JSON.stringify(before.problems));
        const xdp = before.links.find((link: { name: string }) =>
          link.name === `aegis_xdp@${pair.serverInterface}`
        );
        assert.deepEqual([xdp?.type, xdp?.attached], ["xdp", true]);

        await must("ip", ["-n", pair.server, "link", "del", pair.serverInterface]);
        const after = await health();
        assert.equal(after.healthy, false);
        assert.deepEqual(after.missingLinks, [`aegis_xdp@${pair.serverInterface}`]);
        assert.match(after.problems.join("\n"), /link aegis_xdp@veth-srv is pinned but not attached/);
      } finally {
        DataPlane.detach(bpffs.path);
      }
    } finally {
      await pair.remove();
      await bpffs.unmount();
    }
  },
);

rootTest(
  "[root] health of an agent stopped by SIGSTOP: unhealthy, naming the expired deadman and the stale heartbeat; healthy again after SIGCONT",
  async () => {
    const bpffs = await TestBpffs.mount();
    const cgroup = TestCgroup.create();
    try {
      await using s = await scratch();
      await Deno.writeTextFile(`${s.dir}/cmdline`, "ro quiet\n");
      const dirs = { bpffs: bpffs.path, stateDir: s.stateDir, configDir: s.configDir };
      await Deno.writeTextFile(
        `${s.dir}/p.yaml`,
        `apiVersion: aegisbpf.io/v1\nkind: Policy\nmetadata: { name: stalled, version: 1 }\nspec:\n` +
          `  mode: enforce\n  scope: { cgroups: ["${cgroup.relativePath}"] }\n` +
          `  network:\n    bind:\n      deny: [{ id: port, port: ${PORT}, protocol: tcp }]\n`,
      );
      const env = { AEGISBPF_PROC_CMDLINE: `${s.dir}/cmdline` };
      await using agent = AgentRun.spawn(dirs, ["--policy", `${s.dir}/p.yaml`, "--deadman", "2s"], { env });
      await agent.ready();
      const health = async () => {
        const result = await s.run(["health", "--json"], { env: { AEGISBPF_BPFFS: bpffs.path } });
        const report = JSON.parse(result.stdout);
        assertMatchesSchema("health.schema.json", report);
        return { code: result.code, report };
      };
      const running = await health();
      assert.equal(running.code, 0, JSON.stringify(running.report.problems));
      assert.equal(running.report.agent.state, "running");
      assert.equal(running.report.agent.stalled, false);

      agent.kill("SIGSTOP");
      try {
        // The deadman lapses after 2 s; the heartbeat is stale after HEARTBEAT_STALE_MS.
        await new Promise((resolve) => setTimeout(resolve, HEARTBEAT_STALE_MS + 1500));
        const stopped = await health();
        assert.equal(stopped.code, 1);
        assert.equal(stopped.report.healthy, false);
        assert.equal(stopped.report.deadman.expired, true);
        assert.equal(stopped.report.agent.stalled, true);
        assert.ok(stopped.report.agent.heartbeatAgeMs > HEARTBEAT_STALE_MS);
        const problems = stopped.report.problems.join("\n");
        assert.match(problems, /^the deadman expired: the hooks only audit/m);
        assert.match(
          problems,
          new RegExp(`^the agent \\(pid ${agent.pid}\\) has made no progress for \\d+ s`, "m"),
        );
        const text = await s.run(["health"], { env: { AEGISBPF_BPFFS: bpffs.path, NO_COLOR: "1" } });
        assert.equal(text.code, 1);
        assert.match(text.stdout, /^unhealthy: mode audit \(the deadman expired/);
        assert.match(text.stdout, /^ {2}agent +running, pid \d+ .*, stalled: no heartbeat for \d+ s$/m);
      } finally {
        agent.kill("SIGCONT");
      }
      const deadline = Date.now() + 10_000;
      let again = await health();
      while (again.code !== 0 && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 250));
        again = await health();
      }
      assert.equal(again.code, 0, JSON.stringify(again.report.problems));
      assert.equal(again.report.agent.stalled, false);
      assert.equal(again.report.deadman.expired, false);
      agent.kill("SIGTERM");
      assert.equal((await agent.exit()).code, 0);
    } finally {
      try {
        DataPlane.detach(bpffs.path);
      } finally {
        cgroup.remove();
        await bpffs.unmount();
      }
    }
  },
);
