import assert from "node:assert/strict";
import type { AppliedRecord } from "../state/apply_state.ts";
import { encodeInodes } from "../state/inode_set.ts";
import { keptInodes } from "./refresh.ts";

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
