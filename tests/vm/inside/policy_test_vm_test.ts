import assert from "node:assert/strict";
import { DataPlane } from "../../../lib/kernel/dataplane.ts";
import { TEST_PLANE_PREFIX } from "../../../lib/kernel/test_plane.ts";
import { PROFILES, profileTestText, profileText } from "../../../lib/policy/profiles.ts";
import { aegisbpf } from "../../cli/cli.ts";

// `policy test` inside the qemu guest, where BPF-LSM loads: the exec and file cases run (none skipped), in
// enforce (EPERM and a deny event) and audit (let through, an audit event); the starter library's test files
// pass whole; and a live file and exec policy keeps its generation and counters across a run. The guest is
// thrown away: the test makes the files the profiles protect where its /etc lacks them, and leaves out the
// profiles' writers entries (the guest's dpkg and rpm are busybox, the same file as every program here).
const inVm = Deno.env.get("AEGIS_IN_VM") === "1";

function candidate(mode: string, tool: string, secret: string): string {
  return `apiVersion: aegisbpf.io/v1
kind: Policy
metadata: { name: vm-candidate, version: 1 }
spec:
  mode: ${mode}
  files:
    deny:
      - { id: no-secret, path: ${secret}, tags: [T1552.001] }
  exec:
    deny:
      - { id: no-tool, path: ${tool}, tags: [T1059.004] }
`;
}

const CASES = (verdict: string, tool: string, secret: string) =>
  `policy: candidate.yaml
cases:
  - name: the denied tool
    exec: ${tool}
    args: [-c, "exit 0"]
    expect: ${verdict}
    event: { type: exec, rule: no-tool, tags: [T1059.004] }
  - name: the denied tool as nobody
    exec: ${tool}
    args: [-c, "exit 0"]
    as: { uid: 65534, gid: 65534 }
    expect: ${verdict}
    event: { rule: no-tool, process: { uid: 65534 } }
  - name: another program
    exec: /bin/sh
    args: [-c, "exit 0"]
    expect: allow
  - name: the denied file
    open: ${secret}
    expect: ${verdict}
    event: { type: file.open, rule: no-secret }
  - name: another file
    open: /etc/hostname
    expect: allow
`;

function fixture(): { dir: string; tool: string; secret: string } {
  const dir = Deno.makeTempDirSync({ prefix: "aegisbpf-vm-ptest-" });
  // A copy of the guest's busybox, named sh so that it runs as the shell: its own inode.
  Deno.mkdirSync(`${dir}/bin`, { mode: 0o755 });
  const tool = `${dir}/bin/sh`;
  Deno.copyFileSync("/bin/sh", tool);
  Deno.chmodSync(tool, 0o755);
  Deno.chmodSync(dir, 0o755);
  const secret = `${dir}/secret`;
  Deno.writeTextFileSync(secret, "s3cret\n");
  Deno.chmodSync(secret, 0o644);
  try {
    Deno.statSync("/etc/hostname");
  } catch {
    Deno.writeTextFileSync("/etc/hostname", "vm\n");
  }
  return { dir, tool, secret };
}

function planesLeft(): string[] {
  return Deno.readTextFileSync("/proc/mounts").split("\n").filter((line) => line.includes(TEST_PLANE_PREFIX));
}

Deno.test({
  name: "[vm] policy test runs exec and file cases: denied with an event in enforce, audited in audit",
  ignore: !inVm,
  async fn() {
    const { dir, tool, secret } = fixture();
    try {
      // The enforce run also holds a wrong expectation of an exec case: it fails with the diff (one run
      // less: each loads a plane, long under emulation).
      const wrong =
        `  - name: a wrong expectation\n    exec: ${tool}\n    args: [-c, "exit 0"]\n    expect: allow\n`;
      for (const [mode, verdict, extra] of [["enforce", "deny", wrong], ["audit", "audit", ""]] as const) {
        Deno.writeTextFileSync(`${dir}/candidate.yaml`, candidate(mode, tool, secret));
        Deno.writeTextFileSync(`${dir}/t.test.yaml`, CASES(verdict, tool, secret) + extra);
        const result = await aegisbpf(["policy", "test", `${dir}/t.test.yaml`, "--json"]);
        assert.equal(result.code, extra ? 1 : 0, `${mode}: ${result.stdout}${result.stderr}`);
        const report = JSON.parse(result.stdout);
        assert.equal(report.skipped, 0, "BPF-LSM loads here: nothing skipped");
        assert.equal(report.passed, 5);
        assert.equal(report.failed, extra ? 1 : 0);
        if (extra) {
          const [failed] = report.cases.filter((c: { status: string }) => c.status === "fail");
          assert.equal(failed.name, "a wrong expectation");
          assert.deepEqual(failed.diff, ["verdict: expected allow, got deny"]);
        }
        assert.deepEqual(planesLeft(), []);
      }
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "[vm] policy test leaves a live file and exec policy alone: same generation, same counters",
  ignore: !inVm,
  async fn() {
    const { dir, tool, secret } = fixture();
    const bpffs = `/sys/fs/bpf/ptest-live`;
    Deno.mkdirSync(bpffs, { recursive: true });
    const env = {
      AEGISBPF_BPFFS: bpffs,
      AEGISBPF_STATE_DIR: `${dir}/state`,
      AEGISBPF_CONFIG_DIR: `${dir}/etc`,
    };
    Deno.mkdirSync(`${dir}/etc`, { mode: 0o700 });
    Deno.mkdirSync(`${dir}/state`, { mode: 0o700 });
    try {
      // The live policy denies another copy of the shell and another file, everywhere.
      Deno.mkdirSync(`${dir}/live`, { mode: 0o755 });
      const liveTool = `${dir}/live/sh`;
      Deno.copyFileSync("/bin/sh", liveTool);
      Deno.chmodSync(liveTool, 0o755);
      Deno.writeTextFileSync(`${dir}/live-secret`, "x\n");
      const live = candidate("enforce", liveTool, `${dir}/live-secret`).replace("vm-candidate", "live");
      Deno.writeTextFileSync(`${dir}/live.yaml`, live);
      const applied = await aegisbpf(["policy", "apply", `${dir}/live.yaml`], { env });
      assert.equal(applied.code, 0, applied.stderr);
      const snapshot = () => {
        using plane = DataPlane.open({ bpffs, areas: [] });
        return { generation: plane.config().activeGen, counters: plane.counters(), links: plane.links };
      };
      const before = snapshot();
      Deno.writeTextFileSync(`${dir}/candidate.yaml`, candidate("enforce", tool, secret));
      Deno.writeTextFileSync(`${dir}/t.test.yaml`, CASES("deny", tool, secret));
      const result = await aegisbpf(["policy", "test", `${dir}/t.test.yaml`], { env });
      assert.equal(result.code, 0, result.stdout + result.stderr);
      assert.deepEqual(snapshot(), before);
      assert.throws(
        () => new Deno.Command(liveTool, { args: ["-c", "exit 0"] }).spawn(),
        /os error 1\b/,
        "the live policy still denies",
      );
    } finally {
      DataPlane.detach(bpffs);
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "[vm] the starter library's test files pass whole (no case skipped) where BPF-LSM loads",
  ignore: !inVm,
  async fn() {
    for (const path of ["/etc/shadow", "/etc/passwd", "/etc/group"]) {
      try {
        Deno.statSync(path);
      } catch {
        Deno.writeTextFileSync(path, path === "/etc/passwd" ? "root:x:0:0:root:/root:/bin/sh\n" : "");
      }
    }
    const dir = Deno.makeTempDirSync({ prefix: "aegisbpf-vm-starter-" });
    try {
      // Two runs at a time: each has its own plane and cgroup (the candidate's scope), so they cannot see
      // each other's probes; the guest has two vCPUs and a run (its plane load above all) keeps one busy.
      const queue = PROFILES.map(({ name }) => name);
      const runs = async () => {
        for (let name = queue.shift(); name !== undefined; name = queue.shift()) {
          const text = (await profileText(name)).replace(/ {4}writers:\n( {6}.*\n)+/, "");
          assert.doesNotMatch(text, /^ *writers:/m);
          Deno.writeTextFileSync(`${dir}/${name}.yaml`, text);
          Deno.writeTextFileSync(`${dir}/${name}.test.yaml`, await profileTestText(name));
          const result = await aegisbpf(["policy", "test", `${dir}/${name}.test.yaml`, "--json"]);
          assert.equal(result.code, 0, `${name}: ${result.stdout}${result.stderr}`);
          const report = JSON.parse(result.stdout);
          assert.equal(report.skipped, 0, `${name}: nothing skipped`);
          assert.equal(report.failed, 0, `${name}`);
        }
      };
      await Promise.all([runs(), runs()]);
      assert.deepEqual(planesLeft(), []);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});
