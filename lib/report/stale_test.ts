import assert from "node:assert/strict";
import { encodeInodes } from "../state/inode_set.ts";
import { findStaleRules } from "./stale.ts";

const record = {
  seq: 1,
  name: "t",
  version: 1,
  sha256: "",
  contentSha256: "",
  generation: 1,
  time: "",
  inodes: [],
  recursive: [{
    rule: "tree",
    area: "file" as const,
    path: "/nonexistent-aegisbpf-tree",
    denied: encodeInodes([{ dev: 1, ino: 5n }]),
  }],
};

Deno.test("findStaleRules() with trees: false walks no recursive rule's directory (the running agent's API)", () => {
  // Walked, the directory that is gone would show its one denied file as missing.
  assert.deepEqual(findStaleRules(record, { trees: false }), {
    known: true,
    checked: 0,
    stale: [],
    omitted: 0,
    errors: [],
    warnings: [],
  });
});
