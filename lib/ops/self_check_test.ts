import assert from "node:assert/strict";
import { appendHistory, type HistoryEntry, listHistory } from "../state/history.ts";
import { readSelfCheckMarker, writeSelfCheckMarker } from "../state/self_check_marker.ts";
import { checkedFlip, type CheckedPolicy, resolvePendingCheck, SelfCheckFailedError } from "./self_check.ts";
import type { ProbeResult } from "./probe_run.ts";

const SHA = (n: number) => n.toString(16).padStart(64, "0");

function append(stateDir: string, version: number, outcome: HistoryEntry["outcome"], restoredSeq?: number) {
  return appendHistory(stateDir, {
    uid: 0,
    source: `v${version}.yaml`,
    kind: "policy",
    name: "t",
    version,
    sha256: SHA(version),
    outcome,
    content: `version ${version}`,
    ...restoredSeq !== undefined && { restoredSeq },
  });
}

/** A policy with one probe in the cgroup v2 root (`in: /`: no cgroup of its own is made). */
const POLICY: CheckedPolicy = {
  spec: { mode: "enforce", checks: { implicit: false, mustWork: [{ exec: "/bin/true", in: "/" }] } },
};

async function withState(
  fn: (where: { bpffs: string; stateDir: string; configDir: string }) => Promise<void>,
) {
  const dir = Deno.makeTempDirSync({ prefix: "aegisbpf-self-check-" });
  try {
    await fn({ bpffs: `${dir}/bpffs`, stateDir: dir, configDir: `${dir}/etc` });
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

const runner = (got: ProbeResult["got"]) => () => Promise.resolve({ got, detail: "fake" });

Deno.test("checkedFlip(): a failed probe marks the entry check-failed, puts the previous one back, exit 3", async () => {
  await withState(async (where) => {
    append(where.stateDir, 1, "applied");
    const restoredFrom: (HistoryEntry | undefined)[] = [];
    const emitted: Record<string, unknown>[] = [];
    let markerAtFlip: unknown;
    const failure = await checkedFlip(where, POLICY, { sha256: SHA(2), name: "t", version: 2 }, {
      holder: "policy apply",
      cgroupRoot: where.stateDir,
      runner: runner("denied"),
      emit: (type, fields) => emitted.push({ type, ...fields }),
      rollBack: (previous) => {
        restoredFrom.push(previous);
        return Promise.resolve(append(where.stateDir, 1, "rolled-back", previous!.seq));
      },
    }, () => {
      markerAtFlip = readSelfCheckMarker(where.stateDir);
      return Promise.resolve({ entry: append(where.stateDir, 2, "applied") });
    }).then(() => undefined, (error) => error);
    assert.ok(failure instanceof SelfCheckFailedError, String(failure));
    assert.match(
      failure.message,
      /^self-check failed: mustWork exec \/bin\/true in \/: expected it to work, got denied \(fake\); rolled back to history entry 1 \(policy t version 1\), recorded as entry 3$/,
    );
    assert.deepEqual(
      (markerAtFlip as { previousSeq?: number }).previousSeq,
      1,
      "the marker is written before the flip",
    );
    assert.equal(restoredFrom[0]?.seq, 1);
    const entries = listHistory(where.stateDir);
    assert.deepEqual(entries.map((e) => e.outcome), ["applied", "check-failed", "rolled-back"]);
    assert.match(entries[1]!.note!, /^self-check failed: mustWork exec/);
    assert.equal(readSelfCheckMarker(where.stateDir), undefined);
    assert.deepEqual(emitted.map((e) => [e.type, e.history, e.restored, e.rollback]), [[
      "policy.check_failed",
      2,
      1,
      3,
    ]]);
  });
});

Deno.test("checkedFlip(): passing probes keep the policy; a policy without checks runs none", async () => {
  await withState(async (where) => {
    const kept = await checkedFlip(where, POLICY, { sha256: SHA(1), name: "t", version: 1 }, {
      holder: "policy apply",
      cgroupRoot: where.stateDir,
      runner: runner("worked"),
      rollBack: () => assert.fail("no rollback"),
    }, () => Promise.resolve({ entry: append(where.stateDir, 1, "applied") }));
    assert.equal(kept.checks?.failed.length, 0);
    assert.equal(kept.checks?.outcomes[0]?.passed, true);
    assert.equal(readSelfCheckMarker(where.stateDir), undefined);
    const plain = await checkedFlip(where, { spec: {} }, { sha256: SHA(2), name: "t", version: 2 }, {
      holder: "policy apply",
      cgroupRoot: where.stateDir,
      runner: () => assert.fail("no probe"),
      rollBack: () => assert.fail("no rollback"),
    }, () => Promise.resolve({ entry: append(where.stateDir, 2, "applied") }));
    assert.equal(plain.checks, undefined);
  });
});

Deno.test("checkedFlip(): a mustDeny probe is skipped, with a note, when the policy only audits", async () => {
  await withState(async (where) => {
    const audit: CheckedPolicy = {
      spec: { mode: "audit", checks: { implicit: false, mustDeny: [{ exec: "/bin/true", in: "/" }] } },
    };
    const kept = await checkedFlip(where, audit, { sha256: SHA(1), name: "t", version: 1 }, {
      holder: "policy apply",
      cgroupRoot: where.stateDir,
      runner: () => assert.fail("no probe"),
      rollBack: () => assert.fail("no rollback"),
    }, () => Promise.resolve({ entry: append(where.stateDir, 1, "applied") }));
    assert.deepEqual(kept.checks?.notes, [
      "1 mustDeny probes skipped: the policy's mode is audit, nothing is denied",
    ]);
  });
});

Deno.test("resolvePendingCheck(): a check a killed command left is finished: kept when it passes, else rolled back", async () => {
  await withState(async (where) => {
    append(where.stateDir, 1, "applied");
    const two = append(where.stateDir, 2, "applied");
    const marker = {
      sha256: SHA(2),
      name: "t",
      version: 2,
      seq: two.seq,
      previousSeq: 1,
      holder: "policy apply",
    };
    writeSelfCheckMarker(where.stateDir, { ...marker, pid: 999_999_999, time: new Date().toISOString() });
    const passed = await resolvePendingCheck(where, {
      policyOf: () => Promise.resolve(POLICY),
      cgroupRoot: where.stateDir,
      runner: runner("worked"),
      rollBack: () => assert.fail("no rollback"),
    });
    assert.match(passed!, /passed now: history entry 2 stays in force/);
    assert.equal(readSelfCheckMarker(where.stateDir), undefined);

    writeSelfCheckMarker(where.stateDir, { ...marker, pid: 999_999_999, time: new Date().toISOString() });
    const failed = await resolvePendingCheck(where, {
      policyOf: () => Promise.resolve(POLICY),
      cgroupRoot: where.stateDir,
      runner: runner("timeout"),
      emit: () => {},
      rollBack: (previous) => Promise.resolve(append(where.stateDir, 1, "rolled-back", previous!.seq)),
    });
    assert.match(
      failed!,
      /^self-check failed \(finished after policy apply, pid 999999999, was killed\): .*got timeout/,
    );
    assert.deepEqual(listHistory(where.stateDir).map((e) => e.outcome), [
      "applied",
      "check-failed",
      "rolled-back",
    ]);
    assert.equal(readSelfCheckMarker(where.stateDir), undefined);

    // A marker whose policy never went into force is dropped.
    writeSelfCheckMarker(where.stateDir, { ...marker, sha256: SHA(9), pid: 999_999_999, time: "" });
    assert.match(
      (await resolvePendingCheck(where, {
        policyOf: () => assert.fail("not read"),
        rollBack: () => assert.fail("no rollback"),
      }))!,
      /is moot/,
    );
    assert.equal(readSelfCheckMarker(where.stateDir), undefined);
  });
});
