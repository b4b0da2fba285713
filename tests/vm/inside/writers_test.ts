import assert from "node:assert/strict";
import { DECISION, EXEC_REASON, FILE_OP, HOOK, type RawEvent } from "../../../ffi/mod.ts";
import { cgroup2Root } from "../../../lib/kernel/cgroup.ts";
import type { DataPlane } from "../../../lib/kernel/dataplane.ts";
import { exists } from "../../../lib/kernel/pin_dir.ts";
import { resolvePlan, sha256OfFile } from "../../../lib/kernel/resolve.ts";
import { compilePolicy } from "../../../lib/policy/compile.ts";
import { parseExecutableMappings } from "../../../lib/policy/facts.ts";
import { parsePolicySource } from "../../../lib/policy/parse.ts";
import type { RuleSetPlan } from "../../../lib/policy/plan.ts";
import { uniqueName } from "../../support/privileged.ts";
import { drain } from "../../support/plane.ts";
import { SharedPlane } from "../../support/shared_plane.ts";
import { copyExecutable, type Outcome, run } from "../../support/outcome.ts";

// files.writers inside the qemu guest, where BPF-LSM loads: a trusted writer (by the inode of its program,
// and with children: true every process it starts) may change protected files; its dpkg-style replace
// (write a temporary file, rename it over) passes the protection, and an exec.allow entry's allowance, to
// the new inode; anyone else's is refused, or gives an untrusted inode. A protected or allowed inode's
// number reused by a new file (ext4 reuses freed numbers at once) does not pass its rule on: the rule holds
// the inode's i_generation. Policies are compiled from text (compilePolicy: writers are subjects) and scoped
// to a cgroup of the test's own; the moves are made by tests/fixtures/file_change_probe.c, on ext4.
const inVm = Deno.env.get("AEGIS_IN_VM") === "1";
const FIXTURES = `${Deno.cwd()}/bpf/build/fixtures`;
const PROBE = `${FIXTURES}/file_change_probe`;
const shared = new SharedPlane("writers");
let counter = 0;

type Fixture = {
  plane: DataPlane;
  /** The ext4 mount the files live on. */
  root: string;
  /** Runs argv inside the test's scope cgroup (moved there by a shell, which then execs it). */
  inScope: (...argv: string[]) => Promise<Outcome>;
  /** Compiles and applies `spec` (YAML lines under `spec:`), scoped to the test's cgroup. */
  apply: (mode: "enforce" | "audit", spec: string) => Promise<RuleSetPlan>;
};

function vmTest(name: string, fn: (fixture: Fixture) => Promise<void>): void {
  Deno.test({
    name,
    ignore: !inVm,
    fn: async () => {
      counter++;
      const name = uniqueName("aegisbpf-writers");
      const image = `/tmp/${name}.img`;
      const root = `/mnt/${name}`;
      const cgroup = `${cgroup2Root()}/aegisbpf-writers-${counter}`;
      if (exists(cgroup)) Deno.removeSync(cgroup);
      Deno.mkdirSync(cgroup);
      Deno.mkdirSync(root, { recursive: true });
      Deno.copyFileSync(`${FIXTURES}/ext4.img`, image);
      let mounted = false;
      try {
        const mount = await run("mount", ["-o", "loop", "-t", "ext4", image, root]);
        assert.equal(mount.code, 0, `ext4 mount: ${mount.out}`);
        mounted = true;
        const plane = shared.open({ areas: ["file", "exec"] });
        try {
          assert.equal(plane.status.file.mode, "enforce", `file area: ${plane.status.file.reason}`);
          const inScope = (...argv: string[]) =>
            run("sh", ["-c", `echo $$ > '${cgroup}/cgroup.procs' && exec "$@"`, "sh", ...argv]);
          const apply = async (mode: "enforce" | "audit", spec: string) => {
            const text =
              "apiVersion: aegisbpf.io/v1\nkind: Policy\nmetadata: { name: writers, version: 1 }\n" +
              `spec:\n  mode: ${mode}\n  scope: { cgroups: [${
                cgroup.slice(cgroup2Root().length)
              }] }\n${spec}`;
            const plan = compilePolicy(parsePolicySource(text, "writers.yaml").policy);
            await plane.apply(resolvePlan(plan));
            drain(plane);
            return plan;
          };
          await fn({ plane, root, inScope, apply });
        } finally {
          await shared.release(plane);
        }
      } finally {
        if (mounted) await run("umount", [root]);
        Deno.removeSync(root);
        Deno.removeSync(image);
        Deno.removeSync(cgroup);
      }
    },
  });
}

const ino = (path: string) => BigInt(Deno.statSync(path).ino!);
const ruleId = (plan: RuleSetPlan, id: string) => plan.rules.findIndex((rule) => rule.id === id);

/** Action events (no rate-limit summaries) of `hook`, as [op, ino, decision, rule]. */
function events(plane: DataPlane, hook: number): [number, bigint, number, number][] {
  return drain(plane).filter((event: RawEvent) => event.hook === hook && !(event.flags & 1))
    .map((event) => [event.op, event.ino, event.decision, event.ruleId]);
}

/** The layout: bin/ with the writers and a plain probe, etc/ with a protected file and directory, tmp/ free. */
function layout(root: string) {
  for (const dir of ["bin", "etc/cron.d", "tmp"]) Deno.mkdirSync(`${root}/${dir}`, { recursive: true });
  Deno.writeTextFileSync(`${root}/etc/sudoers`, "v1\n");
  Deno.writeTextFileSync(`${root}/etc/cron.d/job`, "x\n");
  return {
    dpkg: copyExecutable(PROBE, `${root}/bin/dpkg`), // a writer, alone
    apt: copyExecutable(PROBE, `${root}/bin/apt`), // a writer with children: true
    probe: copyExecutable(PROBE, `${root}/bin/probe`), // anyone else
    sudoers: `${root}/etc/sudoers`,
    cron: `${root}/etc/cron.d`,
  };
}

const PROTECT_SPEC = (root: string) =>
  "  files:\n    protect:\n" +
  `      - { id: sudoers, path: ${root}/etc/sudoers }\n` +
  `      - { id: cron, path: ${root}/etc/cron.d, recursive: true }\n` +
  "    writers:\n" +
  `      - { id: dpkg, exe: ${root}/bin/dpkg }\n` +
  `      - { id: apt, exe: ${root}/bin/apt, children: true }\n`;

for (const mode of ["enforce", "audit"] as const) {
  vmTest(
    `[vm] files.writers (${mode}): a writer's replace by rename keeps the file protected, anyone else's is ` +
      "refused; children: true covers what the writer starts, not a child it left behind",
    async (t) => {
      const f = layout(t.root);
      const plan = await t.apply(mode, PROTECT_SPEC(t.root));
      const sudoersId = ruleId(plan, "sudoers"), cronId = ruleId(plan, "cron");
      const decision = mode === "enforce" ? DECISION.DENY : DECISION.AUDIT;
      const refusedOr = (ok: string) => mode === "enforce" ? /errno EPERM/ : new RegExp(`^ok ${ok}`);

      // dpkg's way: a new file written elsewhere, renamed over the protected one, by a writer.
      Deno.writeTextFileSync(`${t.root}/tmp/sudoers.new`, "v2\n");
      const replaced = await t.inScope(f.dpkg, "0", "rename", `${t.root}/tmp/sudoers.new`, f.sudoers);
      assert.equal(replaced.out, "ok rename", "the writer replaces the protected file");
      assert.equal(Deno.readTextFileSync(f.sudoers), "v2\n");
      assert.deepEqual(events(t.plane, HOOK.FILE_WRITE), [], "a writer's change is not reported");
      const newInode = ino(f.sudoers);
      const write = await t.inScope(f.probe, "0", "open", "wronly", f.sudoers);
      assert.match(write.out, refusedOr("open"), "the new inode is protected at once");
      assert.deepEqual(events(t.plane, HOOK.FILE_WRITE), [[
        FILE_OP.OPEN_WRITE,
        newInode,
        decision,
        sudoersId,
      ]]);

      // The same by anyone else: refused (reported in audit).
      Deno.writeTextFileSync(`${t.root}/tmp/evil`, "evil\n");
      const evil = await t.inScope(f.probe, "0", "rename", `${t.root}/tmp/evil`, f.sudoers);
      assert.match(evil.out, refusedOr("rename"), "another program's replace");
      assert.deepEqual(events(t.plane, HOOK.FILE_WRITE)[0], [FILE_OP.RENAME, newInode, decision, sudoersId]);
      if (mode === "enforce") assert.equal(Deno.readTextFileSync(f.sudoers), "v2\n");

      // Entries of a protected directory: the writer creates, anyone else is refused.
      assert.equal((await t.inScope(f.dpkg, "0", "open", "creat", `${f.cron}/by-dpkg`)).out, "ok open");
      assert.match(
        (await t.inScope(f.probe, "0", "open", "creat", `${f.cron}/by-other`)).out,
        refusedOr("open"),
      );
      assert.deepEqual(events(t.plane, HOOK.FILE_WRITE), [[FILE_OP.CREATE, ino(f.cron), decision, cronId]]);

      // children: true: a maintainer script (sh -c) the writer starts, and what it runs, are writers.
      const script = `${f.probe} 0 open wronly ${f.cron}/job`;
      assert.equal(
        (await t.inScope(f.apt, "0", "spawn", "/bin/sh", "-c", script)).out,
        "ok open",
        "apt's child",
      );
      assert.deepEqual(events(t.plane, HOOK.FILE_WRITE), [], "a writer's child is not reported");
      // Without children: true, the writer's child is not one.
      assert.match((await t.inScope(f.dpkg, "0", "spawn", "/bin/sh", "-c", script)).out, refusedOr("open"));
      assert.deepEqual(events(t.plane, HOOK.FILE_WRITE), [[
        FILE_OP.OPEN_WRITE,
        ino(`${f.cron}/job`),
        decision,
        cronId,
      ]]);

      // A child the writer left behind, started after it exited: reparented, no longer its child.
      const signal = `/tmp/${uniqueName("aegisbpf-writers-go")}`;
      const result = `${t.root}/tmp/orphan`;
      try {
        const left = await t.inScope(
          f.apt,
          "0",
          "detach",
          signal,
          "/bin/sh",
          "-c",
          `${script} > ${result} 2>&1`,
        );
        assert.equal(left.out, "ok detach");
        Deno.writeTextFileSync(signal, "");
        let said = "";
        for (let tries = 0; tries < 500 && !said.endsWith("\n"); tries++) {
          await new Promise((resolve) => setTimeout(resolve, 20));
          said = exists(result) ? Deno.readTextFileSync(result) : "";
        }
        assert.match(said.trim(), refusedOr("open"), "the orphan is not a writer");
        assert.deepEqual(events(t.plane, HOOK.FILE_WRITE), [[
          FILE_OP.OPEN_WRITE,
          ino(`${f.cron}/job`),
          decision,
          cronId,
        ]]);
      } finally {
        Deno.writeTextFileSync(signal, "");
        Deno.removeSync(signal);
      }
    },
  );
}

/** What this runtime maps executable (the loader and libc among them): what the probes need too. */
const RUNTIME = parseExecutableMappings(Deno.readTextFileSync("/proc/self/maps"));

vmTest(
  "[vm] files.writers: a writer's replace of an allowed binary keeps it runnable under exec.default deny; " +
    "anyone else's replacement is untrusted, a sha256 entry's replacement a hash-mismatch",
  async (t) => {
    const f = layout(t.root);
    const tool = copyExecutable(PROBE, `${t.root}/bin/tool`);
    const hashed = copyExecutable(PROBE, `${t.root}/bin/hashed`);
    const allow = [PROBE, f.dpkg, f.probe, tool, Deno.realPathSync("/bin/sh"), ...RUNTIME]
      .map((path) => `      - { path: ${JSON.stringify(path)}, optional: true }\n`).join("");
    const spec = `  exec:\n    default: deny\n    allow:\n${allow}` +
      `      - { id: hashed, path: ${hashed}, sha256: ${sha256OfFile(hashed)} }\n` +
      `  files:\n    writers:\n      - { id: dpkg, exe: ${f.dpkg} }\n`;
    const plan = await t.apply("enforce", spec);
    const defaultId = ruleId(plan, "exec.default"), hashedId = ruleId(plan, "hashed");
    assert.equal((await t.inScope(tool, "0", "ran")).out, "ran", "the allowed binary runs");

    // An upgrade: dpkg renames the new version over it.
    copyExecutable(PROBE, `${t.root}/tmp/tool.new`);
    assert.equal((await t.inScope(f.dpkg, "0", "rename", `${t.root}/tmp/tool.new`, tool)).out, "ok rename");
    assert.equal((await t.inScope(tool, "0", "ran")).out, "ran", "the upgraded binary runs");
    assert.deepEqual(events(t.plane, HOOK.EXEC), []);

    // Anyone else's replacement: a new inode, untrusted.
    copyExecutable(PROBE, `${t.root}/tmp/tool.evil`);
    assert.equal((await t.inScope(f.probe, "0", "rename", `${t.root}/tmp/tool.evil`, tool)).out, "ok rename");
    const evil = await t.inScope(tool, "0", "ran");
    assert.notEqual(evil.code, 0, `the replacement must not run: ${evil.out}`);
    assert.deepEqual(events(t.plane, HOOK.EXEC), [[
      EXEC_REASON.UNTRUSTED,
      ino(tool),
      DECISION.DENY,
      defaultId,
    ]]);

    // A sha256 entry's file replaced by the writer, even with the same content: not the hashed inode.
    copyExecutable(hashed, `${t.root}/tmp/hashed.new`);
    assert.equal(
      (await t.inScope(f.dpkg, "0", "rename", `${t.root}/tmp/hashed.new`, hashed)).out,
      "ok rename",
    );
    assert.notEqual((await t.inScope(hashed, "0", "ran")).code, 0, "a hashed entry's replacement is refused");
    assert.deepEqual(events(t.plane, HOOK.EXEC), [[
      EXEC_REASON.HASH_MISMATCH,
      ino(hashed),
      DECISION.DENY,
      hashedId,
    ]]);

    // Audit: the untrusted replacement runs, reported.
    await t.apply("audit", spec);
    copyExecutable(PROBE, `${t.root}/tmp/tool.evil2`);
    assert.equal(
      (await t.inScope(f.probe, "0", "rename", `${t.root}/tmp/tool.evil2`, tool)).out,
      "ok rename",
    );
    assert.equal((await t.inScope(tool, "0", "ran")).out, "ran", "audit: it runs");
    assert.deepEqual(events(t.plane, HOOK.EXEC), [[
      EXEC_REASON.UNTRUSTED,
      ino(tool),
      DECISION.AUDIT,
      defaultId,
    ]]);
  },
);

/** Creates files in `dir` until one gets inode number `wanted` (ext4 hands a freed number out again). */
function reuse(dir: string, wanted: bigint, make: (path: string) => void): string {
  for (let i = 0; i < 64; i++) {
    const path = `${dir}/${wanted}-${i}`;
    make(path);
    if (ino(path) === wanted) return path;
  }
  throw new Error(`no new file in ${dir} got inode ${wanted}`);
}

vmTest(
  "[vm] files.protect and exec.allow: a new file that reuses a deleted protected or allowed inode's number " +
    "has no rule (i_generation)",
  async (t) => {
    const f = layout(t.root);
    Deno.mkdirSync(`${t.root}/gen`);
    const victim = `${t.root}/gen/victim`;
    Deno.writeTextFileSync(victim, "protected\n");
    const allowed = copyExecutable(PROBE, `${t.root}/gen/allowed`);
    const allow = [PROBE, f.dpkg, f.probe, allowed, Deno.realPathSync("/bin/sh"), ...RUNTIME]
      .map((path) => `      - { path: ${JSON.stringify(path)}, optional: true }\n`).join("");
    const spec = `  exec:\n    default: deny\n    allow:\n${allow}` +
      `  files:\n    protect:\n      - { id: victim, path: ${victim} }\n` +
      `    writers:\n      - { id: dpkg, exe: ${f.dpkg} }\n`;
    const plan = await t.apply("enforce", spec);
    const resolved = resolvePlan(plan);
    assert.ok(resolved.protect?.every((inode) => inode.generation !== undefined), "ext4 shows i_generation");
    assert.match((await t.inScope(f.probe, "0", "open", "wronly", victim)).out, /errno EPERM/, "protected");
    events(t.plane, HOOK.FILE_WRITE);

    // The writer deletes the protected file (a package removed); a new file takes its number.
    const victimIno = ino(victim);
    assert.equal((await t.inScope(f.dpkg, "0", "unlink", victim)).out, "ok unlink");
    const heir = reuse(`${t.root}/gen`, victimIno, (path) => Deno.writeTextFileSync(path, "new\n"));
    assert.equal((await t.inScope(f.probe, "0", "open", "wronly", heir)).out, "ok open", "not protected");
    assert.deepEqual(events(t.plane, HOOK.FILE_WRITE), []);

    // The allowed binary deleted; a copy that takes its number is untrusted.
    assert.equal((await t.inScope(allowed, "0", "ran")).out, "ran");
    const allowedIno = ino(allowed);
    Deno.removeSync(allowed);
    const impostor = reuse(`${t.root}/gen`, allowedIno, (path) => copyExecutable(PROBE, path));
    assert.notEqual((await t.inScope(impostor, "0", "ran")).code, 0, "the impostor must not run");
    assert.deepEqual(events(t.plane, HOOK.EXEC), [[
      EXEC_REASON.UNTRUSTED,
      allowedIno,
      DECISION.DENY,
      ruleId(plan, "exec.default"),
    ]]);
  },
);

// Last: the shared plane goes, with everything it pinned and attached.
Deno.test({
  name: "[vm] the writers tests' shared data plane detaches: nothing of it stays pinned",
  ignore: !inVm,
  fn: () => {
    shared.detach();
    assert.ok(!exists(shared.bpffs));
  },
});
