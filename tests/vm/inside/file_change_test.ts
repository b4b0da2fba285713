import assert from "node:assert/strict";
import { FILE_OP, HOOK, type RawEvent } from "../../../ffi/mod.ts";
import { DataPlane } from "../../../lib/kernel/dataplane.ts";
import { resolvePlan } from "../../../lib/kernel/resolve.ts";
import { emptyPlan, type RuleInfo, type RuleSetPlan } from "../../../lib/policy/plan.ts";
import { drain } from "../../support/plane.ts";
import { uniqueName } from "../../support/privileged.ts";

// A file deny rule inside the qemu guest, where BPF-LSM loads: the denied inode cannot be changed without
// being opened (truncate, unlink, rename, link, chmod, chown, utimes, extended attributes), by root or by
// its owner, and exec.denyMemfd refuses any file with no name on ext4 as on tmpfs. The moves are made by
// tests/fixtures/file_change_probe.c, one system call each. One plane serves every case.
const inVm = Deno.env.get("AEGIS_IN_VM") === "1";
const FIXTURES = `${Deno.cwd()}/bpf/build/fixtures`;
const PROBE = `${FIXTURES}/file_change_probe`;
const NOBODY = 65534;
const CONTENT = "thirty bytes of a secret file\n";
const DEFAULT: RuleInfo = { id: "default", area: "ingress", action: "deny" };
const SECRET: RuleInfo = { id: "secret", area: "file", action: "deny" };
const MEMFD: RuleInfo = { id: "exec.denyMemfd", area: "exec", action: "deny" };

type Outcome = { code: number; out: string };

async function probe(uid: number, ...args: string[]): Promise<Outcome> {
  const output = await new Deno.Command(PROBE, {
    args: [String(uid), ...args],
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  const decoder = new TextDecoder();
  return { code: output.code, out: (decoder.decode(output.stdout) + decoder.decode(output.stderr)).trim() };
}

async function sh(command: string): Promise<void> {
  const output = await new Deno.Command("sh", { args: ["-c", command], stderr: "piped" }).output();
  assert.ok(output.success, `${command}: ${new TextDecoder().decode(output.stderr)}`);
}

/** A change tried on one denied file: what the probe runs, and how to tell the file was (not) changed. */
type Change = {
  name: string;
  op: number;
  /** The probe's arguments for the file at `path` (in directory `dir`), run as `uid`. */
  args: (path: string, dir: string, uid: number) => string[];
  /** Whether the file at `path` shows the change. */
  changed: (path: string, dir: string) => Promise<boolean>;
};

const stat = (path: string) => Deno.statSync(path);
const exists = (path: string) => {
  try {
    Deno.lstatSync(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
};
const xattr = async (path: string, name: string) => (await probe(0, "getxattr", path, name)).out;

const CHANGES: readonly Change[] = [
  {
    name: "truncate",
    op: FILE_OP.TRUNCATE,
    args: (p) => ["truncate", p],
    changed: async (p) => stat(p).size === 0,
  },
  { name: "unlink", op: FILE_OP.UNLINK, args: (p) => ["unlink", p], changed: async (p) => !exists(p) },
  {
    name: "rename",
    op: FILE_OP.RENAME,
    args: (p) => ["rename", p, `${p}.moved`],
    changed: async (p) => !exists(p) && exists(`${p}.moved`),
  },
  {
    name: "rename over",
    op: FILE_OP.RENAME,
    args: (p, dir) => ["rename", `${dir}/decoy`, p],
    changed: async (_p, dir) => !exists(`${dir}/decoy`),
  },
  {
    name: "link",
    op: FILE_OP.LINK,
    args: (p) => ["link", p, `${p}.link`],
    changed: async (p) => stat(p).nlink === 2,
  },
  {
    name: "chmod",
    op: FILE_OP.CHMOD,
    args: (p) => ["chmod", p, "0600"],
    changed: async (p) => (stat(p).mode! & 0o777) === 0o600,
  },
  {
    name: "chown",
    op: FILE_OP.CHOWN,
    // root takes the file; its owner gives it its own group (the file starts as NOBODY:0)
    args: (p, _dir, uid) => ["chown", p, uid === 0 ? "0" : "-1", uid === 0 ? "0" : String(NOBODY)],
    changed: async (p) => stat(p).uid === 0 || stat(p).gid === NOBODY,
  },
  {
    name: "utimes",
    op: FILE_OP.UTIMES,
    args: (p) => ["utimes", p, "1000000000"],
    changed: async (p) => stat(p).mtime?.getTime() === 1e12,
  },
  {
    name: "setxattr",
    op: FILE_OP.SETXATTR,
    args: (p) => ["setxattr", p, "user.aegis", "set"],
    changed: async (p) => (await xattr(p, "user.aegis")) === "ok set",
  },
  {
    name: "removexattr",
    op: FILE_OP.REMOVEXATTR,
    args: (p) => ["removexattr", p, "user.kept"],
    changed: async (p) => (await xattr(p, "user.kept")) !== "ok kept",
  },
];

type Fixture = {
  plane: DataPlane;
  /** A directory on ext4 (a loop-mounted image) and one on tmpfs. */
  ext4: string;
  tmpfs: string;
  apply: (parts: Partial<RuleSetPlan>) => Promise<void>;
};

/** One plane (file and exec areas), an ext4 mount and a tmpfs directory for every case of this file. */
async function withFixture(fn: (fixture: Fixture) => Promise<void>): Promise<void> {
  const name = uniqueName("aegisbpf-fchange");
  const bpffs = `/sys/fs/bpf/${name}`;
  const tmpfs = `/tmp/${name}`;
  const image = `/tmp/${name}.img`;
  const ext4 = `/mnt/${name}`;
  Deno.mkdirSync(bpffs, { recursive: true });
  Deno.mkdirSync(tmpfs, { mode: 0o755 });
  Deno.mkdirSync(ext4, { recursive: true });
  Deno.copyFileSync(`${FIXTURES}/ext4.img`, image);
  let mounted = false;
  const plane = DataPlane.open({ bpffs, areas: ["file", "exec"] });
  try {
    await sh(`mount -o loop -t ext4 '${image}' '${ext4}'`);
    mounted = true;
    assert.equal(plane.status.file.mode, "enforce", `file area: ${plane.status.file.reason}`);
    const apply = async (parts: Partial<RuleSetPlan>) => {
      await plane.apply(resolvePlan({ ...emptyPlan(), mode: "enforce", ...parts }));
    };
    await fn({ plane, ext4, tmpfs, apply });
  } finally {
    plane.close();
    DataPlane.detach(bpffs);
    Deno.removeSync(bpffs);
    if (mounted) await sh(`umount '${ext4}'`);
    Deno.removeSync(ext4);
    Deno.removeSync(image);
    Deno.removeSync(tmpfs, { recursive: true });
  }
}

/** A fresh directory owned by `uid` holding one denied-to-be file per change (owned NOBODY:0, 30 bytes). */
async function makeFiles(base: string, uid: number): Promise<{ dir: string; files: string[] }> {
  const dir = `${base}/as${uid}`;
  Deno.mkdirSync(dir, { mode: 0o755 });
  Deno.chownSync(dir, uid, uid);
  const files: string[] = [];
  for (const [i, change] of CHANGES.entries()) {
    const path = `${dir}/secret${i}`;
    Deno.writeTextFileSync(path, CONTENT, { mode: 0o644 });
    Deno.chmodSync(path, 0o644);
    Deno.chownSync(path, NOBODY, 0);
    if (change.op === FILE_OP.REMOVEXATTR) {
      assert.equal((await probe(0, "setxattr", path, "user.kept", "kept")).out, "ok setxattr");
    }
    files.push(path);
  }
  Deno.writeTextFileSync(`${dir}/decoy`, "decoy");
  Deno.chownSync(`${dir}/decoy`, uid, uid);
  return { dir, files };
}

function changeEvents(plane: DataPlane): RawEvent[] {
  return drain(plane).filter((event) => event.hook === HOOK.FILE_CHANGE);
}

/** Every change of CHANGES as `uid`: refused and unchanged in enforce, then done and reported in audit. */
async function changesAs(t: Fixture, uid: number): Promise<void> {
  const { dir, files } = await makeFiles(t.ext4, uid);
  const plan = (mode: "enforce" | "audit") => ({
    mode,
    rules: [DEFAULT, SECRET],
    files: files.map((path) => ({ ruleId: 1, path })),
  });
  const inodes = files.map((path) => BigInt(stat(path).ino!));
  const counted = () => t.plane.counters().decisions.file_change;
  const before = counted();
  const assertReported = (events: RawEvent[], decision: number) => {
    const now = counted();
    assert.equal(decision === 0 ? now.deny - before.deny : now.audit - before.audit, BigInt(CHANGES.length));
    assert.deepEqual(
      events.map((event) => [event.op, event.ino, event.uid, event.decision, event.ruleId]),
      CHANGES.map((change, i) => [change.op, inodes[i], uid, decision, 1]),
      "one file.change event per change, naming the operation, the denied inode and the task's uid",
    );
  };

  /** Each change's name, what the probe printed, and whether the file shows the change. */
  const attempt = async () => {
    const results: [string, string, boolean][] = [];
    for (const [i, change] of CHANGES.entries()) {
      const outcome = await probe(uid, ...change.args(files[i]!, dir, uid));
      results.push([change.name, outcome.out.replace(/ \(.*\)$/, ""), await change.changed(files[i]!, dir)]);
    }
    return results;
  };

  await t.apply(plan("enforce"));
  drain(t.plane);
  assert.deepEqual(
    await attempt(),
    CHANGES.map((change) => [change.name, "errno EPERM", false]),
    `as uid ${uid} in enforce: refused, the file unchanged`,
  );
  assert.equal(stat(files[0]!).size, CONTENT.length, "truncate left the 30 bytes");
  assertReported(changeEvents(t.plane), 0);

  await t.apply(plan("audit"));
  assert.deepEqual(
    await attempt(),
    CHANGES.map((change, i) => [change.name, `ok ${change.args(files[i]!, dir, uid)[0]}`, true]),
    `as uid ${uid} in audit: changed`,
  );
  assertReported(changeEvents(t.plane), 1);
}

Deno.test({
  name: "[vm] file.change: a denied file cannot be truncated, unlinked, renamed, linked or re-attributed",
  ignore: !inVm,
  fn: () =>
    withFixture(async (t) => {
      await changesAs(t, 0);
      await changesAs(t, NOBODY);
    }),
});

Deno.test({
  name: "[vm] exec.denyMemfd: an unlinked file and an O_TMPFILE cannot run, on ext4 and tmpfs; audit reports",
  ignore: !inVm,
  fn: () =>
    withFixture(async (t) => {
      const busybox = Deno.realPathSync("/usr/bin/busybox");
      const cases = [t.ext4, t.tmpfs].flatMap((dir) => [["exec-unlinked", dir], ["exec-tmpfile", dir]]);
      const execs = () =>
        Promise.all(
          cases.map(([how, dir]) => probe(0, how!, dir!, busybox, "echo", "ran").then((o) => o.out)),
        );
      const plan = (mode: "enforce" | "audit") => ({
        mode,
        rules: [DEFAULT, MEMFD],
        denyMemfdExec: { ruleId: 1 },
      });
      await t.apply(plan("enforce"));
      drain(t.plane);
      assert.deepEqual(await execs(), cases.map(() => "errno EPERM (fexecve)"), cases.join(" "));
      assert.equal((await new Deno.Command(busybox, { args: ["true"] }).output()).code, 0, "named files run");
      const denied = drain(t.plane).filter((event) => event.hook === HOOK.EXEC);
      assert.deepEqual(denied.map((event) => [event.decision, event.ruleId]), cases.map(() => [0, 1]));

      await t.apply(plan("audit"));
      assert.deepEqual(await execs(), cases.map(() => "ran"));
      const audited = drain(t.plane).filter((event) => event.hook === HOOK.EXEC);
      assert.deepEqual(audited.map((event) => [event.decision, event.ruleId]), cases.map(() => [1, 1]));
    }),
});
