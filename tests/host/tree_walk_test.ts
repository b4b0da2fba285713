/**
 * Tree walks a local attacker cannot break (the "keep the agent from starting"): under a
 * recursive rule's world-writable directory, uid 65534 builds a chain of directories deeper than PATH_MAX,
 * or a tree of a million files, and `policy apply`, `health`, `status` and `run` must still work, the
 * files at the bottom denied. Trees are made by tests/support/tree_maker.c (openat-relative, fast); each
 * test has its own directory (a tmpfs for the big tree) and bpffs, removed in `finally`, and removes what
 * an interrupted earlier run left.
 */
import assert from "node:assert/strict";
import { DataPlane } from "../../lib/kernel/dataplane.ts";
import { type Scratch, scratch } from "../cli/cli.ts";
import { AgentRun } from "../support/agent_run.ts";
import { TestBpffs } from "../support/bpffs.ts";
import { memoryKib } from "../support/fleet.ts";
import { isLeftover, must, rootTest, run, uniqueName } from "../support/privileged.ts";
import { assertMatchesSchema } from "../support/schema.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const MAKER_SOURCE = new URL("../support/tree_maker.c", import.meta.url).pathname;
const PREFIX = "aegisbpf-test-tree-";
const TMP = Deno.env.get("TMPDIR") ?? "/tmp";
const NOBODY = ["--reuid=65534", "--regid=65534", "--clear-groups"];
const DEPTH = 5000;

type Env = {
  s: Scratch;
  bpffs: string;
  /** The recursive rule's directory, mode 1777. */
  tree: string;
  maker: string;
  aegis: (args: string[]) => ReturnType<Scratch["run"]>;
};

async function removeLeftovers(): Promise<void> {
  for (const { name } of Deno.readDirSync(TMP)) {
    if (!isLeftover(name, PREFIX)) continue;
    await run("umount", [`${TMP}/${name}/tree`]);
    await must("rm", ["-rf", "--one-file-system", `${TMP}/${name}`]);
  }
}

async function withTree(tmpfsInodes: number | undefined, fn: (env: Env) => Promise<void>): Promise<void> {
  await removeLeftovers();
  const base = `${TMP}/${uniqueName(PREFIX)}`;
  const tree = `${base}/tree`;
  Deno.mkdirSync(tree, { recursive: true });
  const bpffs = await TestBpffs.mount();
  let mounted = false;
  try {
    if (tmpfsInodes !== undefined) {
      await must("mount", ["-t", "tmpfs", "-o", `mode=1777,size=1g,nr_inodes=${tmpfsInodes}`, "tmpfs", tree]);
      mounted = true;
    }
    Deno.chmodSync(base, 0o755);
    Deno.chmodSync(tree, 0o1777);
    const maker = `${base}/tree_maker`;
    await must("clang", ["-O2", "-Wall", "-Werror", "-o", maker, MAKER_SOURCE]);
    await using s = await scratch();
    const aegis = (args: string[]) => s.run(args, { env: { AEGISBPF_BPFFS: bpffs.path, NO_COLOR: "1" } });
    try {
      await fn({ s, bpffs: bpffs.path, tree, maker, aegis });
    } finally {
      DataPlane.detach(bpffs.path);
    }
  } finally {
    await bpffs.unmount();
    if (mounted) await must("umount", [tree]);
    // rm walks by descriptor too: a chain deeper than PATH_MAX goes.
    await must("rm", ["-rf", "--one-file-system", base]);
  }
}

function writePolicy(env: Env, rule: string): string {
  const path = `${env.s.dir}/p.yaml`;
  Deno.writeTextFileSync(
    path,
    `apiVersion: aegisbpf.io/v1
kind: Policy
metadata: { name: tree-test, version: 1 }
spec:
  mode: enforce
  files:
    deny: [{ id: tree, path: ${env.tree}, recursive: true${rule} }]
`,
  );
  return path;
}

// deno-lint-ignore no-explicit-any
async function health(env: Env): Promise<{ code: number; report: Record<string, any>; stderr: string }> {
  const result = await env.aegis(["health", "--json"]);
  const report = JSON.parse(result.stdout);
  assertMatchesSchema("health.schema.json", report);
  return { code: result.code, report, stderr: result.stderr };
}

/**
 * Waits until process `pid` catches SIGTERM (SigCgt in /proc/PID/status): `run` installs its stop handlers
 * only once started, a while after `policy.applied` when a big tree is watched, and a SIGTERM before that
 * kills it outright (exit 143).
 */
async function catchesSigterm(pid: number): Promise<void> {
  const SIGTERM_BIT = 1n << 14n;
  for (let tries = 0; tries < 600; tries++) {
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    const caught = BigInt(`0x${/^SigCgt:\s+([0-9a-f]+)/m.exec(status)?.[1] ?? "0"}`);
    if (caught & SIGTERM_BIT) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`Process ${pid} did not catch SIGTERM within 60 s`);
}

/** This process's descriptor limit, inherited by every command it starts. */
async function limitDescriptors(limit: number): Promise<void> {
  await must("prlimit", ["--pid", String(Deno.pid), `--nofile=${limit}:${limit}`]);
}

rootTest(
  `[root] a chain of ${DEPTH} directories made by uid 65534 under a recursive rule: apply, health, status and run work with 1,024 descriptors, the bottom file denied`,
  async () => {
    await withTree(undefined, async (env) => {
      await must("setpriv", [...NOBODY, env.maker, "chain", env.tree, String(DEPTH)]);
      await limitDescriptors(1024);
      const policy = writePolicy(env, "");

      const applied = await env.aegis(["policy", "apply", policy, "--allow-partial"]);
      assert.equal(applied.code, 0, applied.stderr);
      const record = JSON.parse(Deno.readTextFileSync(`${env.s.stateDir}/applied.json`));
      assert.equal(record.recursive[0].denied[0].count, 2, "top and bottom recorded");

      const healthy = await health(env);
      assert.equal(healthy.code, 0, JSON.stringify(healthy.report.problems));
      assert.equal(healthy.report.staleRules.checked, 2);
      assert.deepEqual(healthy.report.staleRules.stale, []);
      const status = await env.aegis(["status"]);
      assert.equal(status.code, 0, status.stderr);

      Deno.removeSync(`${env.tree}/top`);
      const stale = await health(env);
      assert.equal(stale.code, 1);
      assert.deepEqual(
        stale.report.staleRules.stale.map((rule: { problem: string }) => rule.problem),
        ["missing"],
        "the removed top file, and nothing else",
      );

      const dirs = { bpffs: env.bpffs, stateDir: env.s.stateDir, configDir: env.s.configDir };
      await using agent = AgentRun.spawn(dirs, ["--audit", "--policy", policy]);
      await agent.ready(60_000);
      // Opened by uid 65534 through the chain: the tracepoint fallback reports it under the rule.
      const read = await run("setpriv", [...NOBODY, env.maker, "read", env.tree, String(DEPTH)]);
      assert.equal(read.code, 0, read.stderr);
      // uid 65534's open, not one of root's queued in the ring before this agent started.
      const open = await agent.waitFor(
        (event) => event.type === "file.open" && event.rule === "tree" && event.process?.uid === 65534,
        30_000,
      );
      assert.equal(open.decision, "audit");
      await catchesSigterm(agent.pid);
      agent.kill("SIGTERM");
      const { code, stderr } = await agent.exit();
      assert.equal(code, 0, stderr);
      // Watches stop 32 levels down (placing deeper ones costs too much): said once, not fatal.
      assert.match(
        stderr,
        /Not every directory under .* is watched \(1 more than 32 levels deep, with all below/,
      );
    });
  },
);

/** Runs aegisbpf under /usr/bin/time: its result, wall seconds and peak resident memory (MiB). */
async function measured(env: Env, args: string[]) {
  const result = await run("/usr/bin/time", [
    "-f",
    "measured %e %M",
    "env",
    `AEGISBPF_BPFFS=${env.bpffs}`,
    `AEGISBPF_STATE_DIR=${env.s.stateDir}`,
    `AEGISBPF_CONFIG_DIR=${env.s.configDir}`,
    "NO_COLOR=1",
    Deno.execPath(),
    "run",
    "--allow-all",
    MAIN,
    ...args,
  ]);
  const [, seconds, kib] = result.stderr.match(/measured ([0-9.]+) ([0-9]+)\s*$/) ?? [];
  return { ...result, seconds: Number(seconds), mib: Math.round(Number(kib) / 1024) };
}

const FILES = 1_000_000;

rootTest(
  `[root] ${FILES} files made by uid 65534 under one recursive rule: apply denies them all, health reads them and run starts, in bounded time and memory`,
  async () => {
    await withTree(FILES + 10_000, async (env) => {
      let started = performance.now();
      // All under one subdirectory: a walk that spread a subtree's list onto the stack threw a RangeError
      // past about 125,000 files.
      await must("setpriv", [...NOBODY, "mkdir", `${env.tree}/sub`]);
      await must("setpriv", [...NOBODY, env.maker, "wide", `${env.tree}/sub`, String(FILES), "1000"]);
      const made = (performance.now() - started) / 1000;
      const policy = writePolicy(env, "");

      const apply = await measured(env, ["policy", "apply", policy, "--allow-partial"]);
      assert.equal(apply.code, 0, apply.stderr);
      const applied = Deno.readTextFileSync(`${env.s.stateDir}/applied.json`);
      const record = JSON.parse(applied);
      assert.equal(record.recursive[0].denied[0].count, FILES);
      assert.deepEqual(record.inodes, [], "no file of the tree listed one by one");

      started = performance.now();
      const healthy = await measured(env, ["health", "--json"]);
      const report = JSON.parse(healthy.stdout);
      assertMatchesSchema("health.schema.json", report);
      assert.equal(healthy.code, 0, JSON.stringify(report.problems));
      assert.equal(report.staleRules.checked, FILES);
      assert.deepEqual(report.staleRules.stale, []);

      started = performance.now();
      const dirs = { bpffs: env.bpffs, stateDir: env.s.stateDir, configDir: env.s.configDir };
      await using agent = AgentRun.spawn(dirs, ["--audit", "--policy", policy]);
      await agent.ready(180_000);
      const ready = (performance.now() - started) / 1000;
      const agentMib = Math.round(memoryKib(agent.pid).peak / 1024);
      await catchesSigterm(agent.pid);
      agent.kill("SIGTERM");
      const stopped = await agent.exit();
      assert.equal(stopped.code, 0, stopped.stderr);

      const size = (applied.length / 1e6).toFixed(1);
      console.log(
        `${FILES} files made in ${made.toFixed(1)} s; apply ${apply.seconds} s, ${apply.mib} MiB; ` +
          `applied.json ${size} MB; health ${healthy.seconds} s, ${healthy.mib} MiB; ` +
          `run ready in ${ready.toFixed(1)} s, ${agentMib} MiB peak`,
      );
      assert.ok(apply.mib < 1024, `apply peaked at ${apply.mib} MiB`);
      assert.ok(healthy.mib < 1024, `health peaked at ${healthy.mib} MiB`);
      assert.ok(agentMib < 1024, `the agent peaked at ${agentMib} MiB`);
    });
  },
);

rootTest(
  "[root] a tree past its rule's maxFiles: apply refuses as bad input naming the rule and the cap, nothing applied; health names it later",
  async () => {
    await withTree(undefined, async (env) => {
      await must("setpriv", [...NOBODY, env.maker, "wide", env.tree, "10", "10"]);
      const policy = writePolicy(env, ", maxFiles: 10");
      const applied = await env.aegis(["policy", "apply", policy, "--allow-partial"]);
      assert.equal(applied.code, 0, applied.stderr);

      Deno.writeFileSync(`${env.tree}/s0/one-more`, new Uint8Array());
      const stale = await health(env);
      assert.equal(stale.code, 1);
      assert.match(
        stale.report.problems.join("\n"),
        /Rule tree: .*\/tree holds more than 10 files \(maxFiles 10\): the next apply will fail/,
      );

      const before = Deno.readTextFileSync(`${env.s.stateDir}/applied.json`);
      const refused = await env.aegis(["policy", "apply", policy, "--allow-partial"]);
      assert.equal(refused.code, 2, refused.stderr);
      assert.match(
        refused.stderr,
        /Rule tree: .*\/tree holds more than 10 files \(maxFiles 10\): nothing was applied; raise maxFiles/,
      );
      assert.equal(
        Deno.readTextFileSync(`${env.s.stateDir}/applied.json`),
        before,
        "the applied record untouched",
      );
    });
  },
);
