import assert from "node:assert/strict";
import { type AppliedRecord, readApplied, writeApplied } from "../state/apply_state.ts";
import { encodeInodes } from "../state/inode_set.ts";
import { compilePolicy } from "../policy/compile.ts";
import { parsePolicy } from "../policy/parse.ts";
import { appliedShape } from "./apply.ts";
import { keptAllowed, keptInodes, resolveForRefresh } from "./refresh.ts";

const record: AppliedRecord = {
  seq: 1,
  name: "p",
  version: 1,
  sha256: "a",
  contentSha256: "b",
  generation: 1,
  time: "2026-12-06T00:00:00Z",
  inodes: [
    { rule: "gone", area: "file", path: "/srv/gone", dev: 8, ino: "12" },
    { rule: "gone", area: "exec", path: "/srv/gone", dev: 8, ino: "99" },
    { rule: "other", area: "file", path: "/srv/other", dev: 8, ino: "13" },
  ],
  recursive: [{ rule: "tree", area: "file", path: "/srv/tree", denied: encodeInodes([{ dev: 9, ino: 5n }]) }],
};

Deno.test("keptInodes() gives a rule's last inodes as applied.json records them, listed or compact", () => {
  assert.deepEqual(keptInodes(record, "gone", "file", 4), [{
    dev: 8,
    ino: 12n,
    ruleId: 4,
    path: "/srv/gone",
  }]);
  assert.deepEqual(keptInodes(record, "tree", "file", 7), [{ dev: 9, ino: 5n, ruleId: 7 }]);
  assert.deepEqual(keptInodes(record, "missing", "file", 1), []);
  assert.deepEqual(keptInodes(undefined, "gone", "file", 4), []);
});

Deno.test("keptAllowed() gives back exec.allow's inodes and stamps as applied, and a refresh keeps them", () => {
  const plan = compilePolicy(parsePolicy(
    "apiVersion: aegisbpf.io/v1\nkind: Policy\nmetadata: { name: p, version: 1 }\nspec:\n  exec:\n" +
      `    default: deny\n    allow:\n      - { id: bin, path: /nowhere/bin, recursive: true }\n` +
      `      - { id: tool, path: /nowhere/tool, sha256: ${"a".repeat(64)} }\n`,
    "p.yaml",
  ));
  const allowed = [
    { dev: 8, ino: 20n, ruleId: 1 },
    { dev: 8, ino: 21n, ruleId: 1 },
    { dev: 9, ino: 7n, ruleId: 2, ctimeNs: 1_765_000_000_000_000_001n },
  ];
  const shape = appliedShape({
    plan,
    files: [],
    exec: [],
    execAllow: allowed,
    scope: { include: [], exempt: [] },
    interfaces: [],
  });
  assert.deepEqual(shape.allowed?.map((entry) => [entry.rule, entry.ctimeNs]), [
    ["bin", undefined],
    ["tool", "1765000000000000001"],
  ]);
  const applied = { ...record, ...shape };
  assert.deepEqual(keptAllowed(plan, applied), allowed);
  // The paths do not exist: resolving them would fail; the refresh takes the applied set instead.
  assert.deepEqual(resolveForRefresh(plan, applied).resolved.execAllow, allowed);
  assert.equal(keptAllowed(plan, record), undefined, "a record without the field: resolved afresh");
});

Deno.test("keptAllowed() keeps each allowed inode's i_generation, so a refresh still refuses a reused number", () => {
  const plan = compilePolicy(parsePolicy(
    "apiVersion: aegisbpf.io/v1\nkind: Policy\nmetadata: { name: p, version: 1 }\nspec:\n  exec:\n" +
      "    default: deny\n    allow:\n      - { id: bin, path: /nowhere/bin, recursive: true }\n",
    "p.yaml",
  ));
  const allowed = [
    { dev: 8, ino: 21n, ruleId: 1, generation: 0xfedcba98 },
    { dev: 8, ino: 20n, ruleId: 1, generation: 7 },
    { dev: 9, ino: 3n, ruleId: 1 },
  ];
  const shape = appliedShape({
    plan,
    files: [],
    exec: [],
    execAllow: allowed,
    scope: { include: [], exempt: [] },
    interfaces: [],
  });
  // Through applied.json and back, as the agent's refresh reads it.
  const dir = Deno.makeTempDirSync();
  let applied: AppliedRecord | undefined;
  try {
    writeApplied(dir, { ...record, ...shape });
    applied = readApplied(dir);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
  assert.deepEqual(keptAllowed(plan, applied), [
    { dev: 8, ino: 20n, ruleId: 1, generation: 7 },
    { dev: 8, ino: 21n, ruleId: 1, generation: 0xfedcba98 },
    { dev: 9, ino: 3n, ruleId: 1 },
  ]);
});
