/**
 * `policy test` on the host, where the socket programs load: egress and bind cases pass, a wrong
 * expectation fails with a diff, one probe child serves an identity's cases (a fresh one after a probe
 * that did not finish in time), a bad test file is exit 2 with FILE:LINE:COL, the live policy (applied to a
 * test bpffs and cgroup) keeps its generation and counters across a run, SIGTERM removes everything, and
 * what a killed run left is removed by the next one. The starter library's test files pass here (the cases
 * of files and programs are skipped: no BPF-LSM on this host).
 */
import assert from "node:assert/strict";
import { aegisbpf, spawnAegisbpf } from "../cli/cli.ts";
import { silentTcpPort } from "../support/listeners.ts";
import { withTempDir } from "../packaging/unit_file.ts";
import { connect, NET, policy, TCP_PORT, withHost, writePolicy } from "../support/agent_host.ts";
import { must, rootTest } from "../support/privileged.ts";
import { DataPlane } from "../../lib/kernel/dataplane.ts";
import { cgroup2Root } from "../../lib/kernel/cgroup.ts";
import { TEST_PLANE_PREFIX } from "../../lib/kernel/test_plane.ts";
import { ProbeChildren } from "../../lib/ops/policy_test.ts";
import { PROBE_TIMEOUT_MS } from "../../lib/ops/probe_child.ts";

const CANDIDATE = `apiVersion: aegisbpf.io/v1
kind: Policy
metadata: { name: candidate, version: 3 }
spec:
  mode: enforce
  network:
    egress:
      deny:
        - { id: lo2, cidr: 127.0.0.2/32, ports: [${TCP_PORT}], protocol: tcp, tags: [T1105] }
        - { id: lo3-udp, cidr: 127.0.0.3/32, protocol: udp }
    bind: { deny: [{ id: no-bind, port: ${TCP_PORT + 1}, protocol: tcp }] }
`;

const CASES = `policy: candidate.yaml
cases:
  - name: the denied address
    connect: 127.0.0.2:${TCP_PORT}
    expect: deny
    event: { type: net.connect, rule: lo2, tags: [T1105], net: { daddr: 127.0.0.2 } }
  - name: another port of it
    connect: 127.0.0.2:${TCP_PORT + 2}
    expect: allow
  - name: udp to the denied address
    connect: 127.0.0.3:53
    protocol: udp
    expect: deny
    event: { rule: lo3-udp }
  - name: the denied bind, as nobody
    bind: ${TCP_PORT + 1}
    as: { uid: 65534, gid: 65534 }
    expect: deny
    event: { type: net.bind, rule: no-bind, process: { uid: 65534 } }
  - name: another bind
    bind: ${TCP_PORT + 2}
    protocol: udp
    expect: allow
`;

/** The test planes (bpffs directories under /tmp, cgroups) that exist now. */
function planesLeft(): string[] {
  const names = (dir: string) =>
    [...Deno.readDirSync(dir)].map((e) => e.name).filter((name) => name.startsWith(TEST_PLANE_PREFIX));
  const mounts = Deno.readTextFileSync("/proc/mounts").split("\n").filter((line) =>
    line.includes(TEST_PLANE_PREFIX)
  );
  return [...names("/tmp"), ...names(cgroup2Root()).map((n) => `cgroup ${n}`), ...mounts];
}

function writeFiles(dir: string, cases = CASES): string {
  Deno.writeTextFileSync(`${dir}/candidate.yaml`, CANDIDATE);
  Deno.writeTextFileSync(`${dir}/t.test.yaml`, cases);
  return `${dir}/t.test.yaml`;
}

rootTest(
  "[root] policy test: egress and bind cases pass, and --json reports each with its event",
  async () => {
    await withTempDir("aegisbpf-ptest-", async (dir) => {
      const file = writeFiles(dir);
      const text = await aegisbpf(["policy", "test", file]);
      assert.equal(text.code, 0, text.stdout + text.stderr);
      assert.match(text.stdout, /^PASS the denied address \(connect 127\.0\.0\.2:\d+\/tcp\)$/m);
      assert.match(
        text.stdout,
        /policy candidate version 3 \(enforce\): 5 cases passed, 0 failed, 0 skipped/,
      );
      const json = await aegisbpf(["policy", "test", file, "--json"]);
      assert.equal(json.code, 0, json.stderr);
      const report = JSON.parse(json.stdout);
      assert.equal(report.ok, true);
      assert.deepEqual(report.cases.map((c: { got: { verdict: string } }) => c.got.verdict), [
        "deny",
        "allow",
        "deny",
        "deny",
        "allow",
      ]);
      assert.equal(report.cases[0].got.event.decision, "deny");
      assert.deepEqual(planesLeft(), []);
    });
  },
);

rootTest(
  "[root] policy test: a wrong expectation fails with expected and got; audit mode gives audit",
  async () => {
    await withTempDir("aegisbpf-ptest-", async (dir) => {
      const file = writeFiles(
        dir,
        `policy: candidate.yaml
cases:
  - connect: 127.0.0.2:${TCP_PORT}
    expect: allow
  - connect: 127.0.0.2:${TCP_PORT}
    expect: deny
    event: { rule: nope, tags: [T1105] }
`,
      );
      const result = await aegisbpf(["policy", "test", file]);
      assert.equal(result.code, 1, result.stderr);
      assert.match(
        result.stdout,
        /^FAIL connect 127\.0\.0\.2:\d+\/tcp\n {2}verdict: expected allow, got deny$/m,
      );
      assert.match(result.stdout, /^ {2}event\.rule: expected "nope", got "lo2"$/m);
      assert.match(result.stdout, /0 cases passed, 2 failed/);

      Deno.writeTextFileSync(
        `${dir}/audit.test.yaml`,
        `policy: candidate.yaml\nmode: audit\ncases:\n  - connect: 127.0.0.2:${TCP_PORT}\n    expect: audit\n    event: { rule: lo2, mode: audit }\n`,
      );
      const audit = await aegisbpf(["policy", "test", `${dir}/audit.test.yaml`]);
      assert.equal(audit.code, 0, audit.stdout + audit.stderr);
    });
  },
);

rootTest(
  "[root] policy test: one probe child runs all the cases of an identity, another identity has its own",
  async () => {
    await withTempDir("aegisbpf-ptest-", async (dir) => {
      // Audit: each connect to the denied address goes through with an event naming the probe's pid.
      const audited = `  - connect: 127.0.0.2:${TCP_PORT}\n    expect: audit\n    event: { rule: lo2 }\n`;
      const file = writeFiles(
        dir,
        `policy: candidate.yaml\nmode: audit\ncases:\n${audited}` +
          `${audited}    as: { uid: 65534, gid: 65534 }\n${audited}`,
      );
      const result = await aegisbpf(["policy", "test", file, "--json"]);
      assert.equal(result.code, 0, result.stdout + result.stderr);
      type Case = { got: { event?: { process: { pid: number; uid: number } } } };
      const cases: Case[] = JSON.parse(result.stdout).cases;
      const [root, nobody, rootAgain] = cases.map((c) => c.got.event?.process);
      assert.ok(root && nobody && rootAgain);
      assert.equal(rootAgain.pid, root.pid, "the same child ran both cases of root");
      assert.notEqual(nobody.pid, root.pid);
      assert.deepEqual([root.uid, nobody.uid], [0, 65534]);
      assert.deepEqual(planesLeft(), []);
    });
  },
);

Deno.test("policy test's probe children: a probe past its timeout ends its child, a fresh one runs the next", async () => {
  await withTempDir("aegisbpf-ptest-", async (dir) => {
    // An open of a FIFO nobody writes blocks past the hook: let through at the probe's timeout.
    const fifo = `${dir}/fifo`;
    await must("mkfifo", [fifo]);
    const open = (path: string) => ({ probe: { kind: "open", path, write: false } as const });
    const joined: number[] = [];
    await using children = new ProbeChildren((pid) => joined.push(pid));
    assert.deepEqual(await children.run(open("/etc/hostname")), { result: "ok", detail: "opened" });
    assert.deepEqual(await children.run(open("/etc/hostname")), { result: "ok", detail: "opened" });
    assert.equal(joined.length, 1, "one child, joined once");
    const started = Date.now();
    const late = await children.run(open(fifo));
    assert.equal(late.result, "ok");
    assert.match(late.detail ?? "", /^let through: no answer in \d+ ms$/);
    assert.ok(Date.now() - started < PROBE_TIMEOUT_MS * 2, "answered at the probe's timeout");
    assert.deepEqual(await children.run(open("/etc/hostname")), { result: "ok", detail: "opened" });
    assert.equal(joined.length, 2, "a fresh child after the probe that did not finish");
    assert.notEqual(joined[1], joined[0]);
    assert.equal((await children.run(open(`${dir}/missing`))).result, "ENOENT");
    assert.equal(joined.length, 2, "a probe that failed leaves its child in service");
  });
});

rootTest(
  "[root] policy test: a bad test file is exit 2 naming FILE:LINE:COL, and nothing is loaded",
  async () => {
    await withTempDir("aegisbpf-ptest-", async (dir) => {
      const file = writeFiles(
        dir,
        `policy: candidate.yaml\ncases:\n  - connect: 127.0.0.2\n    expect: deny\n`,
      );
      const result = await aegisbpf(["policy", "test", file]);
      assert.equal(result.code, 2);
      assert.match(result.stderr, new RegExp(`${file}:3:14: connect: must be ADDRESS:PORT`));
      Deno.writeTextFileSync(file, `policy: missing.yaml\ncases:\n  - bind: 1\n    expect: allow\n`);
      const missing = await aegisbpf(["policy", "test", file]);
      assert.equal(missing.code, 2);
      assert.match(missing.stderr, /missing\.yaml: no such file/);
      assert.deepEqual(planesLeft(), []);
    });
  },
);

rootTest(
  "[root] policy test leaves the live policy alone: same generation, same counters, still enforced",
  async () => {
    await withHost(async (host) => {
      const live = writePolicy(host, "live.yaml", policy(host, NET));
      const applied = await aegisbpf(["policy", "apply", live], { env: host.env });
      assert.equal(applied.code, 0, applied.stderr);
      assert.equal(await connect(host), "EPERM");
      const snapshot = () => {
        using plane = DataPlane.open({ bpffs: host.bpffs, areas: [] });
        return { generation: plane.config().activeGen, counters: plane.counters(), links: plane.links };
      };
      const before = snapshot();
      const file = writeFiles(host.dir);
      const result = await aegisbpf(["policy", "test", file], { env: host.env });
      assert.equal(result.code, 0, result.stdout + result.stderr);
      assert.deepEqual(snapshot(), before);
      assert.equal(await connect(host), "EPERM", "the live policy still denies");
    });
  },
);

rootTest(
  "[root] policy test: SIGTERM removes everything it made; a killed run's leftovers go at the next start",
  async () => {
    await withTempDir("aegisbpf-ptest-", async (dir) => {
      // Audit lets the connects through to a listener that never answers: each waits for the probe's
      // timeout, long enough to be signalled mid-run on any host.
      using silent = await silentTcpPort();
      const slow = `policy: candidate.yaml\nmode: audit\ncases:\n` +
        `  - connect: 127.0.0.1:${silent.port}\n    expect: allow\n`.repeat(4);
      const file = writeFiles(dir, slow);
      for (const signal of ["SIGTERM", "SIGKILL"] as const) {
        const child = spawnAegisbpf(["policy", "test", file]);
        const deadline = Date.now() + 30_000;
        while (!planesLeft().some((name) => name.startsWith("cgroup"))) {
          assert.ok(Date.now() < deadline, "the test plane never appeared");
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
        await new Promise((resolve) => setTimeout(resolve, 500));
        child.kill(signal);
        const { code, stderr } = await child.output();
        if (signal === "SIGTERM") {
          const said = new TextDecoder().decode(stderr);
          assert.equal(code, 143, said);
          assert.deepEqual(planesLeft(), [], `left behind after SIGTERM; stderr: ${said}`);
        } else {
          assert.notDeepEqual(planesLeft(), [], "a killed run cannot clean up");
        }
      }
      Deno.writeTextFileSync(
        file,
        `policy: candidate.yaml\ncases:\n  - bind: ${TCP_PORT + 2}\n    expect: allow\n`,
      );
      const next = await aegisbpf(["policy", "test", file]);
      assert.equal(next.code, 0, next.stdout + next.stderr);
      assert.deepEqual(planesLeft(), []);
    });
  },
);

rootTest(
  "[root] policy test: a SIGTERM at any moment of a run, its teardown included, leaves nothing behind",
  async () => {
    await withTempDir("aegisbpf-ptest-", async (dir) => {
      const file = writeFiles(
        dir,
        `policy: candidate.yaml\ncases:\n  - bind: ${TCP_PORT + 2}\n    expect: allow\n`,
      );
      const started = Date.now();
      const whole = await aegisbpf(["policy", "test", file]);
      assert.equal(whole.code, 0, whole.stdout + whole.stderr);
      const took = Date.now() - started;
      // Signals spread over the run and just past it: before the plane, while it loads, while the probe
      // children are killed and the plane removed (the window the CI run found open), after.
      for (const fraction of [0.15, 0.35, 0.55, 0.7, 0.8, 0.9, 0.95, 1, 1.05]) {
        const child = spawnAegisbpf(["policy", "test", file]);
        await new Promise((resolve) => setTimeout(resolve, Math.round(took * fraction)));
        try {
          child.kill("SIGTERM");
        } catch (error) {
          if (!(error instanceof TypeError)) throw error; // it had exited already
        }
        const { code, stderr } = await child.output();
        const said = new TextDecoder().decode(stderr);
        assert.ok([0, 143].includes(code), `exit ${code} at ${fraction} of the run: ${said}`);
        assert.deepEqual(planesLeft(), [], `left behind by a SIGTERM at ${fraction} of the run: ${said}`);
      }
    });
  },
);

rootTest(
  "[root] the starter library's test files pass here (cases needing BPF-LSM skipped, --allow-skip)",
  async () => {
    for (const profile of ["baseline", "web-server", "ci-runner", "bastion"]) {
      const file = new URL(`../../policies/${profile}.test.yaml`, import.meta.url).pathname;
      const result = await aegisbpf(["policy", "test", file, "--allow-skip", "--json"]);
      assert.equal(result.code, 0, `${profile}: ${result.stdout}${result.stderr}`);
      const report = JSON.parse(result.stdout);
      assert.equal(report.failed, 0);
      assert.ok(report.passed >= 4, `${profile}: the egress cases ran`);
      const skipped = await aegisbpf(["policy", "test", file]);
      assert.equal(
        skipped.code,
        report.skipped > 0 ? 1 : 0,
        "without --allow-skip a skipped case fails the run",
      );
    }
  },
);
