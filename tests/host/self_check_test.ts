/**
 * Self-checking policies (spec.checks) against the real kernel, through the real command: a policy whose
 * mustWork probe fails under it is put back at once (policy apply, apply --canary, rollback), the old rules
 * deny again and history says why; a passing one stays; a probe that hangs fails after its timeout and is
 * killed; a kill -9 of the command between the flip and the end of its probes leaves a pending check that
 * health reports and the next apply or rollback finishes. The probes connect to a listener of this test on
 * loopback and to one TEST-NET-1 address; the policies apply at the cgroup v2 root (the CLI's default), in a
 * private bpffs.
 */
import assert from "node:assert/strict";
import { DataPlane } from "../../lib/kernel/dataplane.ts";
import { listHistory } from "../../lib/state/history.ts";
import { type Scratch, scratch, spawnAegisbpf } from "../cli/cli.ts";
import { TestBpffs } from "../support/bpffs.ts";
import { rootTest, run } from "../support/privileged.ts";
import { cgroup2Root } from "../../lib/kernel/cgroup.ts";

const TARGET = "192.0.2.78";

const policy = (version: number, body: string, checks = "") =>
  `apiVersion: aegisbpf.io/v1\nkind: Policy\nmetadata:\n  name: check-test\n  version: ${version}\n` +
  `spec:\n  mode: enforce\n  network:\n    egress:\n      deny:\n${body}${checks}`;
const denyTarget = `        - { id: target, cidr: ${TARGET}/32 }\n`;
const denyListener = (port: number) =>
  `        - { id: listener, cidr: 127.0.0.1/32, port: ${port}, protocol: tcp }\n`;

async function withHost(fn: (s: Scratch, bpffs: string, port: number) => Promise<void>): Promise<void> {
  const bpffs = await TestBpffs.mount();
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepting = (async () => {
    for await (const conn of listener) conn.close();
  })().catch(() => {});
  try {
    await using s = await scratch();
    try {
      await fn(s, bpffs.path, (listener.addr as Deno.NetAddr).port);
    } finally {
      DataPlane.detach(bpffs.path);
    }
  } finally {
    listener.close();
    await accepting;
    await bpffs.unmount();
  }
}

const outcomes = (s: Scratch) => listHistory(s.stateDir).map((entry) => `${entry.seq}:${entry.outcome}`);

/** "EPERM" when a TCP connect from this test's cgroup is denied, "connected", or bash's error. */
async function connect(host: string, port: number): Promise<string> {
  const result = await run("timeout", [
    "2",
    "bash",
    "-c",
    `exec 3<>/dev/tcp/${host}/${port} && echo connected`,
  ]);
  if (result.code === 0) return result.stdout.trim();
  return /Operation not permitted/.test(result.stderr)
    ? "EPERM"
    : result.stderr.trim() || `exit ${result.code}`;
}

async function write(s: Scratch, name: string, text: string): Promise<void> {
  await Deno.writeTextFile(`${s.dir}/${name}`, text);
}

/** The policy in force before each case: denies TARGET, no checks. */
async function applyBase(s: Scratch, bpffs: string): Promise<void> {
  await write(s, "base.yaml", policy(1, denyTarget));
  const base = await s.run(["policy", "apply", "base.yaml"], { env: { AEGISBPF_BPFFS: bpffs } });
  assert.equal(base.code, 0, base.stderr);
  assert.equal(await connect(TARGET, 80), "EPERM", "the base policy denies its target");
}

function events(s: Scratch): Record<string, unknown>[] {
  try {
    return Deno.readTextFileSync(`${s.stateDir}/events.jsonl`).trim().split("\n").map((line) =>
      JSON.parse(line)
    );
  } catch {
    return [];
  }
}

/** The probe cgroups under the cgroup v2 root: none is left once a command ended. */
function probeCgroups(): string[] {
  return [...Deno.readDirSync(cgroup2Root())].map((entry) => entry.name)
    .filter((name) => name.startsWith("aegisbpf-check-"));
}

rootTest("[root] a policy whose mustWork probe fails under it is rolled back at once, exit 3", async () => {
  await withHost(async (s, bpffs, port) => {
    await applyBase(s, bpffs);
    const checks = `  checks:\n    implicit: false\n    mustWork:\n      - connect: 127.0.0.1:${port}\n`;
    await write(s, "bad.yaml", policy(2, denyListener(port), checks));
    const bad = await s.run(["policy", "apply", "bad.yaml"], { env: { AEGISBPF_BPFFS: bpffs } });
    assert.equal(bad.code, 3, bad.stderr);
    assert.match(
      bad.stderr,
      new RegExp(
        `self-check: FAIL mustWork connect 127\\.0\\.0\\.1:${port}/tcp: denied \\(refused: /dev/tcp/127\\.0\\.0\\.1/${port}: Operation not permitted\\)`,
      ),
    );
    assert.match(
      bad.stderr,
      new RegExp(
        `error: self-check failed: mustWork connect 127\\.0\\.0\\.1:${port}/tcp: expected it to work, got ` +
          `denied .*; rolled back to history entry 1 \\(policy check-test version 1\\), recorded as entry 3`,
      ),
    );
    assert.deepEqual(outcomes(s), ["1:applied", "2:check-failed", "3:rolled-back"]);
    const note = listHistory(s.stateDir)[1]!.note ?? "";
    assert.match(note, new RegExp(`^self-check failed: mustWork connect 127\\.0\\.0\\.1:${port}/tcp`));
    // The old rules deny again; the bad policy's deny is gone.
    assert.equal(await connect(TARGET, 80), "EPERM");
    assert.equal(await connect("127.0.0.1", port), "connected");
    const failed = events(s).filter((event) => event.type === "policy.check_failed");
    assert.equal(failed.length, 1);
    assert.equal(failed[0]!.history, 2);
    assert.equal(failed[0]!.rollback, 3);
    assert.equal(failed[0]!.got, "denied");
    const history = await s.run(["policy", "history"], { env: { AEGISBPF_BPFFS: bpffs } });
    assert.match(history.stdout, /^note 2: self-check failed: mustWork connect/m);
    assert.deepEqual(probeCgroups(), []);
  });
});

rootTest("[root] a passing self-check keeps the policy; a mustDeny probe passes only on EPERM", async () => {
  await withHost(async (s, bpffs, port) => {
    await applyBase(s, bpffs);
    // With the implicit probes: this host's SSH port (when something listens there) and aegisbpf health.
    const checks = `  checks:\n    mustWork:\n      - connect: 127.0.0.1:${port}\n` +
      `    mustDeny:\n      - connect: ${TARGET}:80\n      - { connect: "${TARGET}:53", protocol: udp }\n`;
    await write(s, "good.yaml", policy(2, denyTarget, checks));
    // --dry-run says in advance what each probe the policy writes will get.
    const dry = await s.run(["policy", "apply", "good.yaml", "--dry-run"], {
      env: { AEGISBPF_BPFFS: bpffs },
    });
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(
      dry.stdout,
      /^self-check \(predicted\) pass mustDeny connect 192\.0\.2\.78:80\/tcp: denied by rule target$/m,
    );
    assert.match(
      dry.stdout,
      /^self-check \(predicted\) pass mustWork connect 127\.0\.0\.1:\d+\/tcp: worked$/m,
    );
    assert.deepEqual(outcomes(s), ["1:applied"], "a dry run records nothing");
    const good = await s.run(["policy", "apply", "good.yaml"], { env: { AEGISBPF_BPFFS: bpffs } });
    assert.equal(good.code, 0, good.stderr);
    assert.match(
      good.stdout,
      new RegExp(`^self-check: pass mustWork connect 127\\.0\\.0\\.1:${port}/tcp: worked`, "m"),
    );
    assert.match(
      good.stdout,
      new RegExp(`^self-check: pass mustDeny connect ${TARGET.replaceAll(".", "\\.")}:80/tcp: denied`, "m"),
    );
    assert.match(good.stdout, /^self-check: pass mustDeny connect .*:53\/udp: denied/m);
    assert.match(good.stdout, /^self-check: pass mustWork aegisbpf health: worked \(ran, exit 0\)$/m);
    assert.match(
      good.stdout,
      /^self-check: (pass mustWork connect 127\.0\.0\.1:\d+\/tcp|implicit SSH probe skipped)/m,
    );
    assert.deepEqual(outcomes(s), ["1:applied", "2:applied"]);

    // A mustDeny probe that gets a network answer (nothing listens: connection refused) is not a denial.
    const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const closedPort = (closed.addr as Deno.NetAddr).port;
    closed.close();
    const refused =
      `  checks:\n    implicit: false\n    mustDeny:\n      - connect: 127.0.0.1:${closedPort}\n`;
    await write(s, "refused.yaml", policy(3, denyTarget, refused));
    const result = await s.run(["policy", "apply", "refused.yaml", "--json"], {
      env: { AEGISBPF_BPFFS: bpffs },
    });
    assert.equal(result.code, 3, result.stderr);
    assert.match(
      result.stderr,
      /expected it to be denied, got failed \(.*Connection refused \(a network answer/,
    );
    assert.deepEqual(outcomes(s), ["1:applied", "2:applied", "3:check-failed", "4:rolled-back"]);
    assert.equal(listHistory(s.stateDir)[3]!.restoredSeq, 2);

    // `as`: the probe runs as that uid, with no supplementary groups: a root-only file does not open.
    const secret = `${s.dir}/secret`;
    Deno.writeTextFileSync(secret, "x", { mode: 0o600 });
    Deno.chmodSync(secret, 0o600);
    const asNobody =
      `  checks:\n    implicit: false\n    mustWork:\n      - { open: ${secret}, as: { uid: 65534 } }\n`;
    await write(s, "nobody.yaml", policy(5, denyTarget, asNobody));
    const nobody = await s.run(["policy", "apply", "nobody.yaml"], { env: { AEGISBPF_BPFFS: bpffs } });
    assert.equal(nobody.code, 3, nobody.stderr);
    assert.match(
      nobody.stderr,
      /mustWork open .*secret as 65534:65534: expected it to work, got denied \(refused: .*Permission denied\)/,
    );
  });
});

rootTest(
  "[root] a probe that hangs fails after its timeout and is killed; canary and rollback check too",
  async () => {
    await withHost(async (s, bpffs, port) => {
      await applyBase(s, bpffs);
      const marker = `/tmp/aegisbpf-check-hang-${Deno.pid}`;
      const hang = `  checks:\n    implicit: false\n    mustWork:\n` +
        `      - { exec: /bin/sh, args: [-c, "echo $$ > ${marker}; exec sleep 60"], timeout: 1s }\n`;
      await write(s, "hang.yaml", policy(2, denyTarget, hang));
      try {
        const hung = await s.run(["policy", "apply", "hang.yaml"], { env: { AEGISBPF_BPFFS: bpffs } });
        assert.equal(hung.code, 3, hung.stderr);
        assert.match(
          hung.stderr,
          /mustWork exec \/bin\/sh .*: expected it to work, got timeout \(no answer within 1s; killed\)/,
        );
        const pid = Number(Deno.readTextFileSync(marker).trim());
        assert.ok(pid > 0);
        assert.throws(() => Deno.statSync(`/proc/${pid}`), "the hung probe was killed");
      } finally {
        try {
          Deno.removeSync(marker);
        } catch {
          // Never written.
        }
      }
      assert.deepEqual(outcomes(s), ["1:applied", "2:check-failed", "3:rolled-back"]);

      // --canary: the probes run before the watch; a failure rolls back at once, exit 3.
      const checks = `  checks:\n    implicit: false\n    mustWork:\n      - connect: 127.0.0.1:${port}\n`;
      await write(s, "bad.yaml", policy(4, denyListener(port), checks));
      const canary = await s.run(
        ["policy", "apply", "bad.yaml", "--canary", "60s", "--max-deny-rate", "100"],
        {
          env: { AEGISBPF_BPFFS: bpffs },
        },
      );
      assert.equal(canary.code, 3, canary.stderr);
      assert.match(canary.stderr, /self-check failed: mustWork connect/);
      assert.deepEqual(outcomes(s).slice(3), ["4:check-failed", "5:rolled-back"]);
      assert.equal(await connect("127.0.0.1", port), "connected");
      assert.equal(await connect(TARGET, 80), "EPERM");

      // policy rollback --to an entry whose checks fail under it: the policy in force before comes back.
      const back = await s.run(["policy", "rollback", "--to", "4"], { env: { AEGISBPF_BPFFS: bpffs } });
      assert.equal(back.code, 3, back.stderr);
      assert.match(back.stderr, /self-check failed: mustWork connect .*; rolled back to history entry 5/);
      assert.deepEqual(outcomes(s).slice(5), ["6:check-failed", "7:rolled-back"]);
      assert.equal(await connect("127.0.0.1", port), "connected");
      assert.deepEqual(probeCgroups(), []);
    });
  },
);

rootTest(
  "[root] kill -9 between the flip and the probes: health says pending, the next command finishes the check",
  async () => {
    await withHost(async (s, bpffs) => {
      await applyBase(s, bpffs);
      const hang = `/tmp/aegisbpf-check-hold-${Deno.pid}`;
      const ok = `/tmp/aegisbpf-check-ok-${Deno.pid}`;
      Deno.writeTextFileSync(hang, "");
      const checks = `  checks:\n    implicit: false\n    mustWork:\n` +
        `      - { exec: /bin/sh, args: [-c, "if [ -e ${hang} ]; then sleep 60; fi; [ -e ${ok} ]"], timeout: 30s }\n`;
      await write(s, "held.yaml", policy(2, denyTarget, checks));
      try {
        const env = {
          AEGISBPF_BPFFS: bpffs,
          AEGISBPF_STATE_DIR: s.stateDir,
          AEGISBPF_CONFIG_DIR: s.configDir,
        };
        const child = spawnAegisbpf(["policy", "apply", "held.yaml"], { env, cwd: s.dir });
        // The flip happened and the probe runs: history has the entry in force, the marker names it.
        for (let i = 0; i < 1200 && !outcomes(s).includes("2:applied"); i++) {
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
        assert.ok(outcomes(s).includes("2:applied"), outcomes(s).join(" "));
        // Two commands at once: the probes run under the state lock, so another change waits (or, with
        // --no-wait, fails naming the holder) rather than land between the flip and the verdict.
        const second = await s.run(["policy", "rollback", "--no-wait"], { env: { AEGISBPF_BPFFS: bpffs } });
        assert.equal(second.code, 1, second.stderr);
        assert.match(second.stderr, /state lock .*\(policy apply\)/);
        assert.deepEqual(outcomes(s), ["1:applied", "2:applied"]);
        child.kill("SIGKILL");
        await child.output();
        const health = await s.run(["health"], { env: { AEGISBPF_BPFFS: bpffs } });
        assert.match(
          health.stdout + health.stderr,
          /self-check pending: policy check-test version 2 .*killed/,
        );
        Deno.removeSync(hang);
        // The next rollback finishes the check (the probe fails: no OK file) and puts entry 1 back, then does
        // its own work: nothing more to roll back to.
        const back = await s.run(["policy", "rollback"], { env: { AEGISBPF_BPFFS: bpffs } });
        assert.match(
          back.stderr,
          /self-check failed \(finished after policy apply, pid \d+, was killed\): mustWork exec/,
        );
        assert.deepEqual(outcomes(s).slice(0, 3), ["1:applied", "2:check-failed", "3:rolled-back"]);
        const after = await s.run(["health"], { env: { AEGISBPF_BPFFS: bpffs } });
        assert.doesNotMatch(after.stdout + after.stderr, /self-check pending/);
        assert.equal(await connect(TARGET, 80), "EPERM");

        // The same kill with a check that passes when finished: the policy stays.
        Deno.writeTextFileSync(hang, "");
        await write(s, "held3.yaml", policy(3, denyTarget, checks));
        const again = spawnAegisbpf(["policy", "apply", "held3.yaml"], { env, cwd: s.dir });
        for (
          let i = 0;
          i < 1200 && !outcomes(s).some((o) => /^\d+:applied$/.test(o) && o !== "1:applied");
          i++
        ) {
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
        again.kill("SIGKILL");
        await again.output();
        Deno.removeSync(hang);
        Deno.writeTextFileSync(ok, "");
        const apply = await s.run(["policy", "apply", "held3.yaml"], { env: { AEGISBPF_BPFFS: bpffs } });
        assert.equal(apply.code, 0, apply.stderr);
        assert.match(apply.stderr, /self-check left pending by policy apply .* passed now/);
        assert.match(apply.stdout, /^unchanged: policy check-test version 3/m);
      } finally {
        for (const path of [hang, ok]) {
          try {
            Deno.removeSync(path);
          } catch {
            // Removed already.
          }
        }
      }
      assert.deepEqual(probeCgroups(), []);
    });
  },
);
