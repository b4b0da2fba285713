import assert from "node:assert/strict";
import { HOOK } from "../../../ffi/mod.ts";
import type { RuleInfo } from "../../../lib/policy/plan.ts";
import { addException, type ExceptionRequest, removeExceptions } from "../../../lib/ops/exceptions.ts";
import { drain } from "../../support/plane.ts";
import { SharedPlane } from "../../support/shared_plane.ts";
import { copyExecutable, hookEvents } from "../../support/outcome.ts";
import { detachTest, runtimeAllowed, type ScopedFixture, scopedVmTest } from "../../support/vm_fixture.ts";

// Expiring exceptions (bpf/exception.bpf.h) inside the qemu guest, where BPF-LSM loads: an exec or file
// exception lets through what the policy denies (exec.deny, exec.default deny, file deny, files.protect),
// the event names it, and the deny is back after `remove` and after the TTL, with no agent. Scoped to a
// cgroup of the test's own, as exec_allow_test.ts is.
const PROBE = `${Deno.cwd()}/bpf/build/fixtures/file_guard_probe`;
const shared = new SharedPlane("exception");

const RULES: RuleInfo[] = [
  { id: "default", area: "ingress", action: "deny" },
  { id: "no-tool", area: "exec", action: "deny" },
  { id: "exec.default", area: "exec", action: "deny" },
  { id: "runtime", area: "exec", action: "allow" },
  { id: "no-secret", area: "file", action: "deny" },
  { id: "protected", area: "file", action: "deny" },
];
const EXEC_DENY_ID = 1, DEFAULT_ID = 2, RUNTIME_ID = 3, FILE_ID = 4, PROTECT_ID = 5;
const RUNTIME = runtimeAllowed(RUNTIME_ID);

/** Where `aegisbpf exception` keeps its state: the shared plane's pins and the test's directory. */
type Fixture = ScopedFixture & { paths: { bpffs: string; stateDir: string; configDir: string } };

function vmTest(name: string, fn: (fixture: Fixture) => Promise<void>): void {
  const options = {
    shared,
    prefix: "aegisbpf-exception",
    areas: ["exec" as const, "file" as const],
    rules: RULES,
  };
  scopedVmTest(
    name,
    options,
    (t) =>
      fn({ ...t, paths: { bpffs: shared.bpffs, stateDir: `${t.dir}/state`, configDir: `${t.dir}/config` } }),
  );
}

const LOCK = { uid: 0, wait: false, onWait: () => {} };

function request(allow: string, ttl = "10m"): ExceptionRequest {
  return { allow, ttl, reason: "INC-9 test", ticket: "CHG-9" };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

vmTest(
  "[vm] an exec exception lets a denied binary run, names itself in the event, and ends with remove and its TTL",
  async (t) => {
    const tool = copyExecutable(PROBE, `${t.dir}/tool`);
    await t.apply({ exec: [{ ruleId: EXEC_DENY_ID, path: tool }] });
    assert.notEqual((await t.inScope(tool, "run")).code, 0, "denied before");
    drain(t.plane);
    const added = await addException(t.paths, request(`exec:${tool}`), LOCK);
    assert.equal((await t.inScope(tool, "run")).out, "ok ran", "runs with the exception");
    const seen = hookEvents(t.plane, HOOK.EXEC);
    assert.ok(
      seen.some((e) => e.exception === added.id && e.decision === 1 && e.ruleId === EXEC_DENY_ID),
      "event names it",
    );
    await removeExceptions(t.paths, { id: added.id }, LOCK);
    assert.notEqual((await t.inScope(tool, "run")).code, 0, "denied again after remove");
    await addException(t.paths, request(`exec:${tool}`, "2s"), LOCK);
    assert.equal((await t.inScope(tool, "run")).out, "ok ran", "runs during the TTL");
    await sleep(2500);
    assert.notEqual(
      (await t.inScope(tool, "run")).code,
      0,
      "denied after the TTL, no agent running",
    );
  },
);

vmTest(
  "[vm] an exec exception beats exec.default deny (an allowlist miss), in enforce and in audit",
  async (t) => {
    const tool = copyExecutable(PROBE, `${t.dir}/untrusted`);
    await t.apply({ execDefaultDeny: { ruleId: DEFAULT_ID }, execAllow: [...RUNTIME] });
    assert.notEqual((await t.inScope(tool, "run")).code, 0, "an allowlist miss is denied");
    drain(t.plane);
    const added = await addException(t.paths, request(`exec:${tool}`), LOCK);
    assert.equal((await t.inScope(tool, "run")).out, "ok ran", "runs with the exception");
    assert.ok(
      hookEvents(t.plane, HOOK.EXEC).some((e) => e.exception === added.id && e.ruleId === DEFAULT_ID),
    );
    await t.apply({ mode: "audit", execDefaultDeny: { ruleId: DEFAULT_ID }, execAllow: [...RUNTIME] });
    assert.equal((await t.inScope(tool, "run")).out, "ok ran", "audit");
    assert.ok(
      hookEvents(t.plane, HOOK.EXEC).some((e) => e.exception === added.id),
      "audit events name it too",
    );
  },
);

vmTest("[vm] a file exception lets a denied file be read and ends with remove and its TTL", async (t) => {
  const secret = `${t.dir}/secret`;
  Deno.writeTextFileSync(secret, "s\n");
  Deno.chmodSync(secret, 0o644);
  await t.apply({ files: [{ ruleId: FILE_ID, path: secret }] });
  assert.match((await t.inScope(PROBE, "read", secret)).out, /EPERM/, "denied before");
  drain(t.plane);
  const added = await addException(t.paths, request(`file:${secret}`), LOCK);
  assert.doesNotMatch((await t.inScope(PROBE, "read", secret)).out, /EPERM/, "read with it");
  assert.ok(hookEvents(t.plane, HOOK.FILE_OPEN).some((e) => e.exception === added.id && e.decision === 1));
  await removeExceptions(t.paths, { id: added.id }, LOCK);
  assert.match((await t.inScope(PROBE, "read", secret)).out, /EPERM/, "denied again");
  await addException(t.paths, request(`file:${secret}`, "2s"), LOCK);
  await sleep(2500);
  assert.match((await t.inScope(PROBE, "read", secret)).out, /EPERM/, "denied after the TTL");
});

vmTest(
  "[vm] a file exception lifts files.protect for its inode: a write goes through, reported",
  async (t) => {
    const conf = `${t.dir}/protected.conf`;
    Deno.writeTextFileSync(conf, "a\n");
    Deno.chmodSync(conf, 0o644);
    await t.apply({ protect: [{ ruleId: PROTECT_ID, path: conf }] });
    // A shell in scope writes it.
    const write = (text: string) => t.inScope("sh", "-c", `echo ${text} > "$1"`, "sh", conf);
    assert.notEqual((await write("b")).code, 0, "a write is refused");
    drain(t.plane);
    const added = await addException(t.paths, request(`file:${conf}`), LOCK);
    assert.equal((await write("b")).code, 0, "written with the exception");
    assert.equal(Deno.readTextFileSync(conf), "b\n");
    assert.ok(hookEvents(t.plane, HOOK.FILE_WRITE).some((e) => e.exception === added.id));
    await removeExceptions(t.paths, { id: added.id }, LOCK);
    assert.notEqual((await write("c")).code, 0, "refused again");
  },
);

detachTest(shared, "exception");
