import assert from "node:assert/strict";
import { HOOK, type RawEvent } from "../../../ffi/mod.ts";
import { cgroup2Root } from "../../../lib/kernel/cgroup.ts";
import type { DataPlane } from "../../../lib/kernel/dataplane.ts";
import { exists } from "../../../lib/kernel/pin_dir.ts";
import { resolvePlan } from "../../../lib/kernel/resolve.ts";
import { parseExecutableMappings } from "../../../lib/policy/facts.ts";
import { type AllowTarget, emptyPlan, type RuleInfo, type RuleSetPlan } from "../../../lib/policy/plan.ts";
import { addException, type ExceptionRequest, removeExceptions } from "../../../lib/ops/exceptions.ts";
import { drain } from "../../support/plane.ts";
import { SharedPlane } from "../../support/shared_plane.ts";

// Expiring exceptions (bpf/exception.bpf.h) inside the qemu guest, where BPF-LSM loads: an exec or file
// exception lets through what the policy denies (exec.deny, exec.default deny, file deny, files.protect),
// the event names it, and the deny is back after `remove` and after the TTL, with no agent. Scoped to a
// cgroup of the test's own, as exec_allow_test.ts is.
const inVm = Deno.env.get("AEGIS_IN_VM") === "1";
const PROBE = `${Deno.cwd()}/bpf/build/fixtures/file_guard_probe`;
const shared = new SharedPlane("exception");
let counter = 0;

const RULES: RuleInfo[] = [
  { id: "default", area: "ingress", action: "deny" },
  { id: "no-tool", area: "exec", action: "deny" },
  { id: "exec.default", area: "exec", action: "deny" },
  { id: "runtime", area: "exec", action: "allow" },
  { id: "no-secret", area: "file", action: "deny" },
  { id: "protected", area: "file", action: "deny" },
];
const EXEC_DENY_ID = 1, DEFAULT_ID = 2, RUNTIME_ID = 3, FILE_ID = 4, PROTECT_ID = 5;

const RUNTIME: AllowTarget[] = parseExecutableMappings(Deno.readTextFileSync("/proc/self/maps")).map((
  path,
) => ({
  ruleId: RUNTIME_ID,
  path,
  optional: true,
}));

type Outcome = { code: number; out: string };
type Fixture = {
  plane: DataPlane;
  dir: string;
  paths: { bpffs: string; stateDir: string; configDir: string };
  inScope: (script: string, ...args: string[]) => Promise<Outcome>;
  apply: (parts: Partial<RuleSetPlan>) => Promise<unknown>;
};

async function run(program: string, args: string[]): Promise<Outcome> {
  const output = await new Deno.Command(program, { args, stdout: "piped", stderr: "piped" }).output();
  const decoder = new TextDecoder();
  return { code: output.code, out: (decoder.decode(output.stdout) + decoder.decode(output.stderr)).trim() };
}

function vmTest(name: string, fn: (fixture: Fixture) => Promise<void>, last = false): void {
  Deno.test({
    name,
    ignore: !inVm,
    fn: async () => {
      counter++;
      const dir = Deno.makeTempDirSync({ prefix: "aegisbpf-exception-" });
      Deno.chmodSync(dir, 0o755);
      const cgroup = `${cgroup2Root()}/aegisbpf-exception-${counter}`;
      if (exists(cgroup)) Deno.removeSync(cgroup);
      Deno.mkdirSync(cgroup);
      try {
        const plane = shared.open({ areas: ["exec", "file"] });
        try {
          assert.equal(plane.status.exec.mode, "enforce", `exec area: ${plane.status.exec.reason}`);
          const scope = { include: [cgroup.slice(cgroup2Root().length)], exempt: [] };
          await fn({
            plane,
            dir,
            paths: { bpffs: shared.bpffs, stateDir: `${dir}/state`, configDir: `${dir}/config` },
            inScope: (script, ...args) =>
              run("sh", ["-c", `echo $$ > '${cgroup}/cgroup.procs' && ${script}`, "sh", ...args]),
            apply: (parts) =>
              plane.apply(resolvePlan({ ...emptyPlan(), mode: "enforce", rules: RULES, scope, ...parts })),
          });
        } finally {
          await shared.release(plane);
        }
      } finally {
        Deno.removeSync(cgroup);
        Deno.removeSync(dir, { recursive: true });
        if (last) shared.detach();
      }
    },
  });
}

const LOCK = { uid: 0, wait: false, onWait: () => {} };

function request(allow: string, ttl = "10m"): ExceptionRequest {
  return { allow, ttl, reason: "INC-9 test", ticket: "CHG-9" };
}

function copy(source: string, dir: string, name: string): string {
  const path = `${dir}/${name}`;
  Deno.copyFileSync(source, path);
  Deno.chmodSync(path, 0o755);
  return path;
}

function events(plane: DataPlane, hook: number): RawEvent[] {
  return drain(plane).filter((event) => event.hook === hook && !(event.flags & 1));
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

vmTest(
  "[vm] an exec exception lets a denied binary run, names itself in the event, and ends with remove and its TTL",
  async (t) => {
    const tool = copy(PROBE, t.dir, "tool");
    await t.apply({ exec: [{ ruleId: EXEC_DENY_ID, path: tool }] });
    assert.notEqual((await t.inScope('exec "$1" run', tool)).code, 0, "denied before");
    drain(t.plane);
    const added = await addException(t.paths, request(`exec:${tool}`), LOCK);
    assert.equal((await t.inScope('exec "$1" run', tool)).out, "ok ran", "runs with the exception");
    const seen = events(t.plane, HOOK.EXEC);
    assert.ok(
      seen.some((e) => e.exception === added.id && e.decision === 1 && e.ruleId === EXEC_DENY_ID),
      "event names it",
    );
    await removeExceptions(t.paths, { id: added.id }, LOCK);
    assert.notEqual((await t.inScope('exec "$1" run', tool)).code, 0, "denied again after remove");
    await addException(t.paths, request(`exec:${tool}`, "2s"), LOCK);
    assert.equal((await t.inScope('exec "$1" run', tool)).out, "ok ran", "runs during the TTL");
    await sleep(2500);
    assert.notEqual(
      (await t.inScope('exec "$1" run', tool)).code,
      0,
      "denied after the TTL, no agent running",
    );
  },
);

vmTest(
  "[vm] an exec exception beats exec.default deny (an allowlist miss), in enforce and in audit",
  async (t) => {
    const tool = copy(PROBE, t.dir, "untrusted");
    await t.apply({ execDefaultDeny: { ruleId: DEFAULT_ID }, execAllow: [...RUNTIME] });
    assert.notEqual((await t.inScope('exec "$1" run', tool)).code, 0, "an allowlist miss is denied");
    drain(t.plane);
    const added = await addException(t.paths, request(`exec:${tool}`), LOCK);
    assert.equal((await t.inScope('exec "$1" run', tool)).out, "ok ran", "runs with the exception");
    assert.ok(events(t.plane, HOOK.EXEC).some((e) => e.exception === added.id && e.ruleId === DEFAULT_ID));
    await t.apply({ mode: "audit", execDefaultDeny: { ruleId: DEFAULT_ID }, execAllow: [...RUNTIME] });
    assert.equal((await t.inScope('exec "$1" run', tool)).out, "ok ran", "audit");
    assert.ok(events(t.plane, HOOK.EXEC).some((e) => e.exception === added.id), "audit events name it too");
  },
);

vmTest("[vm] a file exception lets a denied file be read and ends with remove and its TTL", async (t) => {
  const secret = `${t.dir}/secret`;
  Deno.writeTextFileSync(secret, "s\n");
  Deno.chmodSync(secret, 0o644);
  await t.apply({ files: [{ ruleId: FILE_ID, path: secret }] });
  assert.match((await t.inScope('exec "$1" read "$2"', PROBE, secret)).out, /EPERM/, "denied before");
  drain(t.plane);
  const added = await addException(t.paths, request(`file:${secret}`), LOCK);
  assert.doesNotMatch((await t.inScope('exec "$1" read "$2"', PROBE, secret)).out, /EPERM/, "read with it");
  assert.ok(events(t.plane, HOOK.FILE_OPEN).some((e) => e.exception === added.id && e.decision === 1));
  await removeExceptions(t.paths, { id: added.id }, LOCK);
  assert.match((await t.inScope('exec "$1" read "$2"', PROBE, secret)).out, /EPERM/, "denied again");
  await addException(t.paths, request(`file:${secret}`, "2s"), LOCK);
  await sleep(2500);
  assert.match((await t.inScope('exec "$1" read "$2"', PROBE, secret)).out, /EPERM/, "denied after the TTL");
});

vmTest(
  "[vm] a file exception lifts files.protect for its inode: a write goes through, reported",
  async (t) => {
    const conf = `${t.dir}/protected.conf`;
    Deno.writeTextFileSync(conf, "a\n");
    Deno.chmodSync(conf, 0o644);
    await t.apply({ protect: [{ ruleId: PROTECT_ID, path: conf }] });
    assert.notEqual((await t.inScope('echo b > "$1"', conf)).code, 0, "a write is refused");
    drain(t.plane);
    const added = await addException(t.paths, request(`file:${conf}`), LOCK);
    assert.equal((await t.inScope('echo b > "$1"', conf)).code, 0, "written with the exception");
    assert.equal(Deno.readTextFileSync(conf), "b\n");
    assert.ok(events(t.plane, HOOK.FILE_WRITE).some((e) => e.exception === added.id));
    await removeExceptions(t.paths, { id: added.id }, LOCK);
    assert.notEqual((await t.inScope('echo c > "$1"', conf)).code, 0, "refused again");
  },
  true,
);
