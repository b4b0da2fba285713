/**
 * The state directory against a local user (uid 65534): made private by the commands that create it, so
 * that user cannot read the event log or hold the state lock; and a lock held by anything at all makes a
 * command give up after --lock-timeout, naming the holder the kernel knows.
 */

import assert from "node:assert/strict";
import { DataPlane } from "../../lib/kernel/dataplane.ts";
import { aegisbpf } from "../cli/cli.ts";
import { AgentRun, type Dirs } from "../support/agent_run.ts";
import { TestBpffs } from "../support/bpffs.ts";
import { rootTest, run } from "../support/privileged.ts";

const NOBODY = ["--reuid=65534", "--regid=65534", "--clear-groups"];
/** An unused high port, away from the ephemeral range, different for each test process. */
const PORT = 61500 + (Deno.pid % 300);

type Host = Dirs & { dir: string; env: Record<string, string> };

/** A scratch directory others may enter (0755), so that only the modes aegisbpf gives protect its state. */
async function withHost(fn: (host: Host) => Promise<void>): Promise<void> {
  const bpffs = await TestBpffs.mount();
  const dir = Deno.makeTempDirSync({ prefix: "aegisbpf-private-" });
  Deno.chmodSync(dir, 0o755);
  const dirs = { bpffs: bpffs.path, stateDir: `${dir}/state`, configDir: `${dir}/etc` };
  const env = {
    AEGISBPF_BPFFS: dirs.bpffs,
    AEGISBPF_STATE_DIR: dirs.stateDir,
    AEGISBPF_CONFIG_DIR: dirs.configDir,
    AEGISBPF_PROC_CMDLINE: `${dir}/cmdline`,
  };
  Deno.writeTextFileSync(`${dir}/cmdline`, "ro quiet\n");
  Deno.writeTextFileSync(
    `${dir}/p.yaml`,
    `apiVersion: aegisbpf.io/v1
kind: Policy
metadata: { name: private-state, version: 1 }
spec:
  mode: audit
  network:
    bind: { deny: [{ id: unused-port, port: ${PORT}, protocol: tcp }] }
`,
  );
  try {
    await fn({ ...dirs, dir, env });
  } finally {
    try {
      DataPlane.detach(bpffs.path);
    } finally {
      await bpffs.unmount();
      Deno.removeSync(dir, { recursive: true });
    }
  }
}

/**
 * Holds an exclusive flock on `lock` from another process (`flock --close LOCK sleep 60`: flock itself holds
 * it, its sleep child does not) until disposed; resolves once the lock is held.
 */
async function holdLock(lock: string): Promise<AsyncDisposable & { pid: number }> {
  const child = new Deno.Command("flock", { args: ["--exclusive", "--close", lock, "sleep", "60"] }).spawn();
  const release = async () => {
    const children = Deno.readTextFileSync(`/proc/${child.pid}/task/${child.pid}/children`);
    for (const pid of children.split(" ").filter((word) => word !== "")) Deno.kill(Number(pid), "SIGKILL");
    child.kill("SIGKILL");
    await child.status;
  };
  for (let i = 0; (await run("flock", ["--nonblock", lock, "true"])).code === 0; i++) {
    if (i === 100) {
      await release();
      throw new Error("flock never took the lock");
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return { pid: child.pid, [Symbol.asyncDispose]: release };
}

/** Every directory under `root` and its mode, every file and its mode, as `path 0NNN` lines. */
function modes(root: string, at = root): string[] {
  const lines = [`${at} 0${(Deno.lstatSync(at).mode! & 0o7777).toString(8)}`];
  for (const entry of Deno.readDirSync(at)) {
    const path = `${at}/${entry.name}`;
    if (entry.isDirectory) lines.push(...modes(root, path));
    else lines.push(`${path} 0${(Deno.lstatSync(path).mode! & 0o7777).toString(8)}`);
  }
  return lines;
}

rootTest(
  "[root] policy apply and run make a fresh state directory 0700 with 0600 files; uid 65534 cannot flock its lock",
  async () => {
    await withHost(async (host) => {
      const applied = await aegisbpf(["policy", "apply", `${host.dir}/p.yaml`], { env: host.env });
      assert.equal(applied.code, 0, applied.stderr);
      {
        await using agent = AgentRun.spawn(host, ["--audit", "--policy", `${host.dir}/p.yaml`], {
          env: host.env,
        });
        await agent.ready();
        agent.kill("SIGTERM");
        assert.equal((await agent.exit()).code, 0);
      }
      const found = modes(host.stateDir);
      for (const name of ["lock", "events.jsonl", "applied.json", "history/index.json"]) {
        assert.ok(found.includes(`${host.stateDir}/${name} 0600`), `${name} 0600 in:\n${found.join("\n")}`);
      }
      for (const line of found) {
        const [path, mode] = line.split(" ");
        assert.equal(mode, Deno.lstatSync(path!).isDirectory ? "0700" : "0600", line);
      }

      const lock = `${host.stateDir}/lock`;
      const flock = await run("setpriv", [...NOBODY, "flock", "--nonblock", "--shared", lock, "true"]);
      assert.notEqual(flock.code, 0, "uid 65534 took a flock on the state lock");
      assert.match(flock.stderr, /Permission denied/);
      // The control: the same user can flock a 0644 file in a 0755 directory, as before this change.
      // (In a directory of its own that uid 65534 may enter: the test's directory is 0700.)
      const open = Deno.makeTempDirSync({ prefix: "aegisbpf-private-open-" });
      try {
        Deno.chmodSync(open, 0o755);
        Deno.writeTextFileSync(`${open}/lock`, "", { mode: 0o644 });
        const control = await run("setpriv", [
          ...NOBODY,
          "flock",
          "--nonblock",
          "--shared",
          `${open}/lock`,
          "true",
        ]);
        assert.equal(control.code, 0, control.stderr);
      } finally {
        Deno.removeSync(open, { recursive: true });
      }
    });
  },
);

rootTest(
  "[root] policy apply gives up on a lock another process holds after --lock-timeout, naming its pid and command",
  async () => {
    await withHost(async (host) => {
      Deno.mkdirSync(host.stateDir, { mode: 0o700 });
      const lock = `${host.stateDir}/lock`;
      // A stale record naming another process: the kernel's holder is the one to name.
      Deno.writeTextFileSync(lock, '{"pid":1,"command":"policy apply"}\n', { mode: 0o600 });
      {
        await using holder = await holdLock(lock);
        const named = new RegExp(
          `the state lock ${lock} is held by pid ${holder.pid} \\((/usr)?(/bin/)?flock --exclusive --close ${lock} sleep 60\\)`,
          "i",
        );
        const started = performance.now();
        const gaveUp = await aegisbpf(["policy", "apply", `${host.dir}/p.yaml`, "--lock-timeout", "2s"], {
          env: host.env,
        });
        const waited = performance.now() - started;
        assert.equal(gaveUp.code, 1, gaveUp.stderr);
        assert.match(gaveUp.stderr, /Gave up after waiting 2s: /);
        assert.match(gaveUp.stderr, named);
        assert.match(gaveUp.stderr, /try again when it has finished, or wait longer with --lock-timeout/);
        assert.ok(waited >= 2000 && waited < 20_000, `waited ${waited.toFixed(0)} ms`);
        const noWait = await aegisbpf(["policy", "apply", `${host.dir}/p.yaml`, "--no-wait"], {
          env: host.env,
        });
        assert.equal(noWait.code, 1, noWait.stderr);
        assert.match(noWait.stderr, named);
      }
      const after = await aegisbpf(["policy", "apply", `${host.dir}/p.yaml`], { env: host.env });
      assert.equal(after.code, 0, after.stderr);
    });
  },
);

rootTest(
  "[root] SIGTERM ends the agent's wait for a held state lock at once: a SIGHUP reload waiting on it does not hold up the stop",
  async () => {
    await withHost(async (host) => {
      const policy = `${host.dir}/p.yaml`;
      await using agent = AgentRun.spawn(host, ["--audit", "--policy", policy, "--lock-timeout", "10m"], {
        env: host.env,
      });
      await agent.ready();
      // The signal listeners are installed just after the first policy.applied: a SIGHUP before them kills.
      await new Promise((resolve) => setTimeout(resolve, 1000));
      await using holder = await holdLock(`${host.stateDir}/lock`);
      agent.kill("SIGHUP");
      for (let i = 0; !agent.stderr.includes("waiting for the state lock"); i++) {
        assert.ok(i < 600, `the reload never waited for the lock; stderr: ${agent.stderr}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      assert.match(agent.stderr, new RegExp(`waiting for the state lock held by pid ${holder.pid} \\(`));
      const started = performance.now();
      agent.kill("SIGTERM");
      const { code } = await agent.exit();
      const stopped = performance.now() - started;
      assert.equal(code, 0, agent.stderr);
      assert.ok(stopped < 5000, `the stop took ${stopped.toFixed(0)} ms with the lock held`);
    });
  },
);
