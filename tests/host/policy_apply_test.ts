/**
 * `policy apply`, `rollback` and history against the real kernel, through the real command. The socket
 * programs attach to the cgroup v2 root (the CLI's default), so the policies here deny only what nothing
 * on a host uses: binds of two unused high ports and connects to TEST-NET-1 (192.0.2.0/24). Every test has
 * its own bpffs mount and state directories, and detaches everything in `finally`.
 */
import assert from "node:assert/strict";
import { DataPlane } from "../../lib/kernel/dataplane.ts";
import { readApplied, writeApplyIntent } from "../../lib/state/apply_state.ts";
import { appendHistory, historyDir, listHistory } from "../../lib/state/history.ts";
import { acquireStateLock } from "../../lib/state/files.ts";
import { type Scratch, scratch } from "../cli/cli.ts";
import { TestBpffs } from "../support/bpffs.ts";
import { rootTest } from "../support/privileged.ts";

const PROBE = new URL("../support/net_probe.ts", import.meta.url).pathname;
/** Unused high ports, away from the ephemeral range (32768-60999 on Linux). */
const PORT_A = 61847;
const PORT_B = 61848;

const policy = (version: number, body: string) =>
  `apiVersion: aegisbpf.io/v1
kind: Policy
metadata:
  name: host-test
  version: ${version}
spec:
  mode: enforce
  network:
${body}`;

/** Denies binding PORT_A. */
const A = (version = 1) =>
  policy(version, `    bind:\n      deny: [{ id: port-a, port: ${PORT_A}, protocol: tcp }]\n`);
/** Denies binding PORT_B and connecting to 192.0.2.1. */
const B = (version = 2) =>
  policy(
    version,
    `    bind:\n      deny: [{ id: port-b, port: ${PORT_B}, protocol: tcp }]\n` +
      `    egress:\n      deny: [{ id: testnet, cidr: 192.0.2.1/32 }]\n`,
  );

type Env = { s: Scratch; bpffs: string; run: (args: string[]) => ReturnType<Scratch["run"]> };

async function withHost(fn: (env: Env) => Promise<void>): Promise<void> {
  const bpffs = await TestBpffs.mount();
  try {
    await using s = await scratch();
    const run = (args: string[]) => s.run(args, { env: { AEGISBPF_BPFFS: bpffs.path } });
    try {
      await fn({ s, bpffs: bpffs.path, run });
    } finally {
      DataPlane.detach(bpffs.path);
    }
  } finally {
    await bpffs.unmount();
  }
}

async function probe(...args: string[]): Promise<string> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net", PROBE, ...args],
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(5000),
  });
  const { stdout } = await child.output();
  return new TextDecoder().decode(stdout).trim();
}

const bind = (port: number) => probe("bind", "tcp", String(port));

async function write(s: Scratch, name: string, text: string): Promise<string> {
  await Deno.writeTextFile(`${s.dir}/${name}`, text);
  return name;
}

function outcomes(s: Scratch): string[] {
  return listHistory(s.stateDir).map((entry) => `${entry.seq}:${entry.outcome}`);
}

rootTest(
  "[root] policy apply enforces, a second apply replaces it, rollback restores the first",
  async () => {
    await withHost(async ({ s, run }) => {
      const first = await run(["policy", "apply", await write(s, "a.yaml", A())]);
      assert.equal(first.code, 0, first.stderr);
      assert.match(
        first.stdout,
        /^applied policy host-test version 1 \(sha256 [0-9a-f]{64}\) as history entry 1: mode enforce, generation \d; rules: bind 1\n$/,
      );
      assert.equal(await bind(PORT_A), "EPERM");
      assert.equal(await bind(PORT_B), "bound");

      const second = await run(["policy", "apply", await write(s, "b.yaml", B())]);
      assert.equal(second.code, 0, second.stderr);
      assert.equal(await bind(PORT_A), "bound");
      assert.equal(await bind(PORT_B), "EPERM");
      assert.equal(await probe("tcp", "192.0.2.1", "80"), "EPERM");

      const rollback = await run(["policy", "rollback"]);
      assert.equal(rollback.code, 0, rollback.stderr);
      assert.match(
        rollback.stdout,
        /^rolled back to entry 1: policy host-test version 1 .* as history entry 3: /,
      );
      assert.equal(await bind(PORT_A), "EPERM");
      assert.equal(await bind(PORT_B), "bound");
      assert.deepEqual(outcomes(s), ["1:applied", "2:applied", "3:rolled-back"]);

      const show = await run(["policy", "show", "--json"]);
      assert.equal(JSON.parse(show.stdout).applied.seq, 3);
      assert.equal(JSON.parse(show.stdout).policy, A());
      const explain = await run([
        "explain",
        JSON.stringify({ type: "net.bind", net: { protocol: "tcp", sport: PORT_A } }),
      ]);
      assert.match(
        explain.stdout,
        /^net\.bind: deny by rule port-a under applied policy host-test version 1/,
      );
    });
  },
);

rootTest(
  "[root] policy apply of a bundle raises the counter; a replay exits 3, a tampered one 2",
  async () => {
    await withHost(async ({ s, run }) => {
      assert.equal((await run(["keys", "gen", "--out", "release"])).code, 0);
      assert.equal((await run(["keys", "add", "release.pub"])).code, 0);
      for (const [name, text] of [["v1", A(1)], ["v2", B(2)]] as const) {
        await write(s, `${name}.yaml`, text);
        const sign = await run([
          "policy",
          "sign",
          `${name}.yaml`,
          "--key",
          "release.key",
          "--out",
          `${name}.bundle`,
        ]);
        assert.equal(sign.code, 0, sign.stderr);
      }
      const v2 = await run(["policy", "apply", "v2.bundle", "--require-signature"]);
      assert.equal(v2.code, 0, v2.stderr);
      assert.equal((await Deno.readTextFile(`${s.stateDir}/version_counter`)).trim(), "2");
      assert.equal(await bind(PORT_B), "EPERM");

      const replay = await run(["policy", "apply", "v1.bundle"]);
      assert.equal(replay.code, 3);
      assert.match(replay.stderr, /anti-rollback counter 2/);

      const bundle = JSON.parse(await Deno.readTextFile(`${s.dir}/v2.bundle`));
      const payload = atob(bundle.payload).replace("version: 2", "version: 3");
      await write(s, "tampered.bundle", JSON.stringify({ ...bundle, payload: btoa(payload) }));
      const tampered = await run(["policy", "apply", "tampered.bundle"]);
      assert.equal(tampered.code, 2);
      assert.match(tampered.stderr, /Bad signature in bundle tampered\.bundle/);

      assert.equal(await bind(PORT_B), "EPERM", "refused bundles leave the kernel as it was");
      assert.deepEqual(outcomes(s), ["1:applied"], "a refused bundle is never recorded");
    });
  },
);

rootTest(
  "[root] two concurrent applies both succeed, one after the other, and history agrees with the kernel",
  async () => {
    await withHost(async ({ s, run }) => {
      const [a, b] = await Promise.all([
        run(["policy", "apply", await write(s, "a.yaml", A())]),
        run(["policy", "apply", await write(s, "b.yaml", B())]),
      ]);
      assert.equal(a.code, 0, a.stderr);
      assert.equal(b.code, 0, b.stderr);
      const entries = listHistory(s.stateDir);
      assert.deepEqual(entries.map((entry) => entry.outcome), ["applied", "applied"]);
      const last = entries.at(-1)!;
      const applied = JSON.parse(await Deno.readTextFile(`${s.stateDir}/applied.json`));
      assert.equal(applied.seq, last.seq);
      const lastIsB = last.source === "b.yaml";
      assert.equal(await bind(PORT_A), lastIsB ? "bound" : "EPERM");
      assert.equal(await bind(PORT_B), lastIsB ? "EPERM" : "bound");
    });
  },
);

rootTest(
  "[root] the next apply settles a pending entry a kill -9 left, before or after the flip",
  async () => {
    await withHost(async ({ s, run }) => {
      assert.equal((await run(["policy", "apply", await write(s, "a.yaml", A())])).code, 0);
      const generation = JSON.parse(await Deno.readTextFile(`${s.stateDir}/applied.json`)).generation;
      // Killed after recording the entry and the intent, before the flip: the kernel still holds A.
      const interrupted = {
        uid: 0,
        source: "b.yaml",
        kind: "policy",
        name: "host-test",
        version: 2,
        sha256: "0".repeat(64),
        outcome: "pending",
        content: B(),
      } as const;
      const pending = appendHistory(s.stateDir, interrupted);
      writeApplyIntent(s.stateDir, {
        seq: pending.seq,
        fromGeneration: generation,
        outcome: "applied",
        time: new Date().toISOString(),
      });
      const history = await run(["policy", "history"]);
      assert.match(history.stdout, /\n2\s+\S+\s+pending\s/, "read-only commands show it as it is");
      const next = await run(["policy", "apply", await write(s, "a2.yaml", A(3))]);
      assert.equal(next.code, 0, next.stderr);
      assert.deepEqual(outcomes(s), ["1:applied", "2:failed", "3:applied"]);

      // Killed after the flip, before the outcome was written: the kernel holds the pending policy.
      const flipped = appendHistory(s.stateDir, interrupted);
      const before = JSON.parse(await Deno.readTextFile(`${s.stateDir}/applied.json`)).generation;
      writeApplyIntent(s.stateDir, {
        seq: flipped.seq,
        fromGeneration: before ^ 1,
        outcome: "applied",
        time: new Date().toISOString(),
      });
      const rollback = await run(["policy", "rollback", "--to", "3"]);
      assert.equal(rollback.code, 0, rollback.stderr);
      assert.deepEqual(outcomes(s), ["1:applied", "2:failed", "3:applied", "4:applied", "5:rolled-back"]);
    });
  },
);

rootTest(
  "[root] policy rollback reads and checks the entry once, installs the CIDR rules it wrote ahead, and writes no content again",
  async () => {
    await withHost(async ({ s, run }) => {
      assert.equal((await run(["policy", "apply", await write(s, "b.yaml", B())])).code, 0);
      assert.equal((await run(["policy", "apply", await write(s, "a.yaml", A(3))])).code, 0);
      assert.notEqual(await probe("tcp", "192.0.2.1", "80"), "EPERM");
      const content = `${historyDir(s.stateDir)}/content`;
      const stored = () =>
        [...Deno.readDirSync(content)].map(({ name }) => `${name}:${Deno.statSync(`${content}/${name}`).ino}`)
          .sort();
      const before = stored();
      const rollback = await run(["--log-level", "debug", "policy", "rollback"]);
      assert.equal(rollback.code, 0, rollback.stderr);
      const phases = [...rollback.stderr.matchAll(/^aegisbpf: debug: phase (.+): [\d.]+ ms$/gm)].map((m) =>
        m[1]
      );
      assert.deepEqual(phases.filter((name) => name === "parse"), ["parse"], rollback.stderr);
      assert.ok(phases.includes("write ahead") && phases.includes("kernel/wait net_rules"), rollback.stderr);
      assert.ok(
        !phases.includes("kernel/stage/write net_rules"),
        "the map written ahead is the one installed",
      );
      assert.equal(await probe("tcp", "192.0.2.1", "80"), "EPERM");
      assert.equal(await bind(PORT_B), "EPERM");
      assert.deepEqual(stored(), before, "B's stored text is kept as it is");
      assert.deepEqual(outcomes(s), ["1:applied", "2:applied", "3:rolled-back"]);
    });
  },
);

rootTest(
  "[root] an apply refused after its CIDR rules were written ahead (a deny path missing here: exit 2) leaves the policy in force as it was",
  async () => {
    await withHost(async ({ s, run }) => {
      assert.equal((await run(["policy", "apply", await write(s, "a.yaml", A())])).code, 0);
      // B's egress deny is encoded and written into a map of its own once the lock-out check passes; the
      // missing path is found after that, when the apply resolves its names.
      const missing = `${s.dir}/no-such-file`;
      const refused = await run([
        "policy",
        "apply",
        await write(s, "b.yaml", B(3) + `  files:\n    deny: [{ id: gone, path: ${missing} }]\n`),
      ]);
      assert.equal(refused.code, 2, refused.stderr);
      assert.match(refused.stderr, /no-such-file/);
      assert.deepEqual(outcomes(s), ["1:applied"]);
      assert.equal(await bind(PORT_A), "EPERM");
      assert.equal(await bind(PORT_B), "bound");
      assert.notEqual(await probe("tcp", "192.0.2.1", "80"), "EPERM");
      // The same policy without the missing path applies, and its deny is the one in force.
      const applied = await run(["policy", "apply", await write(s, "b2.yaml", B(3))]);
      assert.equal(applied.code, 0, applied.stderr);
      assert.equal(await probe("tcp", "192.0.2.1", "80"), "EPERM");
      assert.equal(await bind(PORT_A), "bound");
    });
  },
);

rootTest(
  "[root] policy apply killed with SIGKILL at any moment leaves state the next apply settles",
  async () => {
    await withHost(async ({ s, bpffs, run }) => {
      assert.equal((await run(["policy", "apply", await write(s, "a.yaml", A())])).code, 0);
      await write(s, "b.yaml", B());
      // From before the command reads anything to after it has finished (an apply takes about 0.3 s).
      for (const delayMs of [50, 150, 200, 250, 300, 350, 400, 600]) {
        const child = new Deno.Command(Deno.execPath(), {
          args: [
            "run",
            "--allow-all",
            new URL("../../main.ts", import.meta.url).pathname,
            "policy",
            "apply",
            "b.yaml",
          ],
          cwd: s.dir,
          env: {
            AEGISBPF_STATE_DIR: s.stateDir,
            AEGISBPF_CONFIG_DIR: s.configDir,
            AEGISBPF_BPFFS: bpffs,
          },
          stdout: "null",
          stderr: "null",
        }).spawn();
        await new Promise((resolve) => setTimeout(resolve, delayMs));
        try {
          child.kill("SIGKILL");
        } catch {
          // it had finished already
        }
        await child.status;
        const next = await run(["policy", "apply", "a.yaml"]);
        assert.equal(next.code, 0, next.stderr);
        const entries = listHistory(s.stateDir);
        assert.ok(entries.every((entry) => entry.outcome !== "pending"), JSON.stringify(entries));
        // The entry in force is an applied one. A kill after the killed apply wrote its pending entry but
        // before its flip leaves A in force: that entry is settled as failed, and applying A again (already
        // in force) adds none.
        const live = entries.filter((entry) => entry.outcome !== "failed").at(-1);
        assert.equal(live?.outcome, "applied");
        assert.equal(readApplied(s.stateDir)?.seq, live?.seq, JSON.stringify(entries));
        assert.equal(await bind(PORT_A), "EPERM");
        assert.equal(await bind(PORT_B), "bound");
      }
    });
  },
);

rootTest(
  "[root] policy apply waits for the state lock and says so; --no-wait fails at once naming the holder",
  async () => {
    await withHost(async ({ s, run }) => {
      await write(s, "a.yaml", A());
      let lock: Disposable | undefined = await acquireStateLock(s.stateDir, { wait: false, command: "test" });
      try {
        const refused = await run(["policy", "apply", "a.yaml", "--no-wait"]);
        assert.equal(refused.code, 1);
        assert.match(refused.stderr, new RegExp(`state lock .*lock is held by pid ${Deno.pid} \\(test\\)`));
        const waiting = run(["policy", "apply", "a.yaml"]);
        await new Promise((resolve) => setTimeout(resolve, 1500));
        lock[Symbol.dispose]();
        lock = undefined;
        const waited = await waiting;
        assert.equal(waited.code, 0, waited.stderr);
        assert.match(
          waited.stderr,
          new RegExp(`waiting for the state lock held by pid ${Deno.pid} \\(test\\)`),
        );
      } finally {
        lock?.[Symbol.dispose]();
      }
      assert.deepEqual(outcomes(s), ["1:applied"]);
    });
  },
);

rootTest(
  "[root] an enforce policy with an area this kernel cannot enforce is refused (3) unless --allow-partial",
  async () => {
    await withHost(async ({ s, run }) => {
      const target = await Deno.makeTempFile({ prefix: "aegisbpf-apply-" });
      try {
        const text = A().replace(
          "  network:",
          `  files:\n    deny: [{ id: target, path: ${target} }]\n  network:`,
        );
        const strict = await run(["policy", "apply", await write(s, "f.yaml", text)]);
        if (strict.code === 0) return; // BPF-LSM enforces file rules on this kernel: nothing is partial
        assert.equal(strict.code, 3, strict.stderr);
        assert.match(
          strict.stderr,
          /cannot enforce every area the policy uses: file is audit-only .*--allow-partial/,
        );
        assert.deepEqual(outcomes(s), [], "a refused apply records nothing");
        const partial = await run(["policy", "apply", "f.yaml", "--allow-partial"]);
        assert.equal(partial.code, 0, partial.stderr);
        assert.match(partial.stderr, /those areas run audit-only \(--allow-partial\)/);
        assert.equal(await bind(PORT_A), "EPERM", "the areas this kernel can enforce are enforced");
      } finally {
        await Deno.remove(target);
      }
    });
  },
);
