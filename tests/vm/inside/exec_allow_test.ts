import assert from "node:assert/strict";
import { EXEC_REASON } from "../../../ffi/mod.ts";
import { execFileName } from "../../../lib/kernel/events.ts";
import { ResolveError, resolvePlan, sha256OfFile } from "../../../lib/kernel/resolve.ts";
import { gatherLintFacts } from "../../../lib/policy/facts.ts";
import { lockoutRisks } from "../../../lib/policy/lint.ts";
import { parsePolicySource } from "../../../lib/policy/parse.ts";
import { type AllowTarget, emptyPlan, type RuleInfo, type RuleSetPlan } from "../../../lib/policy/plan.ts";
import { SharedPlane } from "../../support/shared_plane.ts";
import { assertExecReported, assertRefused, copyExecutable, execEvents, run } from "../../support/outcome.ts";
import { detachTest, runtimeAllowed, type ScopedFixture, scopedVmTest } from "../../support/vm_fixture.ts";

// The exec allowlist (bpf/exec_allow.bpf.h) inside the qemu guest, where BPF-LSM loads: with exec.default
// deny, a task in scope runs and maps executable only the inodes exec.allow resolved to; everything else is
// refused (enforce) or reported (audit) as untrusted, a changed sha256 entry as hash-mismatch. The policy is
// scoped to a cgroup of the test's own, so that the test runner and the guest's shell keep running; the
// moves are made there by the file guard's C probe (tests/fixtures/file_guard_probe.c).
const PROBE = `${Deno.cwd()}/bpf/build/fixtures/file_guard_probe`;
const LIBRARY = `${Deno.cwd()}/bpf/build/fixtures/libprobe.so`;
const LOADER = "/lib64/ld-linux-x86-64.so.2";
const shared = new SharedPlane("exec-allow");

type Fixture = Omit<ScopedFixture, "apply"> & {
  /** Applies exec.default deny in the test's scope with `allow` (and the runtime's libraries) allowed. */
  apply: (allow: AllowTarget[], parts?: Partial<RuleSetPlan>) => Promise<void>;
};

const RULES: RuleInfo[] = [
  { id: "default", area: "ingress", action: "deny" },
  { id: "exec.default", area: "exec", action: "deny" },
  { id: "allowed", area: "exec", action: "allow" },
  { id: "hashed", area: "exec", action: "allow" },
  { id: "runtime", area: "exec", action: "allow" },
  { id: "no-tool", area: "exec", action: "deny" },
];
const DEFAULT_ID = 1, ALLOWED_ID = 2, HASHED_ID = 3, RUNTIME_ID = 4, DENY_ID = 5;
const RUNTIME = runtimeAllowed(RUNTIME_ID);

function vmTest(name: string, fn: (fixture: Fixture) => Promise<void>): void {
  const options = { shared, prefix: "aegisbpf-allow", areas: ["exec" as const], rules: RULES };
  scopedVmTest(name, options, (t) =>
    fn({
      ...t,
      apply: (allow, parts = {}) =>
        t.apply({ execDefaultDeny: { ruleId: DEFAULT_ID }, execAllow: [...allow, ...RUNTIME], ...parts }),
    }));
}

vmTest(
  "[vm] exec allowlist: an allowed binary runs in scope; its copy is refused by execve and ld.so, reported untrusted",
  async (t) => {
    const tool = copyExecutable(PROBE, `${t.dir}/tool`);
    await t.apply([{ ruleId: ALLOWED_ID, path: PROBE }]);
    assert.equal((await t.inScope(PROBE, "run")).out, "ok ran", "the allowed binary runs");
    assertRefused(await t.inScope(tool, "run"), "execve of the copy");
    const viaLoader = await t.inScope(LOADER, tool, "run");
    assertRefused(viaLoader, "ld.so COPY");
    assert.match(viaLoader.out, /Operation not permitted|failed to map/);
    const events = execEvents(t.plane);
    assertExecReported(events, tool, EXEC_REASON.UNTRUSTED, 0, DEFAULT_ID);
    assert.ok(
      events.some((event) => event.comm.startsWith("ld-linux") && event.op === EXEC_REASON.UNTRUSTED),
      "the loader's mapping reported",
    );
    assert.equal((await run(tool, ["run"])).out, "ok ran", "out of scope, the copy runs");
    assert.deepEqual(execEvents(t.plane), [], "and nothing is reported");

    await t.apply([{ ruleId: ALLOWED_ID, path: PROBE }], { mode: "audit" });
    assert.equal((await t.inScope(tool, "run")).out, "ok ran", "audit: the copy runs");
    assert.equal((await t.inScope(LOADER, tool, "run")).out, "ok ran", "audit: ld.so COPY runs");
    assertExecReported(execEvents(t.plane), tool, EXEC_REASON.UNTRUSTED, 1, DEFAULT_ID);
  },
);

vmTest("[vm] exec allowlist: dlopen of a copied library and a memfd exec are refused in scope", async (t) => {
  const library = copyExecutable(LIBRARY, `${t.dir}/libcopy.so`);
  await t.apply([{ ruleId: ALLOWED_ID, path: PROBE }, { ruleId: ALLOWED_ID, path: LIBRARY }]);
  assert.equal((await t.inScope(PROBE, "dlopen", LIBRARY)).out, "ok loaded", "the allowed library loads");
  const refused = await t.inScope(PROBE, "dlopen", library);
  assertRefused(refused, "dlopen of the copy");
  assert.match(refused.out, /Operation not permitted|failed to map/);
  assert.match((await t.inScope(PROBE, "mmap-exec", library)).out, /^errno EPERM \(mmap\)/);
  assert.match((await t.inScope(PROBE, "mprotect-exec", library)).out, /^errno EPERM \(mprotect\)/);
  assert.match((await t.inScope(PROBE, "memfd-exec", PROBE, "probe", "run")).out, /^errno EPERM \(fexecve\)/);
  const events = execEvents(t.plane);
  assertExecReported(events, library, EXEC_REASON.UNTRUSTED, 0, DEFAULT_ID);
  assert.ok(events.some((event) => execFileName(event).startsWith("memfd:")), "the memfd reported");

  await t.apply([{ ruleId: ALLOWED_ID, path: PROBE }, { ruleId: ALLOWED_ID, path: LIBRARY }], {
    mode: "audit",
  });
  assert.equal((await t.inScope(PROBE, "dlopen", library)).out, "ok loaded", "audit: it loads");
  assert.equal((await t.inScope(PROBE, "memfd-exec", PROBE, "probe", "run")).out, "ok ran", "audit: it runs");
  assertExecReported(execEvents(t.plane), library, EXEC_REASON.UNTRUSTED, 1, DEFAULT_ID);
});

vmTest(
  "[vm] exec allowlist: a file renamed over an allowed one is refused; an exec.deny rule wins over allow",
  async (t) => {
    const allowed = copyExecutable(PROBE, `${t.dir}/allowed`);
    await t.apply([{ ruleId: ALLOWED_ID, path: allowed }]);
    assert.equal((await t.inScope(allowed, "run")).out, "ok ran");
    // A replace as a package manager makes it: the new inode does not inherit the allowance.
    copyExecutable(PROBE, `${t.dir}/incoming`);
    Deno.renameSync(`${t.dir}/incoming`, allowed);
    assertRefused(await t.inScope(allowed, "run"), "the replacement");
    assertExecReported(execEvents(t.plane), allowed, EXEC_REASON.UNTRUSTED, 0, DEFAULT_ID);

    await t.apply([{ ruleId: ALLOWED_ID, path: allowed }], { exec: [{ ruleId: DENY_ID, path: allowed }] });
    assertRefused(await t.inScope(allowed, "run"), "allowed and denied");
    const denied = execEvents(t.plane).find((event) => event.ruleId === DENY_ID);
    assert.equal(denied?.op, EXEC_REASON.DENIED, "reported as denied, by the deny rule");
  },
);

vmTest(
  "[vm] exec allowlist: an allowed file deleted while open cannot be run from its descriptor",
  async (t) => {
    const doomed = copyExecutable(PROBE, `${t.dir}/doomed`);
    const ino = BigInt(Deno.statSync(doomed).ino!);
    const busybox = Deno.realPathSync("/usr/bin/busybox");
    await t.apply([{ ruleId: ALLOWED_ID, path: doomed }, { ruleId: ALLOWED_ID, path: busybox }]);
    assert.equal((await t.inScope(doomed, "run")).out, "ok ran", "allowed while it has a name");
    const script = `exec 3< '${doomed}' && rm '${doomed}' && exec /proc/self/fd/3 run`;
    assertRefused(await t.inScope(busybox, "sh", "-c", script), "exec of the deleted allowed file");
    const events = execEvents(t.plane).filter((event) => event.ino === ino);
    assert.deepEqual(events.map((event) => [event.op, event.ruleId, event.decision]), [
      [EXEC_REASON.UNTRUSTED, DEFAULT_ID, 0],
    ]);
  },
);

vmTest(
  "[vm] exec allowlist: a sha256 entry fails the apply when the file differs, and is refused as hash-mismatch once changed",
  async (t) => {
    const hashed = copyExecutable(PROBE, `${t.dir}/hashed`);
    const sha256 = sha256OfFile(hashed);
    const entry = (hash: string): AllowTarget => ({ ruleId: HASHED_ID, path: hashed, sha256: hash });
    await t.apply([{ ruleId: ALLOWED_ID, path: PROBE }]);
    await assert.rejects(
      () => t.apply([entry("0".repeat(64))]),
      (error: Error) =>
        error instanceof ResolveError && /has sha256 [0-9a-f]{64}, not the 0{64}/.test(error.message),
    );
    assert.equal((await t.inScope(PROBE, "run")).out, "ok ran", "the policy in force stays");

    await t.apply([entry(sha256)]);
    assert.equal((await t.inScope(hashed, "run")).out, "ok ran", "unchanged, it runs");
    // Any write after apply: here one byte appended (an ELF runs the same with it).
    Deno.writeFileSync(hashed, new Uint8Array([0]), { append: true });
    assertRefused(await t.inScope(hashed, "run"), "changed after apply");
    assertExecReported(execEvents(t.plane), hashed, EXEC_REASON.HASH_MISMATCH, 0, HASHED_ID);
    await assert.rejects(() => t.apply([entry(sha256)]), ResolveError, "the changed file fails a new apply");

    await t.apply([entry(sha256OfFile(hashed))], { mode: "audit" });
    assert.equal((await t.inScope(hashed, "run")).out, "ok ran", "applied again with its new hash");
    Deno.chmodSync(hashed, 0o700); // a ctime change
    assert.equal((await t.inScope(hashed, "run")).out, "ok ran", "audit: it runs");
    assertExecReported(execEvents(t.plane), hashed, EXEC_REASON.HASH_MISMATCH, 1, HASHED_ID);
  },
);

vmTest(
  "[vm] exec allowlist: a #! script runs only when the script and its interpreter are allowed",
  async (t) => {
    const script = `${t.dir}/script.sh`;
    Deno.writeTextFileSync(script, "#!/usr/bin/busybox sh\necho ran\n");
    Deno.chmodSync(script, 0o755);
    const busybox = Deno.realPathSync("/usr/bin/busybox");
    await t.apply([{ ruleId: ALLOWED_ID, path: busybox }]);
    assertRefused(await t.inScope(script), "a script not allowed");
    assertExecReported(execEvents(t.plane), script, EXEC_REASON.UNTRUSTED, 0, DEFAULT_ID);
    // Read as data by an allowed interpreter, it runs: the allowlist judges what is executed, not what is read.
    assert.equal((await t.inScope(busybox, "sh", script)).out, "ran");
    await t.apply([{ ruleId: ALLOWED_ID, path: busybox }, { ruleId: ALLOWED_ID, path: script }]);
    assert.equal((await t.inScope(script)).out, "ran", "script and interpreter allowed");
  },
);

vmTest("[vm] exec allowlist: a policy without it leaves execs alone (the switch is off)", async (t) => {
  const tool = copyExecutable(PROBE, `${t.dir}/tool`);
  const plan = { ...emptyPlan(), mode: "enforce" as const, rules: RULES, scope: t.scope };
  await t.plane.apply(resolvePlan({ ...plan, execAllow: [{ ruleId: ALLOWED_ID, path: PROBE }] }));
  assert.equal((await t.inScope(tool, "run")).out, "ok ran");
  assert.deepEqual(execEvents(t.plane), []);
});

vmTest(
  "[vm] exec allowlist: on an overlay mount, an allowed binary and library run and load through the overlay; a copy there is refused",
  async (t) => {
    for (const name of ["lower", "upper", "work", "merged"]) Deno.mkdirSync(`${t.dir}/${name}`);
    copyExecutable(PROBE, `${t.dir}/lower/tool`);
    copyExecutable(LIBRARY, `${t.dir}/lower/lib.so`);
    const merged = `${t.dir}/merged`;
    const options = `lowerdir=${t.dir}/lower,upperdir=${t.dir}/upper,workdir=${t.dir}/work`;
    const mount = await run("mount", ["-t", "overlay", "overlay", "-o", options, merged]);
    assert.equal(mount.code, 0, `overlay mount: ${mount.out}`);
    try {
      await t.apply([
        { ruleId: ALLOWED_ID, path: `${merged}/tool` },
        { ruleId: ALLOWED_ID, path: `${merged}/lib.so` },
      ]);
      assert.equal((await t.inScope(`${merged}/tool`, "run")).out, "ok ran", "through the overlay");
      assert.equal((await t.inScope(`${merged}/tool`, "dlopen", `${merged}/lib.so`)).out, "ok loaded");
      assert.equal(
        (await t.inScope(`${merged}/tool`, "mprotect-exec", `${merged}/lib.so`)).out,
        "ok mapped executable",
      );
      const copied = copyExecutable(`${merged}/tool`, `${merged}/copy`);
      assertRefused(await t.inScope(copied, "run"), "a copy on the overlay");
      assertExecReported(execEvents(t.plane), copied, EXEC_REASON.UNTRUSTED, 0, DEFAULT_ID);
    } finally {
      await run("umount", [merged]);
    }
  },
);

/** A policy text with exec.default deny and these allow paths. */
function allowlistPolicy(paths: readonly string[]): string {
  const allow = paths.map((path) => `      - { path: ${JSON.stringify(path)} }\n`).join("");
  return "apiVersion: aegisbpf.io/v1\nkind: Policy\nmetadata: { name: t, version: 1 }\nspec:\n" +
    `  mode: enforce\n  exec:\n    default: deny\n    allow:\n${allow || "      []\n"}`;
}

vmTest(
  "[vm] exec allowlist: lint refuses default deny without this host's survival set; with it, a shell and aegisbpf health run in scope in enforce",
  async (t) => {
    const empty = parsePolicySource(allowlistPolicy([PROBE]), "p.yaml");
    const facts = await gatherLintFacts(empty.policy, { stateDir: t.dir });
    const risks = lockoutRisks(empty.policy, empty.locate, facts);
    const pid1 = Deno.realPathSync("/proc/1/exe");
    assert.ok(
      risks.some((risk) => risk.code === "survival-set" && risk.message.includes(pid1)),
      "PID 1 named",
    );
    assert.ok(
      risks.some((risk) => risk.message.includes(Deno.realPathSync(Deno.execPath()))),
      "the runtime named",
    );

    const survival = [
      ...new Set(facts.survival.filter((entry) => !entry.tree).map((entry) => entry.realPath)),
    ];
    const full = parsePolicySource(allowlistPolicy(survival), "p.yaml");
    const fullFacts = await gatherLintFacts(full.policy, { stateDir: t.dir });
    assert.deepEqual(
      lockoutRisks(full.policy, full.locate, fullFacts),
      [],
      "the survival set allowed: accepted",
    );

    await t.apply(survival.map((path) => ({ ruleId: ALLOWED_ID, path })));
    assert.equal((await t.inScope("/bin/sh", "-c", "echo shell ok")).out, "shell ok", "the shell runs");
    const health = await t.inScope(
      Deno.execPath(),
      "run",
      "--allow-all",
      "--no-check",
      "main.ts",
      "health",
      "--bpffs",
      shared.bpffs,
      "--state-dir",
      t.dir,
    );
    assert.match(health.out, /^(healthy|unhealthy)/, `health runs in scope: ${health.out}`);
    assert.match(health.out, /pins/);
    assert.doesNotMatch(health.out, /Operation not permitted|failed to map/);
    assert.deepEqual(
      execEvents(t.plane).map((event) => execFileName(event)),
      [],
      "nothing of the shell or aegisbpf is untrusted",
    );
  },
);

detachTest(shared, "exec allowlist");
