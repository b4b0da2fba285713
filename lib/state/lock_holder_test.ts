import assert from "node:assert/strict";
import { describeHolder, flockHolders } from "./lock_holder.ts";

// st_dev 0xfd01 is major 0xfd, minor 0x01 in glibc's encoding.
const file = { dev: 0xfd01, ino: 1234 };

Deno.test("flockHolders() names the pid holding a flock on the file, not its waiters or other files", () => {
  const locks = [
    "1: POSIX  ADVISORY  WRITE 77 fd:01:1234 0 EOF",
    "2: FLOCK  ADVISORY  WRITE 4242 fd:01:1234 0 EOF",
    "2: -> FLOCK  ADVISORY  WRITE 5151 fd:01:1234 0 EOF",
    "3: FLOCK  ADVISORY  READ 99 fd:01:9999 0 EOF",
    "",
  ].join("\n");
  assert.deepEqual(flockHolders(locks, file), [4242]);
});

Deno.test("flockHolders() prefers the same device, falls back to the inode alone, skips hidden pids", () => {
  const locks =
    "1: FLOCK  ADVISORY  READ 10 00:2d:1234 0 EOF\n2: FLOCK  ADVISORY  READ 11 fd:01:1234 0 EOF\n";
  assert.deepEqual(flockHolders(locks, file), [11]);
  assert.deepEqual(flockHolders("1: FLOCK  ADVISORY  READ 10 00:2d:1234 0 EOF\n", file), [10], "btrfs");
  assert.deepEqual(flockHolders("1: FLOCK  ADVISORY  WRITE 0 fd:01:1234 0 EOF\n", file), []);
  assert.deepEqual(
    flockHolders("1: FLOCK  ADVISORY  WRITE 10 fd:01:1234 0 EOF\n", { ...file, ino: null }),
    [],
  );
});

Deno.test("describeHolder() says pid and command when known", () => {
  assert.equal(describeHolder({ pid: 7, command: "policy apply" }), "pid 7 (policy apply)");
  assert.equal(describeHolder({ pid: 7 }), "pid 7");
  assert.equal(describeHolder({}), "another aegisbpf command");
});
