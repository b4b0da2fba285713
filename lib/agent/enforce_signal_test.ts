import assert from "node:assert/strict";
import { addressWords, DECISION, EVENT, HOOK, rawEvent, type RawEventFields, SIGNAL } from "../../ffi/mod.ts";
import { decideSignal, readTaskFacts, type TaskFacts } from "./enforce_signal.ts";

/** A deny of a connect by pid 4321, 5 s after boot. */
function deny(fields: Partial<RawEventFields> = {}) {
  return rawEvent({
    tsHi: 1,
    tsLo: 5_000_000_000 - 2 ** 32,
    cgroupIdHi: 0,
    cgroupIdLo: 42,
    inoHi: 0,
    inoLo: 0,
    dev: 0,
    pid: 4321,
    ppid: 1,
    uid: 1000,
    gid: 1000,
    ruleId: 1,
    count: 1,
    ifindex: 0,
    dport: 22,
    sport: 0,
    hook: HOOK.CONNECT,
    decision: DECISION.DENY,
    mode: 1,
    family: 4,
    protocol: 6,
    gen: 0,
    flags: 0,
    op: 0,
    signal: 0,
    daddrWords: addressWords(new Uint8Array(16)),
    saddrWords: addressWords(new Uint8Array(16)),
    comm: "curl",
    ...fields,
  });
}

const TASK: TaskFacts = { cgroupPath: "/canary.slice/app.service", startBootNs: 1_000_000_000n };

Deno.test("decideSignal() sends the configured signal to the task of a deny the kernel did not signal", () => {
  assert.deepEqual(decideSignal(deny(), "term", [], TASK), { send: "SIGTERM", signal: SIGNAL.TERM });
  assert.deepEqual(decideSignal(deny(), "kill", ["/system.slice"], TASK), {
    send: "SIGKILL",
    signal: SIGNAL.KILL,
  });
});

Deno.test("decideSignal() never signals PID 1, an exempt task, a reused pid, or what needs no signal", () => {
  const cases: [ReturnType<typeof deny>, string, TaskFacts | undefined, string][] = [
    [deny(), "none", TASK, "no enforce signal configured"],
    [deny({ decision: DECISION.AUDIT }), "kill", TASK, "not a denial"],
    [deny({ signal: SIGNAL.KILL }), "kill", TASK, "the kernel signalled the task"],
    [deny({ flags: EVENT.SUMMARY }), "kill", TASK, "a summary: its task was signalled at its first event"],
    [deny({ hook: HOOK.INGRESS }), "kill", TASK, "no task"],
    [deny({ pid: 1 }), "kill", TASK, "PID 1 is never signalled"],
    [deny(), "kill", undefined, "the task has exited"],
    [deny(), "kill", { ...TASK, startBootNs: 6_000_000_000n }, "the pid now names another task"],
  ];
  for (const [event, configured, task, reason] of cases) {
    assert.deepEqual(decideSignal(event, configured as "none" | "kill", [], task), { skip: reason });
  }
  for (const exempt of ["/canary.slice", "/canary.slice/app.service", "canary.slice/", "/"]) {
    assert.deepEqual(decideSignal(deny(), "kill", [exempt], TASK), {
      skip: "the task is in an exempt cgroup",
    });
  }
  // A sibling whose name starts the same is not inside the exempt subtree.
  assert.ok("send" in decideSignal(deny(), "kill", ["/canary"], TASK));
});

Deno.test("readTaskFacts() reads the unified cgroup and the start time, even with ') ' in comm", () => {
  const proc = Deno.makeTempDirSync();
  try {
    Deno.mkdirSync(`${proc}/77`);
    Deno.writeTextFileSync(`${proc}/77/cgroup`, "1:name=systemd:/x\n0::/user.slice/a b\n");
    const fields = Array.from({ length: 50 }, (_, i) => String(i + 3));
    fields[19] = "1234"; // field 22
    Deno.writeTextFileSync(`${proc}/77/stat`, `77 (evil) (x) ${fields.join(" ")}\n`);
    assert.deepEqual(readTaskFacts(77, proc), {
      cgroupPath: "/user.slice/a b",
      startBootNs: 12_340_000_000n,
    });
    assert.equal(readTaskFacts(78, proc), undefined);
  } finally {
    Deno.removeSync(proc, { recursive: true });
  }
});
