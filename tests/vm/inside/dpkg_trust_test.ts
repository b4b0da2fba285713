/**
 * `exec.allow: [{ trust: dpkg }]` inside the qemu guest, where BPF-LSM loads, and the allowlist's
 * differential test.
 *
 * trust: dpkg: a tiny .deb is built here (busybox tar, and the ar container written by hand: busybox has
 * no `ar` that creates) and installed with the guest's dpkg (busybox's, which records the package's
 * md5sums as dpkg does); with exec.default deny and `{ trust: dpkg }` in the test's scope, its program
 * runs, a copy of it is refused (untrusted), a file of the package changed after install is listed and
 * refused, and the program changed after apply is refused as hash-mismatch; in audit each runs, reported.
 *
 * The differential test: random allowlists (path, sha256 and trust entries, exec.deny rules over some of
 * the same files, files changed after apply, enforce or audit) are applied, every file is run in scope,
 * and the kernel's outcome and event must be what `decide()` says for the rule ids the file resolved to.
 * Seeded: a failure names the seed; `AEGISBPF_DIFF_SEED=N` (kernel command line or env) runs only seed N.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { EXEC_REASON } from "../../../ffi/mod.ts";
import { cgroup2Root } from "../../../lib/kernel/cgroup.ts";
import type { DataPlane } from "../../../lib/kernel/dataplane.ts";
import type { ResolvedRuleSet } from "../../../lib/kernel/entries.ts";
import { exists } from "../../../lib/kernel/pin_dir.ts";
import { resolvePlan, sha256OfFile } from "../../../lib/kernel/resolve.ts";
import { decide, type DecisionEvent, type ExecReason } from "../../../lib/policy/decide.ts";
import { parseExecutableMappings } from "../../../lib/policy/facts.ts";
import {
  type AllowTarget,
  emptyPlan,
  type InodeTarget,
  type RuleInfo,
  type RuleSetPlan,
} from "../../../lib/policy/plan.ts";
import { Random } from "../../../lib/policy/random_policy.ts";
import { compilePolicy } from "../../../lib/policy/compile.ts";
import { parsePolicy } from "../../../lib/policy/parse.ts";
import { drain } from "../../support/plane.ts";
import { SharedPlane } from "../../support/shared_plane.ts";
import { assertExecReported, assertRefused, execEvents, type Outcome, run } from "../../support/outcome.ts";

const inVm = Deno.env.get("AEGIS_IN_VM") === "1";
const PROBE = `${Deno.cwd()}/bpf/build/fixtures/file_guard_probe`;
const PACKAGE = "aegis-tiny";
const PROGRAM = `/usr/local/bin/${PACKAGE}`;
const TOUCHED = `/usr/local/bin/${PACKAGE}-touched`;
const shared = new SharedPlane("dpkg-trust");
let counter = 0;

const REASON_CODE: Record<ExecReason, number> = {
  denied: EXEC_REASON.DENIED,
  untrusted: EXEC_REASON.UNTRUSTED,
  "hash-mismatch": EXEC_REASON.HASH_MISMATCH,
};

type Fixture = {
  plane: DataPlane;
  dir: string;
  scope: RuleSetPlan["scope"];
  /** Runs argv inside the test's scope cgroup (moved there by a shell, which then execs it). */
  inScope: (...argv: string[]) => Promise<Outcome>;
};

function vmTest(name: string, fn: (fixture: Fixture) => Promise<void>): void {
  Deno.test({
    name,
    ignore: !inVm,
    fn: async () => {
      counter++;
      const dir = Deno.makeTempDirSync({ prefix: "aegisbpf-dpkg-" });
      Deno.chmodSync(dir, 0o755);
      const cgroup = `${cgroup2Root()}/aegisbpf-dpkg-${counter}`;
      if (exists(cgroup)) Deno.removeSync(cgroup);
      Deno.mkdirSync(cgroup);
      try {
        const plane = shared.open({ areas: ["exec"] });
        try {
          assert.equal(plane.status.exec.mode, "enforce", `exec area: ${plane.status.exec.reason}`);
          const inScope = (...argv: string[]) =>
            run("sh", ["-c", `echo $$ > '${cgroup}/cgroup.procs' && exec "$@"`, "sh", ...argv]);
          await fn({
            plane,
            dir,
            inScope,
            scope: { include: [cgroup.slice(cgroup2Root().length)], exempt: [] },
          });
        } finally {
          await shared.release(plane);
        }
      } finally {
        Deno.removeSync(cgroup);
        Deno.removeSync(dir, { recursive: true });
      }
    },
  });
}

const md5 = (bytes: Uint8Array) => createHash("md5").update(bytes).digest("hex");

/** An ar archive (the .deb container) of `members`, in order. */
function arArchive(members: { name: string; data: Uint8Array }[]): Uint8Array<ArrayBuffer> {
  const encoder = new TextEncoder();
  const parts: Uint8Array[] = [encoder.encode("!<arch>\n")];
  for (const { name, data } of members) {
    const field = (value: string, width: number) => value.padEnd(width, " ");
    const header = field(name, 16) + field("0", 12) + field("0", 6) + field("0", 6) + field("100644", 8) +
      field(String(data.length), 10) + "`\n";
    parts.push(encoder.encode(header), data);
    if (data.length % 2 === 1) parts.push(encoder.encode("\n"));
  }
  const total = parts.reduce((sum, part) => sum + part.length, 0);
  const archive = new Uint8Array(total);
  let offset = 0;
  for (const part of parts) {
    archive.set(part, offset);
    offset += part.length;
  }
  return archive;
}

/**
 * Builds `aegis-tiny_VERSION_amd64.deb` in `dir`: the probe as /usr/local/bin/aegis-tiny and a second copy as
 * /usr/local/bin/aegis-tiny-touched, with their md5sums; a later version's files carry `version - 1` more
 * bytes at their end (other content, the same program).
 */
async function buildDeb(dir: string, version = 1): Promise<string> {
  const data = `${dir}/data-${version}`;
  const control = `${dir}/control-${version}`;
  Deno.mkdirSync(`${data}/usr/local/bin`, { recursive: true });
  Deno.mkdirSync(control);
  const sums: string[] = [];
  for (const path of [PROGRAM, TOUCHED]) {
    Deno.copyFileSync(PROBE, `${data}${path}`);
    Deno.writeFileSync(`${data}${path}`, new Uint8Array(version - 1), { append: true });
    Deno.chmodSync(`${data}${path}`, 0o755);
    sums.push(`${md5(Deno.readFileSync(`${data}${path}`))}  ${path.slice(1)}\n`);
  }
  Deno.writeTextFileSync(`${control}/md5sums`, sums.join(""));
  Deno.writeTextFileSync(
    `${control}/control`,
    `Package: ${PACKAGE}\nVersion: ${version}\nArchitecture: amd64\nMaintainer: t <t@t.invalid>\nDescription: tiny\n`,
  );
  for (const [name, tree] of [["control", control], ["data", data]] as const) {
    const tar = await run("tar", ["-czf", `${dir}/${name}-${version}.tar.gz`, "-C", tree, "."]);
    assert.equal(tar.code, 0, tar.out);
  }
  const deb = `${dir}/${PACKAGE}_${version}_amd64.deb`;
  Deno.writeFileSync(
    deb,
    arArchive([
      { name: "debian-binary", data: new TextEncoder().encode("2.0\n") },
      { name: "control.tar.gz", data: Deno.readFileSync(`${dir}/control-${version}.tar.gz`) },
      { name: "data.tar.gz", data: Deno.readFileSync(`${dir}/data-${version}.tar.gz`) },
    ]),
  );
  return deb;
}

/** dpkg's database as a fresh guest lacks it, then the package installed (a leftover removed first). */
async function installTiny(dir: string): Promise<void> {
  Deno.mkdirSync("/var/lib/dpkg/info", { recursive: true });
  if (!exists("/var/lib/dpkg/status")) Deno.writeTextFileSync("/var/lib/dpkg/status", "");
  if (exists(`/var/lib/dpkg/info/${PACKAGE}.list`)) await run("dpkg", ["-P", PACKAGE]);
  const installed = await run("dpkg", ["-i", "--force-depends", await buildDeb(dir)]);
  assert.equal(installed.code, 0, installed.out);
  assert.ok(exists(`/var/lib/dpkg/info/${PACKAGE}.md5sums`), "dpkg recorded the md5sums");
}

const RULES: RuleInfo[] = [
  { id: "default", area: "ingress", action: "deny" },
  { id: "exec.default", area: "exec", action: "deny" },
  { id: "pkgs", area: "exec", action: "allow" },
  { id: "runtime", area: "exec", action: "allow" },
];
const DEFAULT_ID = 1, TRUST_ID = 2, RUNTIME_ID = 3;

/** What this runtime maps executable (the loader and libc among them): what the probe needs too. */
const runtime = (ruleId: number): AllowTarget[] =>
  parseExecutableMappings(Deno.readTextFileSync("/proc/self/maps")).map((path) => ({
    ruleId,
    path,
    optional: true,
  }));

vmTest(
  "[vm] trust: dpkg: a dpkg-installed program runs; its copy, a file changed before apply and one changed after are refused; audit reports them",
  async (t) => {
    await installTiny(t.dir);
    // Changed after install, before apply: its MD5 no longer matches dpkg's.
    Deno.writeFileSync(TOUCHED, new Uint8Array([0]), { append: true });
    const copy = `${t.dir}/copy`;
    Deno.copyFileSync(PROGRAM, copy);
    Deno.chmodSync(copy, 0o755);
    const apply = async (mode: "enforce" | "audit") => {
      const resolved = resolvePlan({
        ...emptyPlan(),
        mode,
        rules: RULES,
        scope: t.scope,
        execDefaultDeny: { ruleId: DEFAULT_ID },
        execAllow: runtime(RUNTIME_ID),
        execTrust: [{ ruleId: TRUST_ID, source: "dpkg" }],
      }, { stateDir: t.dir });
      await t.plane.apply(resolved);
      return resolved;
    };
    const resolved = await apply("enforce");
    assert.deepEqual(
      resolved.trust?.untrusted.filter((file) => file.package === PACKAGE).map((
        file,
      ) => [file.path, file.reason]),
      [[TOUCHED, "md5-mismatch"]],
      "the changed file is listed, untrusted",
    );
    assert.ok(resolved.execAllow?.some((inode) => inode.path === PROGRAM && inode.ruleId === TRUST_ID));

    assert.equal((await t.inScope(PROGRAM, "run")).out, "ok ran", "the package's program runs");
    assertRefused(await t.inScope(copy, "run"), "its copy");
    assertRefused(await t.inScope(TOUCHED, "run"), "the file changed before apply");
    let events = execEvents(t.plane);
    assertExecReported(events, copy, EXEC_REASON.UNTRUSTED, 0, DEFAULT_ID);
    assertExecReported(events, TOUCHED, EXEC_REASON.UNTRUSTED, 0, DEFAULT_ID);
    assert.equal((await run(copy, ["run"])).out, "ok ran", "out of scope, the copy runs");

    // Changed after apply: the kernel knows by the ctime stamped at apply.
    Deno.writeFileSync(PROGRAM, new Uint8Array([0]), { append: true });
    assertRefused(await t.inScope(PROGRAM, "run"), "the program changed after apply");
    assertExecReported(execEvents(t.plane), PROGRAM, EXEC_REASON.HASH_MISMATCH, 0, TRUST_ID);

    await apply("audit");
    assert.equal((await t.inScope(copy, "run")).out, "ok ran", "audit: the copy runs");
    assert.equal((await t.inScope(PROGRAM, "run")).out, "ok ran", "audit: the changed program runs");
    events = execEvents(t.plane);
    assertExecReported(events, copy, EXEC_REASON.UNTRUSTED, 1, DEFAULT_ID);
    assertExecReported(events, PROGRAM, EXEC_REASON.UNTRUSTED, 1, DEFAULT_ID);
    await run("dpkg", ["-P", PACKAGE]);
  },
);

vmTest(
  "[vm] trust: dpkg: an upgrade by dpkg (write PATH.dpkg-new, rename over PATH) keeps the package's program runnable with no agent and no apply",
  async (t) => {
    await installTiny(t.dir);
    // Compiled from a policy, as `policy apply` does: trust: dpkg makes dpkg a writer of allowances.
    const runtimePaths = runtime(RUNTIME_ID).map((target) => target.path);
    const text = `apiVersion: aegisbpf.io/v1\nkind: Policy\nmetadata: { name: upgrade, version: 1 }\n` +
      `spec:\n  mode: enforce\n  scope:\n    cgroups: [${t.scope.include[0]}]\n  exec:\n    default: deny\n` +
      `    allow:\n      - { id: pkgs, trust: dpkg }\n` +
      runtimePaths.map((path) => `      - { path: ${path}, optional: true }\n`).join("");
    const plan = compilePolicy(parsePolicy(text, "upgrade.yaml"));
    assert.deepEqual(
      plan.writers?.map((writer) => [writer.exe, writer.children, writer.allowedOnly]),
      [["/usr/bin/dpkg", true, true]],
      "dpkg, a writer of allowances only",
    );
    await t.plane.apply(resolvePlan(plan, { stateDir: t.dir }));
    assert.equal((await t.inScope(PROGRAM, "run")).out, "ok ran", "version 1 runs");
    const before = Deno.statSync(PROGRAM).ino;
    // Debian's dpkg unpacks an upgrade as PATH.dpkg-new and renames it over PATH. Busybox's dpkg (this
    // guest's) unlinks and recreates instead, so the unpack is done here the Debian way, by a process that
    // is /usr/bin/dpkg's program (busybox, in this guest), out of scope as apt runs it.
    const next = `${t.dir}/version-2`;
    Deno.copyFileSync(PROBE, next);
    Deno.writeFileSync(next, new Uint8Array(1), { append: true });
    assert.equal(Deno.realPathSync("/usr/bin/dpkg"), Deno.realPathSync("/bin/sh"), "dpkg is busybox here");
    const staged = `${PROGRAM}.dpkg-new`;
    const unpacked = await run("sh", [
      "-c",
      `cat '${next}' > '${staged}' && chmod 755 '${staged}' && mv '${staged}' '${PROGRAM}'`,
    ]);
    assert.equal(unpacked.code, 0, unpacked.out);
    assert.notEqual(Deno.statSync(PROGRAM).ino, before, "the upgrade made a new inode");
    assert.equal(Deno.statSync(PROGRAM).size, Deno.statSync(PROBE).size + 1, "version 2's content");
    drain(t.plane);
    const ran = await t.inScope(PROGRAM, "run");
    const seen = execEvents(t.plane).map((e) => `${e.ino}/reason ${e.op}/rule ${e.ruleId}`);
    assert.equal(
      ran.out,
      "ok ran",
      `version 2 runs: dpkg's rename passed it on (events: ${seen.join(", ")})`,
    );
    assert.deepEqual(seen, [], "nothing refused");
    // Another program's replace is refused as untrusted in writers_test.ts: here every process descends from
    // busybox, which is dpkg in this guest (children: true), so none is outside dpkg's tree.
    await run("dpkg", ["-P", PACKAGE]);
  },
);

const SEEDS = Number(Deno.env.get("AEGISBPF_DIFF_POLICIES") ?? 6);
const FILES = 8;
const BASE_SEED = 0xa110_0000;

type Role = "path" | "sha256" | "trust" | "stale-trust" | "none";

/** A random allowlist over `files`: each file's roles, a deny rule over some, changes after apply. */
function randomCase(random: Random, files: string[], admin: string) {
  const rules: RuleInfo[] = [
    { id: "default", area: "ingress", action: "deny" },
    { id: "exec.default", area: "exec", action: "deny" },
    { id: "pkgs", area: "exec", action: "allow" },
    { id: "runtime", area: "exec", action: "allow" },
  ];
  const allow: AllowTarget[] = [];
  const deny: InodeTarget[] = [];
  const md5sums: string[] = [];
  const changed = new Set<string>();
  const roles = new Map<string, Role[]>();
  for (const file of files) {
    const mine: Role[] = random.subset(["path", "sha256", "trust", "stale-trust"] as Role[], 0, 2);
    if (mine.includes("trust") && mine.includes("stale-trust")) mine.pop();
    roles.set(file, mine.length ? mine : ["none"]);
    for (const role of mine) {
      if (role === "trust") md5sums.push(`${md5(Deno.readFileSync(file))}  ${file.slice(1)}\n`);
      if (role === "stale-trust") md5sums.push(`${"0".repeat(32)}  ${file.slice(1)}\n`);
      if (role === "path" || role === "sha256") {
        const ruleId =
          rules.push({ id: `${role}-${rules.length}`, area: "exec", action: "allow", path: file }) - 1;
        allow.push(
          role === "sha256" ? { ruleId, path: file, sha256: sha256OfFile(file) } : { ruleId, path: file },
        );
      }
    }
    if (random.chance(0.2)) {
      const ruleId = rules.push({ id: `deny-${rules.length}`, area: "exec", action: "deny", path: file }) - 1;
      deny.push({ ruleId, path: file });
    }
    if (random.chance(0.3)) changed.add(file);
  }
  Deno.writeTextFileSync(
    `${admin}/status`,
    "Package: fake\nStatus: install ok installed\nArchitecture: amd64\n",
  );
  Deno.writeTextFileSync(`${admin}/info/fake.md5sums`, md5sums.join(""));
  const mode = random.chance(0.5) ? "enforce" as const : "audit" as const;
  return { rules, allow, deny, changed, roles, mode };
}

vmTest(
  "[vm] differential: the kernel's exec decisions under random allowlists (path, sha256, trust, deny, changed files) are decide()'s",
  async (t) => {
    const admin = `${t.dir}/dpkg`;
    Deno.mkdirSync(`${admin}/info`, { recursive: true });
    const one = Deno.env.get("AEGISBPF_DIFF_SEED");
    const seeds = one ? [Number(one)] : Array.from({ length: SEEDS }, (_, i) => BASE_SEED + i);
    for (const seed of seeds) {
      const random = new Random(seed);
      const files = Array.from({ length: FILES }, (_, i) => {
        const path = `${t.dir}/s${seed.toString(16)}-f${i}`;
        Deno.copyFileSync(PROBE, path);
        Deno.chmodSync(path, 0o755);
        return path;
      });
      const c = randomCase(random, files, admin);
      const plan: RuleSetPlan = {
        ...emptyPlan(),
        mode: c.mode,
        rules: c.rules,
        scope: t.scope,
        exec: c.deny,
        execDefaultDeny: { ruleId: DEFAULT_ID },
        execAllow: [...c.allow, ...runtime(RUNTIME_ID)],
        execTrust: [{ ruleId: TRUST_ID, source: "dpkg" }],
      };
      const resolved = resolvePlan(plan, { dpkgAdminDir: admin });
      await t.plane.apply(resolved);
      for (const file of c.changed) Deno.writeFileSync(file, new Uint8Array([0]), { append: true });
      drain(t.plane);
      for (const file of files) {
        const what = `seed ${seed} ${file} roles ${c.roles.get(file)} changed ${
          c.changed.has(file)
        } ${c.mode}`;
        const event: DecisionEvent = {
          area: "exec",
          ruleIds: ruleIdsOf(resolved, file),
          changed: c.changed.has(file),
          cgroup: t.scope.include[0]!,
        };
        const expected = decide(plan, event);
        const outcome = await t.inScope(file, "run");
        const events = execEvents(t.plane).filter((event) => event.ino === BigInt(Deno.statSync(file).ino!));
        if (expected.decision === "allow") {
          assert.equal(outcome.out, "ok ran", `${what}: runs`);
          assert.deepEqual(events, [], `${what}: no event`);
          continue;
        }
        if (expected.decision === "deny") assertRefused(outcome, what);
        else assert.equal(outcome.out, "ok ran", `${what}: audit runs`);
        const reported = [[
          expected.decision === "deny" ? 0 : 1,
          REASON_CODE[expected.reason!],
          expected.ruleId,
        ]];
        // In audit the exec goes on past an exec.deny rule, and the allowlist judges it too: reported as well.
        if (expected.decision === "audit" && expected.reason === "denied") {
          const allowlist = decide({ ...plan, exec: [] }, event);
          if (allowlist.decision !== "allow") {
            reported.push([1, REASON_CODE[allowlist.reason!], allowlist.ruleId]);
          }
        }
        assert.deepEqual(events.map((event) => [event.decision, event.op, event.ruleId]), reported, what);
      }
    }
  },
);

/** The rule ids whose resolved inodes hold the file (exec deny and allow). */
function ruleIdsOf(resolved: ResolvedRuleSet, path: string): number[] {
  const ino = BigInt(Deno.statSync(path).ino!);
  const ids = [...resolved.exec, ...resolved.execAllow ?? []].filter((inode) => inode.ino === ino)
    .map((inode) => inode.ruleId);
  return [...new Set(ids)];
}

// Last: the shared plane goes, with everything it pinned and attached.
Deno.test({
  name: "[vm] the trust: dpkg tests' shared data plane detaches: nothing of it stays pinned",
  ignore: !inVm,
  fn: () => {
    shared.detach();
    assert.equal(exists(shared.bpffs), false);
  },
});
