import assert from "node:assert/strict";
import { CFG, decodeU64, encodeU32, HOOK, type RawEvent, SIGNAL } from "../../../ffi/mod.ts";
import { cgroup2Root } from "../../../lib/kernel/cgroup.ts";
import type { DataPlane } from "../../../lib/kernel/dataplane.ts";
import { writeEnforceSignal } from "../../../lib/kernel/mode_words.ts";
import { resolvePlan } from "../../../lib/kernel/resolve.ts";
import { emptyPlan, type RuleInfo, type RuleSetPlan } from "../../../lib/policy/plan.ts";
import { drain } from "../../support/plane.ts";
import { SharedPlane } from "../../support/shared_plane.ts";
import { exists } from "../../../lib/kernel/pin_dir.ts";
import { assertRefused, copyExecutable, run } from "../../support/outcome.ts";

// The file guard (bpf/file_guard.bpf.h) inside the qemu guest, where BPF-LSM loads: each way around an
// inode rule is closed in enforce and reported in audit. The moves themselves are made by a small C
// program (tests/fixtures/file_guard_probe.c) so that each system call is the one an attacker would make.
// The tests share one loaded plane (tests/support/shared_plane.ts), each starting from it as a fresh load
// leaves it.
const inVm = Deno.env.get("AEGIS_IN_VM") === "1";
const PROBE = `${Deno.cwd()}/bpf/build/fixtures/file_guard_probe`;
const LIBRARY = `${Deno.cwd()}/bpf/build/fixtures/libprobe.so`;
const LOADER = "/lib64/ld-linux-x86-64.so.2";
let counter = 0;
const shared = new SharedPlane("file-guard");

type Fixture = {
  plane: DataPlane;
  /** Ends this process's hold on the plane, as an agent that exits: the pins keep enforcing. */
  closeAgent: () => void;
  bpffs: string;
  dir: string;
  apply: (parts: Partial<RuleSetPlan>) => Promise<void>;
};

function vmTest(name: string, fn: (fixture: Fixture) => Promise<void>): void {
  Deno.test({
    name,
    ignore: !inVm,
    fn: async () => {
      counter++;
      const dir = Deno.makeTempDirSync({ prefix: "aegisbpf-guard-" });
      Deno.chmodSync(dir, 0o755);
      try {
        const plane = shared.open({ areas: ["file", "exec"] });
        let open = true;
        const closeAgent = () => {
          if (open) plane.close();
          open = false;
        };
        try {
          assert.equal(plane.status.file.mode, "enforce", `file area: ${plane.status.file.reason}`);
          const apply = async (parts: Partial<RuleSetPlan>) => {
            await plane.apply(resolvePlan({ ...emptyPlan(), mode: "enforce", ...parts }));
          };
          await fn({ plane, closeAgent, bpffs: shared.bpffs, dir, apply });
        } finally {
          await shared.release(open ? plane : undefined);
        }
      } finally {
        Deno.removeSync(dir, { recursive: true });
      }
    },
  });
}

const DEFAULT: RuleInfo = { id: "default", area: "ingress", action: "deny" };
const FILE_RULES: RuleInfo[] = [DEFAULT, { id: "secret", area: "file", action: "deny" }];
const EXEC_RULES: RuleInfo[] = [DEFAULT, { id: "no-tool", area: "exec", action: "deny" }];

const probe = (...args: string[]) => run(PROBE, args);

function events(plane: DataPlane, hook: number): RawEvent[] {
  return drain(plane).filter((event) => event.hook === hook);
}

// ---- loader and mappings --------------------------------------------------------------------------------

vmTest(
  "[vm] exec: the dynamic loader cannot run a denied binary (ld.so BIN); audit reports it",
  async (t) => {
    const tool = copyExecutable(PROBE, `${t.dir}/tool`);
    assert.equal((await run(LOADER, [tool, "run"])).out, "ok ran", "ld.so runs it before any rule");
    await t.apply({ rules: EXEC_RULES, exec: [{ ruleId: 1, path: tool }] });
    assertRefused(await run(tool, ["run"]), "exec of the denied binary");
    const viaLoader = await run(LOADER, [tool, "run"]);
    assertRefused(viaLoader, "ld.so of the denied binary");
    assert.match(viaLoader.out, /Operation not permitted|failed to map/);
    assert.equal((await probe("run")).out, "ok ran", "other binaries still run");
    const denied = events(t.plane, HOOK.EXEC);
    assert.ok(
      denied.some((event) => event.comm.startsWith("ld-linux") && event.ruleId === 1),
      "ld.so reported",
    );

    await t.apply({ mode: "audit", rules: EXEC_RULES, exec: [{ ruleId: 1, path: tool }] });
    assert.equal((await run(LOADER, [tool, "run"])).out, "ok ran");
    const audited = events(t.plane, HOOK.EXEC);
    assert.ok(audited.length >= 1 && audited.every((event) => event.decision === 1 && event.ruleId === 1));
  },
);

vmTest("[vm] exec: dlopen of a denied library fails in enforce and is reported in audit", async (t) => {
  const library = copyExecutable(LIBRARY, `${t.dir}/libprobe.so`);
  assert.equal((await probe("dlopen", library)).out, "ok loaded");
  await t.apply({ rules: EXEC_RULES, exec: [{ ruleId: 1, path: library }] });
  const refused = await probe("dlopen", library);
  assertRefused(refused, "dlopen");
  assert.match(refused.out, /Operation not permitted|failed to map/);
  assert.equal(events(t.plane, HOOK.EXEC).filter((event) => event.decision === 0).length >= 1, true);

  await t.apply({ mode: "audit", rules: EXEC_RULES, exec: [{ ruleId: 1, path: library }] });
  assert.equal((await probe("dlopen", library)).out, "ok loaded");
  assert.ok(events(t.plane, HOOK.EXEC).some((event) => event.decision === 1 && event.ruleId === 1));
});

vmTest(
  "[vm] exec: mmap PROT_EXEC and mprotect to PROT_EXEC of a denied inode fail; readable mapping works",
  async (t) => {
    const blob = copyExecutable(LIBRARY, `${t.dir}/blob`);
    const other = copyExecutable(LIBRARY, `${t.dir}/other`);
    await t.apply({ rules: EXEC_RULES, exec: [{ ruleId: 1, path: blob }] });
    assert.match((await probe("mmap-exec", blob)).out, /^errno EPERM \(mmap\)/);
    assert.match((await probe("mprotect-exec", blob)).out, /^errno EPERM \(mprotect\)/);
    assert.equal((await probe("mmap-exec", other)).out, "ok mapped executable");
    assert.equal((await probe("read", blob)).out, "ok read", "an exec rule does not deny reading");
    assert.equal(t.plane.counters().decisions.exec.deny, 2n);

    await t.apply({ mode: "audit", rules: EXEC_RULES, exec: [{ ruleId: 1, path: blob }] });
    assert.equal((await probe("mmap-exec", blob)).out, "ok mapped executable");
    assert.equal((await probe("mprotect-exec", blob)).out, "ok mapped executable");
    assert.equal(t.plane.counters().decisions.exec.audit, 2n, "both reported as would-deny");
  },
);

// ---- stolen descriptors ---------------------------------------------------------------------------------

/** A process holding `path` open from before any rule; `scm()` makes it hand the descriptor over. */
async function holder(path: string) {
  const child = new Deno.Command(PROBE, { args: ["hold", path], stdin: "piped", stdout: "piped" }).spawn();
  const writer = child.stdin.getWriter();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  const line = async () => {
    while (!buffered.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`holder ended: ${buffered}`);
      buffered += value;
    }
    const end = buffered.indexOf("\n");
    const text = buffered.slice(0, end);
    buffered = buffered.slice(end + 1);
    return text;
  };
  const fd = Number(/^fd (\d+)$/.exec(await line())?.[1]);
  return {
    pid: child.pid,
    fd,
    async scm(): Promise<string[]> {
      await writer.write(new TextEncoder().encode("scm\n"));
      const first = await line();
      return first.startsWith("child") ? [first] : [first, await line()];
    },
    async close() {
      await writer.close();
      reader.releaseLock();
      await child.stdout.cancel().catch(() => {});
      await child.status;
    },
  };
}

vmTest(
  "[vm] file: pidfd_getfd and SCM_RIGHTS of a denied file held from before apply fail in enforce",
  async (t) => {
    const secret = `${t.dir}/secret`;
    Deno.writeTextFileSync(secret, "s");
    const held = await holder(secret);
    try {
      assert.equal(
        (await probe("getfd", String(held.pid), String(held.fd))).out,
        "ok read",
        "before any rule",
      );
      await t.apply({ rules: FILE_RULES, files: [{ ruleId: 1, path: secret }] });
      assert.match(
        (await probe("getfd", String(held.pid), String(held.fd))).out,
        /^errno EPERM \(pidfd_getfd\)/,
      );
      assert.deepEqual(await held.scm(), ["refused: no descriptor received (MSG_CTRUNC)", "child 3"]);
      const denied = events(t.plane, HOOK.FILE_OPEN);
      assert.equal(denied.filter((event) => event.decision === 0 && event.ruleId === 1).length, 2);

      await t.apply({ mode: "audit", rules: FILE_RULES, files: [{ ruleId: 1, path: secret }] });
      assert.equal((await probe("getfd", String(held.pid), String(held.fd))).out, "ok read");
      assert.deepEqual(await held.scm(), ["ok read", "child 0"]);
      assert.equal(events(t.plane, HOOK.FILE_OPEN).filter((event) => event.decision === 1).length, 2);
    } finally {
      await held.close();
    }
  },
);

// ---- fileless exec --------------------------------------------------------------------------------------

vmTest("[vm] exec: exec.denyMemfd refuses fexecve of a memfd in enforce, reports it in audit", async (t) => {
  const busybox = Deno.realPathSync("/usr/bin/busybox");
  assert.equal((await probe("memfd-exec", busybox, "echo", "ran")).out, "ran", "memfd exec works before");
  await t.apply({
    rules: [...EXEC_RULES, { id: "exec.denyMemfd", area: "exec", action: "deny" }],
    denyMemfdExec: { ruleId: 2 },
  });
  assert.match((await probe("memfd-exec", busybox, "echo", "ran")).out, /^errno EPERM \(fexecve\)/);
  assert.equal(await run("/usr/bin/busybox", ["true"]).then((outcome) => outcome.code), 0, "files still run");
  assert.ok(events(t.plane, HOOK.EXEC).some((event) => event.decision === 0 && event.ruleId === 2));
  // No execve of the memfd at all: the loader maps it (ld.so /proc/self/fd/N).
  const tool = copyExecutable(PROBE, `${t.dir}/tool`);
  assert.match(
    (await probe("memfd-loader", LOADER, tool, "run")).out,
    /Operation not permitted|failed to map/,
  );

  await t.apply({
    mode: "audit",
    rules: [...EXEC_RULES, { id: "exec.denyMemfd", area: "exec", action: "deny" }],
    denyMemfdExec: { ruleId: 2 },
  });
  assert.equal((await probe("memfd-exec", busybox, "echo", "ran")).out, "ran");
  assert.equal((await probe("memfd-loader", LOADER, tool, "run")).out, "ok ran");
  assert.ok(events(t.plane, HOOK.EXEC).some((event) => event.decision === 1 && event.ruleId === 2));
  await t.apply({ rules: EXEC_RULES });
  assert.equal((await probe("memfd-exec", busybox, "echo", "ran")).out, "ran", "off again with the switch");
});

vmTest(
  "[vm] exec: exec.denyMemfd holds in scope only: an exempt task runs a memfd by fexecve and by the loader",
  async (t) => {
    const busybox = Deno.realPathSync("/usr/bin/busybox");
    const tool = copyExecutable(PROBE, `${t.dir}/tool`);
    const base = `${cgroup2Root()}/aegisbpf-memfd-${counter}`;
    Deno.mkdirSync(`${base}/exempt`, { recursive: true });
    const exempt = (...args: string[]) =>
      run("sh", ["-c", `echo $$ > '${base}/exempt/cgroup.procs' && exec '${PROBE}' ${args.join(" ")}`]);
    try {
      await t.apply({
        rules: [...EXEC_RULES, { id: "exec.denyMemfd", area: "exec", action: "deny" }],
        denyMemfdExec: { ruleId: 2 },
        scope: { include: [], exempt: [base.slice(cgroup2Root().length) + "/exempt"] },
      });
      assert.match((await probe("memfd-exec", busybox, "echo", "ran")).out, /^errno EPERM \(fexecve\)/);
      assert.match(
        (await probe("memfd-loader", LOADER, tool, "run")).out,
        /Operation not permitted|failed to map/,
      );
      assert.equal(events(t.plane, HOOK.EXEC).filter((event) => event.ruleId === 2).length >= 2, true);
      assert.equal((await exempt("memfd-exec", busybox, "echo", "ran")).out, "ran", "exempt: fexecve");
      assert.equal((await exempt("memfd-loader", LOADER, tool, "run")).out, "ok ran", "exempt: the loader");
      assert.deepEqual(
        events(t.plane, HOOK.EXEC).filter((event) => event.ruleId === 2),
        [],
        "nothing reported",
      );
    } finally {
      Deno.removeSync(`${base}/exempt`);
      Deno.removeSync(base);
    }
  },
);

// ---- rules that follow a replace ------------------------------------------------------------------------

vmTest(
  "[vm] file: dpkg- and passwd-style replaces from an exempt cgroup stay denied with no agent running",
  async (t) => {
    const secret = `${t.dir}/secret`;
    Deno.writeTextFileSync(secret, "old");
    // The package manager runs exempt: a task in scope may not replace a denied file (file.change).
    const base = `${cgroup2Root()}/aegisbpf-replace-${counter}`;
    Deno.mkdirSync(`${base}/exempt`, { recursive: true });
    const exempt = (...args: string[]) =>
      run("sh", ["-c", `echo $$ > '${base}/exempt/cgroup.procs' && exec '${PROBE}' ${args.join(" ")}`]);
    try {
      await t.apply({
        rules: FILE_RULES,
        files: [{ ruleId: 1, path: secret }],
        scope: { include: [], exempt: [base.slice(cgroup2Root().length) + "/exempt"] },
      });
      t.closeAgent(); // the agent is gone: only the pinned programs and maps remain
      Deno.writeTextFileSync(`${t.dir}/in-scope`, "new");
      assert.match((await probe("rename", `${t.dir}/in-scope`, secret)).out, /^errno EPERM/, "in scope");
      for (const temporary of [`${t.dir}/secret.dpkg-new`, `${t.dir}/nsecret`, `${t.dir}/.secret.swp`]) {
        Deno.writeTextFileSync(temporary, "new");
        assert.equal(
          (await probe("read", temporary)).out,
          "ok read",
          "the new file is readable before the rename",
        );
        assert.equal((await exempt("rename", temporary, secret)).out, "ok renamed");
        assert.match((await probe("read", secret)).out, /^errno EPERM/, `after rename of ${temporary}`);
      }
    } finally {
      Deno.removeSync(`${base}/exempt`);
      Deno.removeSync(base);
    }
  },
);

vmTest(
  "[vm] exec: a denied binary upgraded by dpkg (new file renamed over it) stays denied, loader included",
  async (t) => {
    const tool = copyExecutable(PROBE, `${t.dir}/tool`);
    await t.apply({ rules: EXEC_RULES, exec: [{ ruleId: 1, path: tool }] });
    t.closeAgent();
    const upgrade = copyExecutable(PROBE, `${t.dir}/tool.dpkg-new`);
    assert.equal((await run(upgrade, ["run"])).out, "ok ran", "the new version runs under its own name");
    Deno.renameSync(upgrade, tool);
    assertRefused(await run(tool, ["run"]), "exec of the upgraded binary");
    assertRefused(await run(LOADER, [tool, "run"]), "ld.so of the upgraded binary");
  },
);

vmTest(
  "[vm] file: an unprivileged rename never un-denies: over, away and exchange refused; audit follows",
  async (t) => {
    const home = `${t.dir}/home`;
    Deno.mkdirSync(home);
    Deno.chownSync(home, 1000, 1000);
    const secret = `${home}/id_key`;
    Deno.writeTextFileSync(secret, "key");
    Deno.chownSync(secret, 1000, 1000);
    await t.apply({ rules: FILE_RULES, files: [{ ruleId: 1, path: secret }] });
    const asUser = (...args: string[]) => probe("as", "1000", PROBE, ...args);
    const write = (path: string) => {
      Deno.writeTextFileSync(path, "mine");
      Deno.chownSync(path, 1000, 1000);
    };

    assert.match((await asUser("read", secret)).out, /^errno EPERM/);
    write(`${home}/decoy`);
    assert.match((await asUser("rename", `${home}/decoy`, secret)).out, /^errno EPERM/, "over: refused");
    assert.match((await asUser("rename", secret, `${home}/moved`)).out, /^errno EPERM/, "away: refused");
    assert.match(
      (await asUser("exchange", `${home}/decoy`, secret)).out,
      /^errno EPERM/,
      "exchange: refused",
    );
    // In audit (break-glass) the renames go through, and the rule follows the inodes for when enforce is back.
    const inAudit = async (...args: string[]) => {
      t.plane.setConfig({ breakGlass: true });
      try {
        return (await asUser(...args)).out;
      } finally {
        t.plane.setConfig({ breakGlass: false });
      }
    };
    assert.equal(await inAudit("rename", `${home}/decoy`, secret), "ok renamed");
    assert.match((await asUser("read", secret)).out, /^errno EPERM/, "renamed over: the newcomer is denied");
    assert.equal(await inAudit("rename", secret, `${home}/moved`), "ok renamed");
    assert.match((await asUser("read", `${home}/moved`)).out, /^errno EPERM/, "renamed away: still denied");
    write(`${home}/swap`);
    assert.equal(await inAudit("exchange", `${home}/moved`, `${home}/swap`), "ok exchanged");
    assert.match((await asUser("read", `${home}/moved`)).out, /^errno EPERM/, "exchanged in");
    assert.match((await asUser("read", `${home}/swap`)).out, /^errno EPERM/, "exchanged out");
    write(`${home}/unrelated`);
    assert.equal((await asUser("read", `${home}/unrelated`)).out, "ok read", "other files are untouched");
  },
);

vmTest(
  "[vm] file: the first inode to inherit a rule turns the inheritance lookup on, and is denied at once",
  async (t) => {
    const secret = `${t.dir}/secret`;
    Deno.writeTextFileSync(secret, "s");
    await t.apply({ rules: FILE_RULES, files: [{ ruleId: 1, path: secret }] });
    // Until an inode inherits a rule, a file no rule names costs one lookup: the word stays off.
    const inheritedWord = () => decodeU64(t.plane.map("aegis_cfg").lookup(encodeU32(CFG.INHERITED))!);
    Deno.writeTextFileSync(`${t.dir}/other`, "o");
    Deno.renameSync(`${t.dir}/other`, `${t.dir}/moved`);
    assert.equal(inheritedWord(), 0n, "a rename over no denied file inherits nothing");
    Deno.writeTextFileSync(`${t.dir}/new`, "n");
    t.plane.setConfig({ breakGlass: true });
    try {
      Deno.renameSync(`${t.dir}/new`, secret);
    } finally {
      t.plane.setConfig({ breakGlass: false });
    }
    assert.equal(inheritedWord(), 1n, "the rename over the denied file turned it on");
    assert.equal((await probe("read", secret)).out.split(" ").slice(0, 2).join(" "), "errno EPERM");
  },
);

// ---- kill on deny ---------------------------------------------------------------------------------------

vmTest(
  "[vm] kill on deny: the kernel sends term or kill to a denied task and says so; exempt never",
  async (t) => {
    const secret = `${t.dir}/secret`;
    Deno.writeTextFileSync(secret, "s");
    const base = `${cgroup2Root()}/aegisbpf-kill-${counter}`;
    Deno.mkdirSync(`${base}/exempt`, { recursive: true });
    try {
      await t.apply({
        rules: FILE_RULES,
        files: [{ ruleId: 1, path: secret }],
        scope: { include: [], exempt: [base.slice(cgroup2Root().length) + "/exempt"] },
      });
      assert.equal((await probe("read", secret)).signal, null, "no signal by default");
      assert.ok(writeEnforceSignal(t.bpffs, "term"));
      assert.equal((await probe("read", secret)).signal, "SIGTERM");
      assert.ok(writeEnforceSignal(t.bpffs, "kill"));
      assert.equal((await probe("read", secret)).signal, "SIGKILL");
      const signalled = events(t.plane, HOOK.FILE_OPEN).map((event) => event.signal);
      assert.deepEqual(signalled, [0, SIGNAL.TERM, SIGNAL.KILL]);
      const exempt = await run("sh", [
        "-c",
        `echo $$ > '${base}/exempt/cgroup.procs' && exec '${PROBE}' read '${secret}'`,
      ]);
      assert.deepEqual(
        [exempt.signal, exempt.out],
        [null, "ok read"],
        "an exempt task is neither denied nor killed",
      );
      t.plane.setConfig({ breakGlass: true });
      assert.deepEqual((await probe("read", secret)).signal, null, "audit (break-glass) never signals");
      t.plane.setConfig({ breakGlass: false });
      assert.ok(writeEnforceSignal(t.bpffs, "none"));
      assert.equal((await probe("read", secret)).signal, null);
    } finally {
      Deno.removeSync(`${base}/exempt`);
      Deno.removeSync(base);
    }
  },
);

// ---- scope escape ---------------------------------------------------------------------------------------

vmTest(
  "[vm] scope: a task in the canary cannot move out of it or into an exempt cgroup; audit reports",
  async (t) => {
    const secret = `${t.dir}/secret`;
    Deno.writeTextFileSync(secret, "s");
    const root = cgroup2Root();
    const base = `${root}/aegisbpf-scope-${counter}`;
    const names = ["", "/canary", "/canary/inner", "/canary/exempt", "/other"];
    for (const name of names) Deno.mkdirSync(`${base}${name}`);
    const rel = (name: string) => `${base}${name}`.slice(root.length);
    /** Runs the probe from inside cgroup `from`. */
    const inCgroup = (from: string, ...args: string[]) =>
      run("sh", [
        "-c",
        `echo $$ > '${base}${from}/cgroup.procs' && exec '${PROBE}' ${args.map((a) => `'${a}'`).join(" ")}`,
      ]);
    const plan = (mode: "audit" | "enforce") => ({
      mode,
      rules: [...FILE_RULES, { id: "scope.escape", area: "exec" as const, action: "deny" as const }],
      files: [{ ruleId: 1, path: secret }],
      scope: { include: [rel("/canary")], exempt: [rel("/canary/exempt")] },
      scopeGuard: { ruleId: 2 },
    });
    try {
      await t.apply(plan("enforce"));
      // Refused at the open for writing already (the same permission check), or at the write.
      assert.match(
        (await inCgroup("/canary", "move", `${base}/other/cgroup.procs`)).out,
        /^errno EPERM \((open|write)\)/,
      );
      assert.match(
        (await inCgroup("/canary", "move", `${base}/canary/exempt/cgroup.procs`)).out,
        /^errno EPERM/,
      );
      assert.match((await inCgroup("/canary", "move", `${root}/cgroup.procs`)).out, /^errno EPERM/);
      assert.match((await inCgroup("/canary", "clone-into", `${base}/other`)).out, /^errno EPERM \(clone3\)/);
      assert.equal((await inCgroup("/canary", "move", `${base}/canary/inner/cgroup.procs`)).out, "ok moved");
      assert.equal(
        (await inCgroup("/other", "move", `${base}/canary/exempt/cgroup.procs`)).out,
        "ok moved",
        "out of scope: free",
      );
      assert.equal(
        (await inCgroup("/canary/exempt", "move", `${base}/other/cgroup.procs`)).out,
        "ok moved",
        "exempt: free",
      );
      const escapes = events(t.plane, HOOK.SCOPE);
      assert.equal(escapes.filter((event) => event.decision === 0 && event.ruleId === 2).length, 4);
      assert.ok(escapes.some((event) => event.ino === BigInt(Deno.statSync(`${base}/other`).ino ?? 0)));

      assert.ok(t.plane.links.includes("aegis_scope_guard"), "the guard is attached with the scope");

      await t.apply(plan("audit"));
      assert.equal((await inCgroup("/canary", "move", `${base}/other/cgroup.procs`)).out, "ok moved");
      assert.ok(events(t.plane, HOOK.SCOPE).some((event) => event.decision === 1 && event.ruleId === 2));
      await t.apply({ rules: FILE_RULES, files: [{ ruleId: 1, path: secret }] });
      assert.ok(!t.plane.links.includes("aegis_scope_guard"), "a policy without a scope does not pay for it");
    } finally {
      for (const name of names.toReversed()) Deno.removeSync(`${base}${name}`);
    }
  },
);

// Last: the shared plane goes, with everything it pinned and attached.
Deno.test({
  name: "[vm] the file guard tests' shared data plane detaches: nothing of it stays pinned",
  ignore: !inVm,
  fn: () => {
    shared.detach();
    assert.equal(exists(shared.bpffs), false);
  },
});
