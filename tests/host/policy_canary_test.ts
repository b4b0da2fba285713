/**
 * `policy apply --canary DUR --max-deny-rate N` against the real kernel, through the real command: a canary
 * whose deny rate is exceeded rolls itself back (and says so in history), one that stays quiet is kept,
 * Ctrl-C rolls back. The policies deny a connect to one TEST-NET-1 address and a bind of an unused port, at
 * the cgroup v2 root (the CLI's default), in a private bpffs.
 */
import assert from "node:assert/strict";
import { DataPlane } from "../../lib/kernel/dataplane.ts";
import { listHistory } from "../../lib/state/history.ts";
import { type Scratch, scratch } from "../cli/cli.ts";
import { TestBpffs } from "../support/bpffs.ts";
import { rootTest, run } from "../support/privileged.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const PROBE = new URL("../support/net_probe.ts", import.meta.url).pathname;
const PORT = 61853;
const TARGET = "192.0.2.77";

const policy = (version: number, mode: string, body: string) =>
  `apiVersion: aegisbpf.io/v1\nkind: Policy\nmetadata:\n  name: canary-test\n  version: ${version}\n` +
  `spec:\n  mode: ${mode}\n  network:\n${body}`;
const BASE = policy(1, "enforce", `    bind:\n      deny: [{ id: port, port: ${PORT}, protocol: tcp }]\n`);
const CANDIDATE = policy(2, "enforce", `    egress:\n      deny: [{ id: target, cidr: ${TARGET}/32 }]\n`);

async function withHost(fn: (s: Scratch, bpffs: string) => Promise<void>): Promise<void> {
  const bpffs = await TestBpffs.mount();
  try {
    await using s = await scratch();
    try {
      await fn(s, bpffs.path);
    } finally {
      DataPlane.detach(bpffs.path);
    }
  } finally {
    await bpffs.unmount();
  }
}

/** Starts aegisbpf in the background with the scratch's directories. */
function spawn(s: Scratch, bpffs: string, args: string[]): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", MAIN, ...args],
    cwd: s.dir,
    env: {
      AEGISBPF_BPFFS: bpffs,
      AEGISBPF_STATE_DIR: s.stateDir,
      AEGISBPF_CONFIG_DIR: s.configDir,
      NO_COLOR: "1",
    },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

async function finish(child: Deno.ChildProcess) {
  const { code, stdout, stderr } = await child.output();
  const text = new TextDecoder();
  return { code, stdout: text.decode(stdout), stderr: text.decode(stderr) };
}

const outcomes = (s: Scratch) => listHistory(s.stateDir).map((entry) => `${entry.seq}:${entry.outcome}`);

/** Waits until history shows the canary entry in force (the watch has begun). */
async function canaryStarted(s: Scratch): Promise<void> {
  for (let i = 0; i < 1200; i++) {
    if (outcomes(s).includes("2:canary")) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`the canary never started: history ${outcomes(s).join(" ")}`);
}

async function probe(...args: string[]): Promise<string> {
  const result = await run(Deno.execPath(), ["run", "--allow-net", PROBE, ...args]);
  return result.stdout.trim();
}

/** "EPERM" when a connect to TARGET is denied, else "not denied" (it may hang unanswered: 1 s at most). */
async function connectTarget(): Promise<string> {
  const result = await run("timeout", ["1", "bash", "-c", `exec 3<>/dev/tcp/${TARGET}/80`]);
  return /Operation not permitted/.test(result.stderr) ? "EPERM" : "not denied";
}

async function applyBase(s: Scratch, bpffs: string): Promise<void> {
  await Deno.writeTextFile(`${s.dir}/base.yaml`, BASE);
  await Deno.writeTextFile(`${s.dir}/candidate.yaml`, CANDIDATE);
  const base = await s.run(["policy", "apply", "base.yaml"], { env: { AEGISBPF_BPFFS: bpffs } });
  assert.equal(base.code, 0, base.stderr);
}

rootTest("[root] a canary whose deny rate is exceeded rolls itself back and records it", async () => {
  await withHost(async (s, bpffs) => {
    await applyBase(s, bpffs);
    const child = spawn(s, bpffs, [
      "policy",
      "apply",
      "candidate.yaml",
      "--canary",
      "120s",
      "--max-deny-rate",
      "2",
    ]);
    await canaryStarted(s);
    assert.equal(await connectTarget(), "EPERM", "the canary policy is in force");
    assert.equal(await probe("bind", "tcp", String(PORT)), "bound");
    // 400 denied connects from one shell (no fork each: a failed redirection of a builtin does not end it),
    // in well under 10 s even on a loaded machine: far above 2 per second.
    const loop = await run("bash", [
      "-c",
      `for i in $(seq 400); do { : 3<>/dev/tcp/${TARGET}/80; } 2>/dev/null; done; true`,
    ]);
    assert.equal(loop.code, 0);
    const started = Date.now();
    const result = await finish(child);
    assert.ok(
      Date.now() - started < 60_000,
      `rolled back long before the canary's 120 s were over: ${result.stderr}`,
    );
    assert.equal(result.code, 1, result.stderr);
    assert.match(
      result.stderr,
      /^aegisbpf: error: canary failed after \d+s: the deny rate reached [\d.]+\/s over \d+s \(limit 2\/s\); rolled back to history entry 1 \(policy canary-test version 1\), recorded as entry 3\n$/m,
    );
    assert.deepEqual(outcomes(s), ["1:applied", "2:canary-rolled-back", "3:rolled-back"]);
    assert.equal(await connectTarget(), "not denied", "the canary's deny is gone");
    assert.equal(await probe("bind", "tcp", String(PORT)), "EPERM", "the base policy is back");
  });
});

rootTest("[root] a quiet canary is kept; Ctrl-C during a canary rolls back", async () => {
  await withHost(async (s, bpffs) => {
    await applyBase(s, bpffs);
    const kept = await s.run([
      "policy",
      "apply",
      "candidate.yaml",
      "--canary",
      "11s",
      "--max-deny-rate",
      "5/s",
    ], { env: { AEGISBPF_BPFFS: bpffs } });
    assert.equal(kept.code, 0, kept.stderr);
    assert.match(
      kept.stdout,
      /^applied \(canary\) policy canary-test version 2 .*\ncanary passed: 0 denies in 11s; history entry 2 kept \(canary-kept\)\n$/,
    );
    // Progress while it watches: one line per 10 s, on stderr (stdout stays the summary).
    assert.match(
      kept.stderr,
      /^aegisbpf: info: canary: 10s of 11s: 0 denies, 0\.00\/s over the last 10s \(rolls back above 5\/s\)$/m,
    );
    assert.deepEqual(outcomes(s), ["1:applied", "2:canary-kept"]);
    assert.equal(await connectTarget(), "EPERM");

    await Deno.writeTextFile(`${s.dir}/base3.yaml`, BASE.replace("version: 1", "version: 3"));
    const child = spawn(s, bpffs, [
      "policy",
      "apply",
      "base3.yaml",
      "--canary",
      "60s",
      "--max-deny-rate",
      "100",
    ]);
    for (let i = 0; i < 1200 && !outcomes(s).includes("3:canary"); i++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.ok(outcomes(s).includes("3:canary"), "the second canary started");
    assert.equal(await connectTarget(), "not denied", "the base policy replaced the kept one");
    child.kill("SIGINT");
    const result = await finish(child);
    assert.equal(result.code, 1);
    assert.match(
      result.stderr,
      /canary failed after \d+s: the canary was interrupted; rolled back to history entry 2/,
    );
    assert.deepEqual(outcomes(s), ["1:applied", "2:canary-kept", "3:canary-rolled-back", "4:rolled-back"]);
    assert.equal(await connectTarget(), "EPERM", "the kept canary policy is in force again");
  });
});
