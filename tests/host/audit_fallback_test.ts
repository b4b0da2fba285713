import assert from "node:assert/strict";
import { errnoValue, FILE_OP, HOOK } from "../../ffi/mod.ts";
import { DataPlane } from "../../lib/kernel/dataplane.ts";
import { FILE_FALLBACK_COVERAGE, probeLsm } from "../../lib/kernel/load.ts";
import { ensureMounted } from "../../lib/kernel/mounts.ts";
import type { RuleInfo } from "../../lib/policy/plan.ts";
import { TestBpffs } from "../support/bpffs.ts";
import { drain, ruleSet, withPlane } from "../support/plane.ts";
import { rootTest } from "../support/privileged.ts";
import { inodeOf } from "../support/slice.ts";

const FILE_OPEN_HOOK = 0;
const EXEC_HOOK = 1;
const AUDIT = 1;
const RULES: RuleInfo[] = [
  { id: "default", area: "ingress", action: "deny" },
  { id: "secret", area: "file", action: "deny" },
  { id: "no-tool", area: "exec", action: "deny" },
];

// Forced to the tracepoint fallback (lsm: "off") so that the test means the same on every kernel.
rootTest(
  "[root] audit fallback: tracepoints report would-deny opens and execs of denied inodes",
  async () => {
    const dir = Deno.makeTempDirSync({ prefix: "aegisbpf-fallback-" });
    try {
      const secret = `${dir}/secret`;
      Deno.writeTextFileSync(secret, "s");
      const tool = `${dir}/tool`;
      Deno.copyFileSync(Deno.realPathSync("/bin/true"), tool);
      Deno.chmodSync(tool, 0o755);
      await withPlane({ areas: ["file", "exec"], lsm: "off" }, async ({ plane }) => {
        assert.equal(plane.status.file.mode, "audit-only");
        assert.equal(plane.status.exec.mode, "audit-only");
        assert.match(plane.status.file.reason ?? "", /disabled by configuration/);
        await plane.apply(ruleSet({
          mode: "enforce",
          rules: RULES,
          files: [{ ruleId: 1, path: secret }],
          exec: [{ ruleId: 2, path: tool }],
        }));

        assert.equal(Deno.readTextFileSync(secret), "s", "audit-only: the open succeeds");
        const run = await new Deno.Command(tool).output();
        assert.equal(run.code, 0, "audit-only: the exec succeeds");

        const events = drain(plane);
        const open = events.find((event) => event.hook === FILE_OPEN_HOOK && event.pid === Deno.pid);
        assert.ok(open, "the open is reported");
        assert.equal(open.decision, AUDIT);
        assert.equal(open.ruleId, 1);
        assert.equal(open.ino, inodeOf(secret, 1).ino);
        const exec = events.find((event) => event.hook === EXEC_HOOK);
        assert.ok(exec, "the exec is reported");
        assert.equal(exec.decision, AUDIT);
        assert.equal(exec.ruleId, 2);
        assert.equal(exec.ino, inodeOf(tool, 2).ino);
        assert.equal(exec.comm, "tool");
        const counters = plane.counters().decisions;
        assert.equal(counters.file_open.deny + counters.exec.deny, 0n, "nothing is denied");
      });
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
);

rootTest(
  "[root] audit fallback: exec of a memfd or of an unlinked file is reported as a would-deny under exec.denyMemfd",
  async () => {
    const probe = new URL("../../bpf/build/fixtures/file_guard_probe", import.meta.url).pathname;
    const nameless = new URL("../../bpf/build/fixtures/file_change_probe", import.meta.url).pathname;
    await withPlane({ areas: ["exec"], lsm: "off" }, async ({ plane }) => {
      const memfd: RuleInfo = { id: "exec.denyMemfd", area: "exec", action: "deny" };
      await plane.apply(
        ruleSet({ mode: "enforce", rules: [RULES[0]!, memfd], denyMemfdExec: { ruleId: 1 } }),
      );
      const ran = await new Deno.Command(probe, {
        args: ["memfd-exec", "/bin/echo", "echo", "ran"],
        stdout: "piped",
      })
        .output();
      assert.equal(new TextDecoder().decode(ran.stdout), "ran\n", "audit-only: the memfd runs");
      const child = await new Deno.Command("/bin/true").output();
      assert.ok(child.success);
      // A file with no name on a disk filesystem (this host's temporary directory) is the same thing.
      const dir = Deno.makeTempDirSync({ prefix: "aegisbpf-nameless-" });
      try {
        const unlinked = await new Deno.Command(nameless, {
          args: ["0", "exec-unlinked", dir, "/bin/echo", "echo", "ran"],
          stdout: "piped",
        }).output();
        assert.equal(
          new TextDecoder().decode(unlinked.stdout),
          "ran\n",
          "audit-only: the unlinked file runs",
        );
      } finally {
        Deno.removeSync(dir, { recursive: true });
      }
      const reported = drain(plane).filter((event) => event.hook === EXEC_HOOK);
      assert.equal(reported.length, 2, "the memfd and the unlinked file: a file exec is not reported");
      assert.deepEqual(reported.map((event) => [event.decision, event.ruleId]), [[AUDIT, 1], [AUDIT, 1]]);
    });
  },
);

// files.protect on the tracepoints: an open for writing of a protected inode is reported (by inode, through
// every name: a second hard link too), nothing is refused, and what the tracepoints cannot see (truncate,
// chmod, rename, unlink, a new entry in a protected directory) is not reported, as doctor, health and the
// apply say.
rootTest(
  "[root] audit fallback: files.protect reports opens for writing of a protected inode, and only those",
  async () => {
    const dir = Deno.makeTempDirSync({ prefix: "aegisbpf-protect-fallback-" });
    try {
      const file = `${dir}/sudoers`;
      const tree = `${dir}/cron.d`;
      Deno.writeTextFileSync(file, "root ALL=(ALL) ALL\n");
      Deno.linkSync(file, `${dir}/second`);
      Deno.mkdirSync(tree);
      Deno.writeTextFileSync(`${tree}/job`, "* * * * * root true\n");
      await withPlane({ areas: ["file"], lsm: "off" }, async ({ plane }) => {
        assert.match(plane.status.file.reason ?? "", /an open for writing of a protected one \(file\.write/);
        const rules: RuleInfo[] = [
          RULES[0]!,
          { id: "sudoers", area: "file", action: "deny", path: file },
          { id: "cron", area: "file", action: "deny", path: tree },
        ];
        await plane.apply(ruleSet({
          mode: "enforce",
          rules,
          protect: [{ ruleId: 1, path: file }, { ruleId: 2, path: tree, recursive: true }],
        }));
        drain(plane);

        assert.equal(Deno.readTextFileSync(file), "root ALL=(ALL) ALL\n", "a read is not reported");
        Deno.writeTextFileSync(file, "evil\n"); // O_WRONLY | O_CREAT | O_TRUNC: made, and reported
        Deno.openSync(`${dir}/second`, { read: true, write: true }).close(); // O_RDWR through a second link
        Deno.openSync(`${tree}/job`, { write: true }).close();
        // Unseen by the tracepoints: made, and not reported (truncate(2), not Deno's open and ftruncate).
        const probe = new URL("../../bpf/build/fixtures/file_change_probe", import.meta.url).pathname;
        const unseen = await new Deno.Command(probe, {
          args: [
            "batch",
            "0",
            "truncate",
            file,
            "--",
            "0",
            "chmod",
            file,
            "0600",
            "--",
            "0",
            "mkdir",
            `${tree}/d`,
          ],
          stdout: "piped",
        }).output();
        assert.equal(new TextDecoder().decode(unseen.stdout), "ok truncate\nok chmod\nok mkdir\n");
        Deno.writeTextFileSync(`${tree}/new`, "x"); // a new entry (its open is of an unprotected inode)
        Deno.renameSync(`${tree}/job`, `${dir}/job`);

        const writes = drain(plane).filter((event) => event.hook === HOOK.FILE_WRITE);
        const ino = (path: string) => inodeOf(path, 0).ino;
        assert.deepEqual(writes.map((event) => [event.op, event.ino, event.ruleId, event.decision]), [
          [FILE_OP.OPEN_WRITE, ino(file), 1, AUDIT],
          [FILE_OP.OPEN_WRITE, ino(file), 1, AUDIT],
          [FILE_OP.OPEN_WRITE, ino(`${dir}/job`), 2, AUDIT],
        ]);
        assert.equal(Deno.readTextFileSync(file), "", "audit-only: every write was made");
        assert.equal(plane.counters().decisions.file_write.deny, 0n, "nothing is denied");
      });
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
);

// files.writers on the tracepoints: a writer's open for writing of a protected inode is not reported (it
// would be allowed under BPF-LSM), anyone else's is; a writer's replace by rename is not seen at all there.
rootTest(
  "[root] audit fallback: a trusted writer's open for writing of a protected file is not reported, another program's is",
  async () => {
    const dir = Deno.makeTempDirSync({ prefix: "aegisbpf-writers-fallback-" });
    try {
      const file = `${dir}/sudoers`;
      Deno.writeTextFileSync(file, "root ALL=(ALL) ALL\n");
      const probe = new URL("../../bpf/build/fixtures/file_change_probe", import.meta.url).pathname;
      const writer = `${dir}/dpkg`;
      Deno.copyFileSync(probe, writer);
      Deno.chmodSync(writer, 0o755);
      await withPlane({ areas: ["file"], lsm: "off" }, async ({ plane }) => {
        const rules: RuleInfo[] = [
          RULES[0]!,
          { id: "sudoers", area: "file", action: "deny", path: file },
          { id: "dpkg", area: "file", action: "allow", exe: writer },
        ];
        await plane.apply(ruleSet({
          mode: "enforce",
          rules,
          protect: [{ ruleId: 1, path: file }],
          subjects: [{ subject: 1, exe: writer, children: false, optional: false, ruleId: 2 }],
          writers: [{ ruleId: 2, subject: 1, exe: writer, children: false }],
        }));
        drain(plane);
        const opened = async (program: string) =>
          new TextDecoder().decode(
            (await new Deno.Command(program, { args: ["0", "open", "wronly", file], stdout: "piped" })
              .output())
              .stdout,
          );
        assert.equal(await opened(writer), "ok open\n");
        assert.equal(await opened(probe), "ok open\n", "audit-only: made");
        const writes = drain(plane).filter((event) => event.hook === HOOK.FILE_WRITE);
        assert.deepEqual(
          writes.map((event) => [event.op, event.ino, event.ruleId, event.decision, event.comm]),
          [
            [FILE_OP.OPEN_WRITE, inodeOf(file, 0).ino, 1, AUDIT, "file_change_pro"],
          ],
          "only the other program's open is reported",
        );
      });
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
);

// This project's machines list `bpf` among the active LSMs but refuse BPF-LSM program loads (EPERM):
// the probe must say so and the plane must serve file and exec audit-only, naming the errno, rather than
// pretend to enforce. Where LSM programs do load, it enforces.
rootTest(
  "[root] audit fallback: the LSM probe decides, and DataPlane reports why enforcement is unavailable here",
  async () => {
    ensureMounted("securityfs");
    const probe = probeLsm();
    const listed = Deno.readTextFileSync("/sys/kernel/security/lsm").trim().split(",");
    if (!probe.ok) {
      if (listed.includes("bpf")) assert.equal(probe.errnoName, "EPERM", "this project's machines");
      assert.equal(probe.errno, errnoValue(probe.errnoName));
      assert.match(probe.reason, new RegExp(`^BPF-LSM program load failed: ${probe.errnoName}\\b`));
      assert.match(probe.log, /aegis_(file_open|bprm_check)/, "libbpf's account of the load");
    }
    const bpffs = await TestBpffs.mount();
    try {
      let plane: DataPlane;
      try {
        plane = DataPlane.open({ bpffs: bpffs.path, areas: ["file", "exec"] });
      } catch (error) {
        assert.fail(`opening must fall back, not fail: ${error instanceof Error ? error.message : error}`);
      }
      try {
        const { file, exec } = plane.status;
        if (probe.ok) {
          assert.equal(file.mode, "enforce");
          assert.equal(exec.mode, "enforce");
          assert.ok(plane.links.includes("aegis_file_open"));
        } else {
          assert.deepEqual(file, {
            mode: "audit-only",
            reason: `${probe.reason}; ${FILE_FALLBACK_COVERAGE}`,
          });
          assert.deepEqual(exec, { mode: "audit-only", reason: probe.reason });
          assert.deepEqual(plane.links, [
            "aegis_tp_exec",
            "aegis_tp_open",
            "aegis_tp_openat",
            "aegis_tp_openat2",
            "aegis_tp_prctl",
          ]);
        }
      } finally {
        plane.close();
        DataPlane.detach(bpffs.path);
      }
    } finally {
      await bpffs.unmount();
    }
  },
);
