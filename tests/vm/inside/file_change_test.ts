import assert from "node:assert/strict";
import { type BpfObject, DECISION, FILE_OP, HOOK } from "../../../ffi/mod.ts";
import { loadPrograms, PROGRAMS } from "../../../lib/kernel/object.ts";
import { uniqueName } from "../../support/privileged.ts";
import { counter, drainEvents, inodeOf, writeRules } from "../../support/slice.ts";

// A file deny rule inside the qemu guest, where BPF-LSM loads: the denied inode cannot be changed without
// being opened (truncate, unlink, rename, link, chmod, chown, utimes, extended attributes), by root or by
// its owner, and exec.denyMemfd refuses any file with no name on ext4 as on tmpfs. The moves are made by
// tests/fixtures/file_change_probe.c, one system call each. Only the programs under test are loaded (the
// product attaches them with file and exec rules: lib/kernel/load.ts, checked by inspect_test.ts).
const inVm = Deno.env.get("AEGIS_IN_VM") === "1";
const FIXTURES = `${Deno.cwd()}/bpf/build/fixtures`;
const PROBE = `${FIXTURES}/file_change_probe`;
const NOBODY = 65534;
const CONTENT = "thirty bytes of a secret file\n";

/** Runs each command (UID COMMAND ARG...) in a process of its own, in order: what each printed. */
async function batch(commands: readonly string[][]): Promise<string[]> {
  const args = ["batch", ...commands.flatMap((command, i) => i === 0 ? command : ["--", ...command])];
  const output = await new Deno.Command(PROBE, { args, stdout: "piped", stderr: "piped" }).output();
  const decoder = new TextDecoder();
  assert.ok(output.success, decoder.decode(output.stderr));
  const lines = decoder.decode(output.stdout).trimEnd().split("\n");
  assert.equal(lines.length, commands.length, lines.join("\n"));
  return lines;
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
  /** For extended attributes: the probe's getxattr arguments that tell whether the change was made. */
  read?: (path: string) => string[];
  /** Whether the file at `path` shows the change (`read`: what the getxattr printed). */
  changed: (path: string, dir: string, read: string) => boolean;
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

const CHANGES: readonly Change[] = [
  {
    name: "truncate",
    op: FILE_OP.TRUNCATE,
    args: (p) => ["truncate", p],
    changed: (p) => stat(p).size === 0,
  },
  { name: "unlink", op: FILE_OP.UNLINK, args: (p) => ["unlink", p], changed: (p) => !exists(p) },
  {
    name: "rename",
    op: FILE_OP.RENAME,
    args: (p) => ["rename", p, `${p}.moved`],
    changed: (p) => !exists(p) && exists(`${p}.moved`),
  },
  {
    name: "rename over",
    op: FILE_OP.RENAME,
    args: (p, dir) => ["rename", `${dir}/decoy`, p],
    changed: (_p, dir) => !exists(`${dir}/decoy`),
  },
  {
    name: "link",
    op: FILE_OP.LINK,
    args: (p) => ["link", p, `${p}.link`],
    changed: (p) => stat(p).nlink === 2,
  },
  {
    name: "chmod",
    op: FILE_OP.CHMOD,
    args: (p) => ["chmod", p, "0600"],
    changed: (p) => (stat(p).mode! & 0o777) === 0o600,
  },
  {
    name: "chown",
    op: FILE_OP.CHOWN,
    // root takes the file; its owner gives it its own group (the file starts as NOBODY:0)
    args: (p, _dir, uid) => ["chown", p, uid === 0 ? "0" : "-1", uid === 0 ? "0" : String(NOBODY)],
    changed: (p) => stat(p).uid === 0 || stat(p).gid === NOBODY,
  },
  {
    name: "utimes",
    op: FILE_OP.UTIMES,
    args: (p) => ["utimes", p, "1000000000"],
    changed: (p) => stat(p).mtime?.getTime() === 1e12,
  },
  {
    name: "setxattr",
    op: FILE_OP.SETXATTR,
    args: (p) => ["setxattr", p, "user.aegis", "set"],
    read: (p) => ["getxattr", p, "user.aegis"],
    changed: (_p, _dir, read) => read === "ok set",
  },
  {
    name: "removexattr",
    op: FILE_OP.REMOVEXATTR,
    args: (p) => ["removexattr", p, "user.kept"],
    read: (p) => ["getxattr", p, "user.kept"],
    changed: (_p, _dir, read) => read !== "ok kept",
  },
];

type Fixture = {
  object: BpfObject;
  /** A directory on ext4 (a loop-mounted image) and one on tmpfs. */
  ext4: string;
  tmpfs: string;
};

/** The programs that judge changes and nameless execs, alone: the test loads nothing else (TCG is slow). */
const UNDER_TEST = [
  PROGRAMS.inodeSetattr,
  PROGRAMS.inodeUnlink,
  PROGRAMS.inodeLink,
  PROGRAMS.inodeSetxattr,
  PROGRAMS.inodeRemovexattr,
  PROGRAMS.inodeRename,
  PROGRAMS.memfdExec,
];

/** The programs under test loaded and attached, an ext4 mount and a tmpfs directory. */
async function withFixture(fn: (fixture: Fixture) => Promise<void>): Promise<void> {
  const name = uniqueName("aegisbpf-fchange");
  const tmpfs = `/tmp/${name}`;
  const image = `/tmp/${name}.img`;
  const ext4 = `/mnt/${name}`;
  Deno.mkdirSync(tmpfs, { mode: 0o755 });
  Deno.mkdirSync(ext4, { recursive: true });
  Deno.copyFileSync(`${FIXTURES}/ext4.img`, image);
  let mounted = false;
  const object = loadPrograms(UNDER_TEST);
  try {
    for (const program of UNDER_TEST) object.program(program).attach();
    await sh(`mount -o loop -t ext4 '${image}' '${ext4}'`);
    mounted = true;
    await fn({ object, ext4, tmpfs });
  } finally {
    object.close();
    if (mounted) await sh(`umount '${ext4}'`);
    Deno.removeSync(ext4);
    Deno.removeSync(image);
    Deno.removeSync(tmpfs, { recursive: true });
  }
}

/** A change of CHANGES tried as `uid` on its own file (owned NOBODY:0, 30 bytes) in a directory of `uid`'s. */
type Attempt = { change: Change; uid: number; path: string; dir: string };

async function makeAttempts(base: string, uid: number): Promise<Attempt[]> {
  const dir = `${base}/as${uid}`;
  Deno.mkdirSync(dir, { mode: 0o755 });
  Deno.chownSync(dir, uid, uid);
  Deno.writeTextFileSync(`${dir}/decoy`, "decoy");
  Deno.chownSync(`${dir}/decoy`, uid, uid);
  const attempts = CHANGES.map((change, i) => {
    const path = `${dir}/secret${i}`;
    Deno.writeTextFileSync(path, CONTENT, { mode: 0o644 });
    Deno.chmodSync(path, 0o644);
    Deno.chownSync(path, NOBODY, 0);
    return { change, uid, path, dir };
  });
  const kept = attempts.filter((attempt) => attempt.change.op === FILE_OP.REMOVEXATTR);
  assert.deepEqual(
    await batch(kept.map(({ path }) => ["0", "setxattr", path, "user.kept", "kept"])),
    kept.map(() => "ok setxattr"),
  );
  return attempts;
}

/** Runs every attempt: for each, its label, what the probe printed (no detail) and whether the file changed. */
async function attemptAll(attempts: readonly Attempt[]): Promise<[string, string, boolean][]> {
  const outs = await batch(
    attempts.map(({ change, uid, path, dir }) => [String(uid), ...change.args(path, dir, uid)]),
  );
  const reading = attempts.filter(({ change }) => change.read);
  const reads = await batch(reading.map(({ change, path }) => ["0", ...change.read!(path)]));
  return attempts.map((attempt, i) => [
    `${attempt.change.name} as ${attempt.uid}`,
    outs[i]!.replace(/ \(.*\)$/, ""),
    attempt.change.changed(attempt.path, attempt.dir, reads[reading.indexOf(attempt)] ?? ""),
  ]);
}

Deno.test({
  name: "[vm] file.change: a denied file cannot be truncated, unlinked, renamed, linked or re-attributed; " +
    "exec.denyMemfd: no exec of an unlinked file or an O_TMPFILE, on ext4 and tmpfs",
  ignore: !inVm,
  fn: () =>
    withFixture(async (t) => {
      const attempts = [...await makeAttempts(t.ext4, 0), ...await makeAttempts(t.ext4, NOBODY)];
      const inodes = attempts.map(({ path }) => BigInt(stat(path).ino!));
      // A copy of the probe itself runs and says "ran".
      const execs = [t.ext4, t.tmpfs].flatMap((dir) =>
        ["exec-unlinked", "exec-tmpfile"].map((how) => ["0", how, dir, PROBE, "probe", "0", "ran"])
      );
      const apply = (mode: "enforce" | "audit") =>
        writeRules(t.object, {
          plan: { mode, denyMemfdExec: { ruleId: 2 } },
          files: attempts.map(({ path }) => inodeOf(path, 1)),
        });
      const counted = (decision: number) => counter(t.object, HOOK.FILE_CHANGE * 2 + decision);
      /** The events since the last call: one file.change per attempt, one exec per nameless exec. */
      const assertReported = (decision: number) => {
        const events = drainEvents(t.object);
        assert.deepEqual(
          events.filter((event) => event.hook === HOOK.FILE_CHANGE)
            .map((event) => [event.op, event.ino, event.uid, event.decision, event.ruleId]),
          attempts.map(({ change, uid }, i) => [change.op, inodes[i], uid, decision, 1]),
          "one file.change event per change, naming the operation, the denied inode and the task's uid",
        );
        assert.deepEqual(
          events.filter((event) => event.hook === HOOK.EXEC).map((event) => [event.decision, event.ruleId]),
          execs.map(() => [decision, 2]),
        );
      };

      apply("enforce");
      drainEvents(t.object);
      const before = [counted(DECISION.DENY), counted(DECISION.AUDIT)] as const;
      // The nameless execs first: their files must not take the inode number of a secret unlinked in audit.
      assert.deepEqual(
        await batch(execs),
        execs.map(() => "errno EPERM (fexecve)"),
        "nameless execs refused",
      );
      assert.deepEqual(
        await attemptAll(attempts),
        attempts.map(({ change, uid }) => [`${change.name} as ${uid}`, "errno EPERM", false]),
        "enforce: refused, the file unchanged",
      );
      assert.equal(stat(attempts[0]!.path).size, CONTENT.length, "truncate left the 30 bytes");
      assertReported(0);
      assert.equal(counted(DECISION.DENY) - before[0], BigInt(attempts.length));

      apply("audit");
      assert.deepEqual(await batch(execs), execs.map(() => "ran"), "nameless execs run in audit");
      assert.deepEqual(
        await attemptAll(attempts),
        attempts.map(({ change, uid, path, dir }) => [
          `${change.name} as ${uid}`,
          `ok ${change.args(path, dir, uid)[0]}`,
          true,
        ]),
        "audit: changed",
      );
      assertReported(1);
      assert.equal(counted(DECISION.AUDIT) - before[1], BigInt(attempts.length));
    }),
});
