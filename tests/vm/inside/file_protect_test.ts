import assert from "node:assert/strict";
import { type BpfObject, DECISION, FILE_OP, HOOK, type RawEvent } from "../../../ffi/mod.ts";
import { optionalLsmPrograms } from "../../../lib/kernel/load.ts";
import { loadPrograms, PROGRAMS } from "../../../lib/kernel/object.ts";
import { resolvePlan } from "../../../lib/kernel/resolve.ts";
import { emptyPlan, type InodeTarget, type RuleSetPlan } from "../../../lib/policy/plan.ts";
import { uniqueName } from "../../support/privileged.ts";
import { counter, drainEvents, writeRules } from "../../support/slice.ts";

// files.protect inside the qemu guest, where BPF-LSM loads: a protected file may be read and run, and every
// way of writing it is refused (enforce) or reported (audit) as a file.write event naming the operation and
// the protected inode; a protected directory (recursive) refuses every entry change anywhere below it, also
// through a descriptor of the directory taken before the apply. The moves are made by
// tests/fixtures/file_change_probe.c, one system call each, as root, on ext4. Only the programs under test
// are loaded (the product attaches them with file rules: lib/kernel/load.ts, checked by inspect_test.ts).
const inVm = Deno.env.get("AEGIS_IN_VM") === "1";
const FIXTURES = `${Deno.cwd()}/bpf/build/fixtures`;
const PROBE = `${FIXTURES}/file_change_probe`;
const CONTENT = "thirty bytes of a secret file\n";

/** The programs that judge files.protect, alone: the test loads nothing else (TCG is slow). */
const UNDER_TEST = [
  PROGRAMS.fileOpen,
  PROGRAMS.inodeSetattr,
  PROGRAMS.inodeUnlink,
  PROGRAMS.inodeLink,
  PROGRAMS.inodeSetxattr,
  PROGRAMS.inodeRemovexattr,
  PROGRAMS.inodeRename,
  PROGRAMS.inodeCreate,
  PROGRAMS.inodeMkdir,
  PROGRAMS.inodeSymlink,
  PROGRAMS.inodeMknod,
  PROGRAMS.inodeRmdir,
  PROGRAMS.sbMount,
  PROGRAMS.moveMount,
  // POSIX ACLs from 6.2 on (before, inode_setxattr judges them)
  ...optionalLsmPrograms(),
];

/** Runs each command (UID COMMAND ARG...) in a process of its own, in order: what each printed. */
async function batch(commands: readonly string[][]): Promise<string[]> {
  const args = ["batch", ...commands.flatMap((command, i) => i === 0 ? command : ["--", ...command])];
  const output = await new Deno.Command(PROBE, { args, stdout: "piped", stderr: "piped" }).output();
  const decoder = new TextDecoder();
  assert.ok(output.success, decoder.decode(output.stderr));
  const lines = decoder.decode(output.stdout).trimEnd().split("\n");
  assert.equal(lines.length, commands.length, lines.join("\n"));
  return lines.map((line) => line.replace(/ \(.*\)$/, ""));
}

async function sh(command: string): Promise<void> {
  const output = await new Deno.Command("sh", { args: ["-c", command], stderr: "piped" }).output();
  assert.ok(output.success, `${command}: ${new TextDecoder().decode(output.stderr)}`);
}

const ino = (path: string) => BigInt(Deno.lstatSync(path).ino!);

/**
 * One write tried: the probe's arguments (paths relative to the layout's root), and the file.write events
 * it makes in audit, in order, as [op, path of the inode named]; enforce refuses at the first of them.
 */
type Attempt = { name: string; args: string[]; events: [number, string][] };

const ATTEMPTS: readonly Attempt[] = [
  // a protected file (files/, itself not protected)
  { name: "open O_WRONLY", args: ["open", "wronly", "files/f0"], events: [[FILE_OP.OPEN_WRITE, "files/f0"]] },
  { name: "open O_RDWR", args: ["open", "rdwr", "files/f1"], events: [[FILE_OP.OPEN_WRITE, "files/f1"]] },
  {
    name: "open O_RDONLY|O_TRUNC",
    args: ["open", "trunc", "files/f2"],
    events: [[FILE_OP.OPEN_WRITE, "files/f2"], [FILE_OP.TRUNCATE, "files/f2"]],
  },
  { name: "truncate", args: ["truncate", "files/f3"], events: [[FILE_OP.TRUNCATE, "files/f3"]] },
  { name: "unlink", args: ["unlink", "files/f4"], events: [[FILE_OP.UNLINK, "files/f4"]] },
  {
    name: "rename away",
    args: ["rename", "files/f5", "files/f5.moved"],
    events: [[FILE_OP.RENAME, "files/f5"]],
  },
  {
    name: "rename over",
    args: ["rename", "files/decoy", "files/f6"],
    events: [[FILE_OP.RENAME, "files/f6"]],
  },
  { name: "link", args: ["link", "files/f7", "files/f7.link"], events: [[FILE_OP.LINK, "files/f7"]] },
  { name: "chmod", args: ["chmod", "files/f8", "0600"], events: [[FILE_OP.CHMOD, "files/f8"]] },
  { name: "chown", args: ["chown", "files/f9", "0", "0"], events: [[FILE_OP.CHOWN, "files/f9"]] },
  { name: "utimes", args: ["utimes", "files/f10", "1000000000"], events: [[FILE_OP.UTIMES, "files/f10"]] },
  {
    name: "setxattr",
    args: ["setxattr", "files/f11", "user.aegis", "set"],
    events: [[FILE_OP.SETXATTR, "files/f11"]],
  },
  {
    name: "removexattr",
    args: ["removexattr", "files/f12", "user.kept"],
    events: [[FILE_OP.REMOVEXATTR, "files/f12"]],
  },
  // POSIX ACLs: through inode_setxattr before 6.2, inode_set_acl and inode_remove_acl from 6.2 on
  { name: "setfacl", args: ["setacl", "files/f17"], events: [[FILE_OP.SETXATTR, "files/f17"]] },
  { name: "setfacl -b", args: ["removeacl", "files/f18"], events: [[FILE_OP.REMOVEXATTR, "files/f18"]] },
  {
    name: "O_PATH reopened",
    args: ["opath-reopen", "files/f13"],
    events: [[FILE_OP.OPEN_WRITE, "files/f13"]],
  },
  {
    name: "open_by_handle_at",
    args: ["handle-open", "files/f14", "."],
    events: [[FILE_OP.OPEN_WRITE, "files/f14"]],
  },
  {
    name: "through a second hard link",
    args: ["open", "wronly", "files/f15.second"],
    events: [[FILE_OP.OPEN_WRITE, "files/f15"]],
  },
  {
    name: "through a bind mount",
    args: ["open", "wronly", "outside/bound"],
    events: [[FILE_OP.OPEN_WRITE, "files/f16"]],
  },
  // a recursive entry: cron/ and everything below it
  { name: "create in it", args: ["open", "creat", "cron/new"], events: [[FILE_OP.CREATE, "cron"]] },
  {
    name: "create below it",
    args: ["open", "creat", "cron/sub/new"],
    events: [[FILE_OP.CREATE, "cron/sub"]],
  },
  { name: "mkdir", args: ["mkdir", "cron/newdir"], events: [[FILE_OP.MKDIR, "cron"]] },
  { name: "symlink", args: ["symlink", "/etc/passwd", "cron/link"], events: [[FILE_OP.SYMLINK, "cron"]] },
  { name: "mknod", args: ["mkfifo", "cron/fifo"], events: [[FILE_OP.MKNOD, "cron"]] },
  {
    name: "unlink inside",
    args: ["unlink", "cron/e1"],
    events: [[FILE_OP.UNLINK, "cron/e1"], [FILE_OP.UNLINK, "cron"]],
  },
  {
    name: "rmdir inside",
    args: ["rmdir", "cron/empty"],
    events: [[FILE_OP.RMDIR, "cron/empty"], [FILE_OP.RMDIR, "cron"]],
  },
  {
    name: "rename into",
    args: ["rename", "outside/mover", "cron/mover"],
    events: [[FILE_OP.RENAME, "cron"]],
  },
  {
    name: "rename out of",
    args: ["rename", "cron/e2", "outside/e2"],
    events: [[FILE_OP.RENAME, "cron/e2"], [FILE_OP.RENAME, "cron"]],
  },
  { name: "link into", args: ["link", "outside/linkme", "cron/linked"], events: [[FILE_OP.LINK, "cron"]] },
  {
    name: "open a file below",
    args: ["open", "wronly", "cron/sub/e3"],
    events: [[FILE_OP.OPEN_WRITE, "cron/sub/e3"]],
  },
  // a directory without recursive: its entries are fixed, its files are not protected
  { name: "create in a plain entry", args: ["open", "creat", "ssh/new"], events: [[FILE_OP.CREATE, "ssh"]] },
  { name: "write a file of a plain entry", args: ["open", "wronly", "ssh/keys"], events: [] },
  // mounts over a protected path (last: in audit they are made, and change what the paths show)
  {
    name: "tmpfs over a directory",
    args: ["mount-tmpfs", "cron/sub"],
    events: [[FILE_OP.MOUNT, "cron/sub"]],
  },
  {
    name: "bind mount over a file",
    args: ["bind", "outside/linkme", "files/f14"],
    events: [[FILE_OP.MOUNT, "files/f14"]],
  },
  {
    name: "move_mount over a file",
    args: ["move-bind", "outside/linkme", "files/f13"],
    events: [[FILE_OP.MOUNT, "files/f13"]],
  },
];

/** Protected files f0..f16 in files/ (each alone), cron/ (recursive) and ssh/ (its entries), outside/ not. */
function makeLayout(root: string): void {
  for (const dir of ["files", "cron/sub", "cron/empty", "ssh", "outside"]) {
    Deno.mkdirSync(`${root}/${dir}`, { recursive: true });
  }
  for (let i = 0; i <= 18; i++) Deno.writeTextFileSync(`${root}/files/f${i}`, CONTENT, { mode: 0o644 });
  Deno.linkSync(`${root}/files/f15`, `${root}/files/f15.second`);
  for (const path of ["files/decoy", "cron/e1", "cron/e2", "cron/sub/e3", "ssh/keys", "outside/mover"]) {
    Deno.writeTextFileSync(`${root}/${path}`, "x");
  }
  Deno.writeTextFileSync(`${root}/outside/linkme`, "x");
  Deno.writeTextFileSync(`${root}/outside/bound`, "x");
  Deno.chownSync(`${root}/files/f9`, 65534, 65534);
  Deno.copyFileSync(PROBE, `${root}/files/probe`);
  Deno.chmodSync(`${root}/files/probe`, 0o755);
}

/** The plan of the layout: each protected file alone, cron/ recursive, ssh/ plain. */
function layoutPlan(root: string, mode: "enforce" | "audit"): RuleSetPlan {
  const protect: InodeTarget[] = [
    ...Array.from({ length: 17 }, (_, i) => ({ ruleId: 1 + i, path: `${root}/files/f${i}` })),
    { ruleId: 18, path: `${root}/files/probe` },
    { ruleId: 19, path: `${root}/cron`, recursive: true },
    { ruleId: 20, path: `${root}/ssh` },
    { ruleId: 21, path: `${root}/files/f17` },
    { ruleId: 22, path: `${root}/files/f18` },
  ];
  const rules = [
    ...emptyPlan().rules,
    ...protect.map(({ ruleId, path }) => ({
      id: `p${ruleId}`,
      area: "file" as const,
      action: "deny" as const,
      path,
    })),
  ];
  return { ...emptyPlan(mode), rules, protect };
}

type Fixture = { object: BpfObject; ext4: string };

async function withFixture(fn: (fixture: Fixture) => Promise<void>): Promise<void> {
  const name = uniqueName("aegisbpf-protect");
  const image = `/tmp/${name}.img`;
  const ext4 = `/mnt/${name}`;
  Deno.mkdirSync(ext4, { recursive: true });
  Deno.copyFileSync(`${FIXTURES}/ext4.img`, image);
  let mounted = false;
  const object = loadPrograms(UNDER_TEST);
  try {
    for (const program of UNDER_TEST) object.program(program).attach();
    await sh(`mount -o loop -t ext4 '${image}' '${ext4}'`);
    mounted = true;
    await fn({ object, ext4 });
  } finally {
    object.close();
    if (mounted) await sh(`umount '${ext4}'`);
    Deno.removeSync(ext4);
    Deno.removeSync(image);
  }
}

/** The file.write events since the last call, as [op, inode, decision, rule]. */
function writeEvents(object: BpfObject): [number, bigint, number, number][] {
  return drainEvents(object).filter((event: RawEvent) => event.hook === HOOK.FILE_WRITE)
    .map((
      event,
    ) => [event.op, BigInt(event.inoHi) * 2n ** 32n + BigInt(event.inoLo), event.decision, event.ruleId]);
}

/** A probe that opened a directory or file before the apply (`held-dir`, `held-write`), waiting for `signal`. */
async function holder(args: string[], signal: string): Promise<{ done: Promise<Deno.CommandOutput> }> {
  const child = new Deno.Command(PROBE, { args: ["0", ...args, signal], stdout: "piped", stderr: "piped" })
    .spawn();
  // Opened once the probe holds a fourth descriptor (after stdin, stdout and stderr).
  while (Array.from(Deno.readDirSync(`/proc/${child.pid}/fd`)).length < 4) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return { done: child.output() };
}

const said = (output: Deno.CommandOutput) => new TextDecoder().decode(output.stdout).trim().split("\n");

/** One mode's attempts on a fresh layout under the ext4 mount (the working directory meanwhile). */
async function runMode(t: Fixture, mode: "enforce" | "audit"): Promise<void> {
  const root = `${t.ext4}/${mode}`;
  makeLayout(root);
  const cwd = Deno.cwd();
  Deno.chdir(root);
  // On tmpfs: a file created on the ext4 mount could reuse the number of an inode unlinked in audit, which
  // the rules still name (README, known limits), and its open would be reported.
  const signal = `/tmp/${uniqueName("aegisbpf-protect-go")}`;
  const holders: Promise<Deno.CommandOutput>[] = [];
  try {
    await batch([["0", "setxattr", "files/f12", "user.kept", "kept"], ["0", "setacl", "files/f18"]]);
    await sh("mount -o bind files/f16 outside/bound");
    // Descriptors taken before the apply: the cron directory, and a protected file opened for writing.
    holders.push((await holder(["held-dir", "cron", "late"], signal)).done);
    holders.push((await holder(["held-write", "files/f0"], signal)).done);
    await attempt(t, root, mode);
    Deno.writeTextFileSync(signal, "");
    const [dirDone, fileDone] = await Promise.all(holders);
    const decision = mode === "enforce" ? DECISION.DENY : DECISION.AUDIT;
    assert.deepEqual(
      said(dirDone!),
      ["opened", mode === "enforce" ? "errno EPERM (openat)" : "ok held-dir"],
      "a directory opened before the apply gets no new entry either",
    );
    assert.deepEqual(writeEvents(t.object), [[FILE_OP.CREATE, ino("cron"), decision, 19]]);
    // A descriptor opened for writing before the apply keeps writing: no hook runs on write(2) or on a
    // shared mapping of it (README, known limits).
    assert.deepEqual(said(fileDone!), ["opened", "ok held-write"]);
    assert.equal(Deno.readTextFileSync("files/f0").slice(0, 2), "MW");
  } finally {
    // Never leave a holder waiting, whatever failed.
    Deno.writeTextFileSync(signal, "");
    await Promise.allSettled(holders);
    for (const mounted of ["outside/bound", "cron/sub", "files/f14", "files/f13"]) {
      await new Deno.Command("umount", { args: [`${root}/${mounted}`], stderr: "null" }).output();
    }
    Deno.removeSync(signal);
    Deno.chdir(cwd);
  }
}

/** The apply, reads and runs (allowed), then every attempt of ATTEMPTS and the events they made. */
async function attempt(t: Fixture, root: string, mode: "enforce" | "audit"): Promise<void> {
  const inodes = new Map<string, bigint>();
  for (const { events } of ATTEMPTS) for (const [, path] of events) inodes.set(path, ino(path));
  const resolved = resolvePlan(layoutPlan(root, mode));
  assert.ok(
    resolved.protect?.some((inode) => inode.ino === ino("cron/sub")),
    "a recursive entry protects the directories below it",
  );
  writeRules(t.object, resolved);
  drainEvents(t.object);
  const decision = mode === "enforce" ? DECISION.DENY : DECISION.AUDIT;
  const before = counter(t.object, HOOK.FILE_WRITE * 2 + decision);
  const file = (path: string) => Number(/^files\/f(\d+)$/.exec(path)![1]);
  // f0-f16 are rules 1-17, f17 and f18 (the ACL files) 21 and 22.
  const rule = (path: string) =>
    path.startsWith("cron") ? 19 : path === "ssh" ? 20 : file(path) <= 16 ? 1 + file(path) : 4 + file(path);

  // Reading and running: allowed, no event.
  assert.equal(Deno.readTextFileSync("files/f1"), CONTENT);
  assert.deepEqual(await batch([["0", "open", "rdonly", "files/f1"]]), ["ok open"]);
  const ran = await new Deno.Command(`${root}/files/probe`, { args: ["0", "ran"], stdout: "piped" }).output();
  assert.equal(new TextDecoder().decode(ran.stdout), "ran\n", "a protected binary runs");
  assert.deepEqual(writeEvents(t.object), [], "reading and running are not writes");

  const outs = await batch(ATTEMPTS.map(({ args }) => ["0", ...args]));
  assert.deepEqual(
    ATTEMPTS.map(({ name }, i) => `${name}: ${outs[i]}`),
    ATTEMPTS.map(({ name, args, events }) =>
      `${name}: ${events.length === 0 || mode === "audit" ? `ok ${args[0]}` : "errno EPERM"}`
    ),
    `${mode}: every write of a protected inode ${mode === "enforce" ? "refused" : "made"}`,
  );
  const expected = ATTEMPTS.flatMap(({ events }) =>
    (mode === "enforce" ? events.slice(0, 1) : events).map(([op, path]) =>
      [op, inodes.get(path)!, decision, rule(path)] as [number, bigint, number, number]
    )
  );
  assert.deepEqual(writeEvents(t.object), expected, "one file.write per decision: the operation, the inode");
  assert.equal(counter(t.object, HOOK.FILE_WRITE * 2 + decision) - before, BigInt(expected.length));
  if (mode === "enforce") {
    assert.equal(Deno.readTextFileSync("files/f2"), CONTENT, "O_TRUNC and truncate left the content");
    assert.equal(Deno.readTextFileSync("files/f3"), CONTENT);
    assert.equal(Deno.lstatSync("files/f9").uid, 65534, "chown left the owner");
    assert.deepEqual(Array.from(Deno.readDirSync("cron"), (entry) => entry.name).sort(), [
      "e1",
      "e2",
      "empty",
      "sub",
    ]);
  }
}

Deno.test({
  name: "[vm] file.write: a protected file is read and run but never written, a protected directory gets " +
    "no new, removed or renamed entry, in enforce (EPERM) and audit (reported)",
  ignore: !inVm,
  fn: () =>
    withFixture(async (t) => {
      await runMode(t, "enforce");
      writeRules(t.object, {});
      await runMode(t, "audit");
    }),
});
