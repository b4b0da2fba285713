import assert from "node:assert/strict";
import type { DataPlane } from "../../../lib/kernel/dataplane.ts";
import { drain } from "../../support/plane.ts";
import { SharedPlane } from "../../support/shared_plane.ts";
import { resolvePlan } from "../../../lib/kernel/resolve.ts";
import { cgroup2Root } from "../../../lib/kernel/cgroup.ts";
import { exists } from "../../../lib/kernel/pin_dir.ts";
import { emptyPlan, type RuleSetPlan } from "../../../lib/policy/plan.ts";

// BPF-LSM enforcement through the product's DataPlane, run inside the qemu guest (tests/vm/harness.ts)
// where LSM programs load. Every bypass an attacker tries first must stay denied. The tests share one
// loaded plane (tests/support/shared_plane.ts), each starting from it as a fresh load leaves it.
const inVm = Deno.env.get("AEGIS_IN_VM") === "1";
let counter = 0;
const shared = new SharedPlane("dataplane-lsm");

type Fixture = { plane: DataPlane; dir: string; apply: (parts: Partial<RuleSetPlan>) => Promise<void> };

function vmTest(name: string, fn: (fixture: Fixture) => Promise<void>): void {
  Deno.test({
    name,
    ignore: !inVm,
    fn: async () => {
      counter++;
      const dir = Deno.makeTempDirSync({ prefix: "aegisbpf-vm-" });
      try {
        const plane = shared.open({ areas: ["file", "exec", "egress"] });
        try {
          assert.equal(plane.status.file.mode, "enforce", `file area: ${plane.status.file.reason}`);
          assert.equal(plane.status.exec.mode, "enforce", `exec area: ${plane.status.exec.reason}`);
          const apply = async (parts: Partial<RuleSetPlan>) => {
            await plane.apply(resolvePlan({ ...emptyPlan(), mode: "enforce", ...parts }));
          };
          await fn({ plane, dir, apply });
        } finally {
          await shared.release(plane);
        }
      } finally {
        Deno.removeSync(dir, { recursive: true });
      }
    },
  });
}

const FILE_RULES = [{ id: "default", area: "ingress" as const, action: "deny" as const }, {
  id: "secret",
  area: "file" as const,
  action: "deny" as const,
  path: "secret",
}];
const EXEC_RULES = [FILE_RULES[0]!, { id: "no-tool", area: "exec" as const, action: "deny" as const }];

/** Opens `path` for reading; "ok", "EPERM" or the error text. */
function tryOpen(path: string): string {
  try {
    Deno.openSync(path).close();
    return "ok";
  } catch (error) {
    return /os error 1\b/.test(String(error)) ? "EPERM" : String(error);
  }
}

/** Runs a program; "ok", "EPERM" (the kernel refused the exec) or the error text. */
async function tryExec(path: string, args: string[] = []): Promise<string> {
  try {
    const output = await new Deno.Command(path, { args, stdout: "null", stderr: "piped" }).output();
    if (output.success) return "ok";
    const stderr = new TextDecoder().decode(output.stderr);
    return /Operation not permitted|Permission denied/.test(stderr)
      ? "EPERM"
      : `exit ${output.code}: ${stderr}`;
  } catch (error) {
    return /os error 1\b|Operation not permitted/.test(String(error)) ? "EPERM" : String(error);
  }
}

async function sh(script: string): Promise<{ code: number; out: string }> {
  const output = await new Deno.Command("sh", { args: ["-c", script], stdout: "piped", stderr: "piped" })
    .output();
  const decoder = new TextDecoder();
  return { code: output.code, out: decoder.decode(output.stdout) + decoder.decode(output.stderr) };
}

vmTest(
  "[vm] file: enforce denies open of a denied inode with EPERM and reports it; others open",
  async (t) => {
    Deno.writeTextFileSync(`${t.dir}/secret`, "s");
    Deno.writeTextFileSync(`${t.dir}/public`, "p");
    await t.apply({ rules: FILE_RULES, files: [{ ruleId: 1, path: `${t.dir}/secret` }] });
    assert.equal(tryOpen(`${t.dir}/secret`), "EPERM");
    assert.equal(tryOpen(`${t.dir}/public`), "ok");
    const events = drain(t.plane).filter((event) => event.pid === Deno.pid);
    assert.equal(events.length, 1);
    assert.equal(events[0]?.decision, 0);
    assert.equal(events[0]?.ruleId, 1);
    assert.equal(t.plane.counters().decisions.file_open.deny, 1n);
  },
);

vmTest(
  "[vm] files.protect through the data plane: read allowed, write and a new entry refused, file.write reported",
  async (t) => {
    const sudoers = `${t.dir}/sudoers`;
    const cron = `${t.dir}/cron.d`;
    Deno.writeTextFileSync(sudoers, "root ALL=(ALL) ALL\n");
    Deno.mkdirSync(cron);
    Deno.writeTextFileSync(`${cron}/job`, "x");
    const rules = [
      FILE_RULES[0]!,
      { id: "sudoers", area: "file" as const, action: "deny" as const, path: sudoers },
      { id: "cron", area: "file" as const, action: "deny" as const, path: cron },
    ];
    await t.apply({
      rules,
      protect: [{ ruleId: 1, path: sudoers }, { ruleId: 2, path: cron, recursive: true }],
    });
    assert.equal(Deno.readTextFileSync(sudoers), "root ALL=(ALL) ALL\n", "read");
    assert.throws(() => Deno.writeTextFileSync(sudoers, "evil\n"), Deno.errors.PermissionDenied, "write");
    assert.throws(
      () => Deno.writeTextFileSync(`${cron}/evil`, "x"),
      Deno.errors.PermissionDenied,
      "new entry",
    );
    assert.throws(() => Deno.removeSync(`${cron}/job`), Deno.errors.PermissionDenied, "unlink inside");
    assert.equal(Deno.readTextFileSync(sudoers), "root ALL=(ALL) ALL\n");
    const writes = drain(t.plane).filter((event) => event.pid === Deno.pid && event.hook === 13);
    const ino = (path: string) => BigInt(Deno.statSync(path).ino!);
    assert.deepEqual(writes.map((event) => [event.op, event.ino, event.ruleId, event.decision]), [
      [11, ino(sudoers), 1, 0], // open-write
      [12, ino(cron), 2, 0], // create
      [2, ino(`${cron}/job`), 2, 0], // unlink
    ]);
    assert.equal(t.plane.counters().decisions.file_write.deny, 3n);
  },
);

vmTest("[vm] file: audit mode allows the open and reports a would-deny", async (t) => {
  Deno.writeTextFileSync(`${t.dir}/secret`, "s");
  await t.apply({ mode: "audit", rules: FILE_RULES, files: [{ ruleId: 1, path: `${t.dir}/secret` }] });
  assert.equal(tryOpen(`${t.dir}/secret`), "ok");
  const events = drain(t.plane).filter((event) => event.pid === Deno.pid);
  assert.equal(events.length, 1);
  assert.equal(events[0]?.decision, 1);
});

vmTest(
  "[vm] file: hard link, symlink and bind mount of a denied file stay denied; it cannot be renamed",
  async (t) => {
    const secret = `${t.dir}/secret`;
    Deno.writeTextFileSync(secret, "s");
    Deno.writeTextFileSync(`${t.dir}/mountpoint`, "");
    Deno.linkSync(secret, `${t.dir}/hardlink`); // made before: a new link to a denied file is refused
    await t.apply({ rules: FILE_RULES, files: [{ ruleId: 1, path: secret }] });

    assert.equal(tryOpen(`${t.dir}/hardlink`), "EPERM", "hard link");
    Deno.symlinkSync(secret, `${t.dir}/symlink`);
    assert.equal(tryOpen(`${t.dir}/symlink`), "EPERM", "symlink");
    const bind = await sh(`mount --bind '${secret}' '${t.dir}/mountpoint'`);
    assert.equal(bind.code, 0, bind.out);
    try {
      assert.equal(tryOpen(`${t.dir}/mountpoint`), "EPERM", "bind mount");
    } finally {
      await sh(`umount '${t.dir}/mountpoint'`);
    }
    assert.throws(() => Deno.renameSync(secret, `${t.dir}/renamed`), Deno.errors.PermissionDenied, "rename");
    assert.throws(() => Deno.linkSync(secret, `${t.dir}/link2`), Deno.errors.PermissionDenied, "a new link");
  },
);

vmTest("[vm] file: reopening an already open denied file through /proc/self/fd is denied", async (t) => {
  const secret = `${t.dir}/secret`;
  Deno.writeTextFileSync(secret, "s");
  using held = Deno.openSync(secret);
  void held;
  await t.apply({ rules: FILE_RULES, files: [{ ruleId: 1, path: secret }] });
  const fd = [...Deno.readDirSync("/proc/self/fd")].map((entry) => entry.name).find((name) => {
    try {
      return Deno.readLinkSync(`/proc/self/fd/${name}`) === secret;
    } catch {
      return false;
    }
  });
  assert.ok(fd, "the held descriptor is listed in /proc/self/fd");
  assert.equal(tryOpen(`/proc/self/fd/${fd}`), "EPERM");
});

vmTest("[vm] file: recursive rules deny every file under a directory at apply time", async (t) => {
  Deno.mkdirSync(`${t.dir}/keys/deep`, { recursive: true });
  Deno.writeTextFileSync(`${t.dir}/keys/a`, "a");
  Deno.writeTextFileSync(`${t.dir}/keys/deep/b`, "b");
  await t.apply({ rules: FILE_RULES, files: [{ ruleId: 1, path: `${t.dir}/keys`, recursive: true }] });
  assert.equal(tryOpen(`${t.dir}/keys/a`), "EPERM");
  assert.equal(tryOpen(`${t.dir}/keys/deep/b`), "EPERM");
});

/**
 * A private copy of busybox, a binary with an inode of its own, named after the applet it runs (busybox
 * picks the applet from argv[0]).
 */
function tool(dir: string, label: string, applet = "true"): string {
  Deno.mkdirSync(`${dir}/${label}`);
  const path = `${dir}/${label}/${applet}`;
  Deno.copyFileSync(Deno.realPathSync("/usr/bin/busybox"), path);
  Deno.chmodSync(path, 0o755);
  return path;
}

vmTest("[vm] exec: a denied binary cannot run, through its path, a symlink or a hard link", async (t) => {
  const denied = tool(t.dir, "denied-tool");
  const other = tool(t.dir, "other-tool");
  Deno.symlinkSync(denied, `${t.dir}/via-symlink`);
  Deno.linkSync(denied, `${t.dir}/via-hardlink`);
  await t.apply({ rules: EXEC_RULES, exec: [{ ruleId: 1, path: denied }] });
  assert.equal(await tryExec(other), "ok");
  assert.equal(await tryExec(denied), "EPERM");
  assert.equal(await tryExec(`${t.dir}/via-symlink`), "EPERM");
  assert.equal(await tryExec(`${t.dir}/via-hardlink`), "EPERM");
  assert.equal(t.plane.counters().decisions.exec.deny, 3n);
});

vmTest("[vm] exec: audit mode lets a denied binary run and reports a would-deny", async (t) => {
  const denied = tool(t.dir, "audited-tool");
  await t.apply({ mode: "audit", rules: EXEC_RULES, exec: [{ ruleId: 1, path: denied }] });
  assert.equal(await tryExec(denied), "ok");
  const events = drain(t.plane).filter((event) => event.hook === 1);
  assert.equal(events.length, 1);
  assert.equal(events[0]?.decision, 1);
  assert.equal(events[0]?.ruleId, 1);
  assert.equal(t.plane.counters().decisions.exec.audit, 1n);
});

vmTest("[vm] exec: a script is denied when the script or its interpreter is denied", async (t) => {
  const interpreter = tool(t.dir, "interp", "sh");
  const script = `${t.dir}/script`;
  Deno.writeTextFileSync(script, `#!${interpreter}\ntrue\n`);
  Deno.chmodSync(script, 0o755);
  assert.equal(await tryExec(script), "ok", "the script runs before any rule");

  await t.apply({ rules: EXEC_RULES, exec: [{ ruleId: 1, path: script }] });
  assert.equal(await tryExec(script), "EPERM", "denied script");
  await t.apply({ rules: EXEC_RULES, exec: [{ ruleId: 1, path: interpreter }] });
  assert.equal(await tryExec(script), "EPERM", "denied interpreter");
});

vmTest(
  "[vm] exec: a copy of a denied binary is a new inode and is not caught (documented limit)",
  async (t) => {
    const denied = tool(t.dir, "denied-tool");
    await t.apply({ rules: EXEC_RULES, exec: [{ ruleId: 1, path: denied }] });
    Deno.mkdirSync(`${t.dir}/copy`);
    Deno.copyFileSync(denied, `${t.dir}/copy/true`);
    Deno.chmodSync(`${t.dir}/copy/true`, 0o755);
    assert.equal(await tryExec(denied), "EPERM");
    assert.equal(await tryExec(`${t.dir}/copy/true`), "ok");
  },
);

vmTest(
  "[vm] scope: exempt cgroups are never affected and a canary scope limits rules to its subtree",
  async (t) => {
    const secret = `${t.dir}/secret`;
    Deno.writeTextFileSync(secret, "s");
    const base = `${cgroup2Root()}/aegisbpf-vm-${counter}`;
    for (const name of ["", "/canary", "/canary/exempt", "/other"]) Deno.mkdirSync(`${base}${name}`);
    const rel = (name: string) => `${base}${name}`.slice(cgroup2Root().length);
    const catIn = async (name: string) => {
      const result = await sh(`echo $$ > '${base}${name}/cgroup.procs' && cat '${secret}'`);
      return result.code === 0 ? "ok" : /Operation not permitted/.test(result.out) ? "EPERM" : result.out;
    };
    try {
      await t.apply({
        rules: FILE_RULES,
        files: [{ ruleId: 1, path: secret }],
        scope: { include: [rel("/canary")], exempt: [rel("/canary/exempt")] },
      });
      assert.equal(await catIn("/canary"), "EPERM");
      assert.equal(await catIn("/canary/exempt"), "ok");
      assert.equal(await catIn("/other"), "ok");
      assert.equal(tryOpen(secret), "ok", "this test process is outside the canary");
    } finally {
      for (const name of ["/canary/exempt", "/canary", "/other", ""]) Deno.removeSync(`${base}${name}`);
    }
  },
);

vmTest("[vm] break-glass turns enforcement into audit at once and back", async (t) => {
  const secret = `${t.dir}/secret`;
  Deno.writeTextFileSync(secret, "s");
  await t.apply({ rules: FILE_RULES, files: [{ ruleId: 1, path: secret }] });
  assert.equal(tryOpen(secret), "EPERM");
  t.plane.setConfig({ breakGlass: true });
  assert.equal(tryOpen(secret), "ok");
  t.plane.setConfig({ breakGlass: false });
  assert.equal(tryOpen(secret), "EPERM");
});

vmTest("[vm] egress: connect to a denied address fails with EPERM on this kernel too", async (t) => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  try {
    await t.apply({
      rules: [FILE_RULES[0]!, { id: "lo", area: "egress", action: "deny" }],
      egress: [{
        ruleId: 1,
        action: "deny",
        family: 4,
        addr: new Uint8Array([127, 0, 0, 1]),
        prefixLength: 32,
        port,
      }],
    });
    const outcome = await Deno.connect({ hostname: "127.0.0.1", port }).then(
      (connection) => (connection.close(), "connected"),
      (error) => String(error),
    );
    assert.match(outcome, /os error 1\b/);
  } finally {
    listener.close();
  }
});

// Last: the shared plane goes, with everything it pinned and attached.
Deno.test({
  name: "[vm] the tests' shared data plane detaches: nothing of it stays pinned",
  ignore: !inVm,
  fn: () => {
    shared.detach();
    assert.equal(exists(shared.bpffs), false);
  },
});
