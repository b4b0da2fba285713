import assert from "node:assert/strict";
import { scratch } from "./cli.ts";

Deno.test("detach with nothing pinned says so and exits 0; a bad flag exits 2", async () => {
  await using s = await scratch();
  const result = await s.run(["detach"]);
  assert.equal(result.code, 0, result.stderr);
  assert.match(
    result.stdout,
    /^nothing of aegisbpf is pinned under .*\/bpffs\/aegisbpf; nothing to detach\n$/,
  );
  const flag = await s.run(["detach", "--all"]);
  assert.equal(flag.code, 2);
  assert.match(
    flag.stderr,
    /^aegisbpf: error: unknown flag --all for "detach"; see aegisbpf detach --help\n$/,
  );
  const arg = await s.run(["detach", "everything"]);
  assert.equal(arg.code, 2);
});

Deno.test("detach --no-wait fails at once while another command holds the state lock", async () => {
  await using s = await scratch();
  const lock = await Deno.open(`${s.stateDir}/lock`, { create: true, write: true, read: true });
  await lock.lock(true);
  await lock.write(new TextEncoder().encode(JSON.stringify({ pid: 4242, command: "policy apply" })));
  try {
    const result = await s.run(["detach", "--no-wait"]);
    assert.equal(result.code, 1);
    // The record says pid 4242; the kernel says this test process holds the lock, and is believed.
    assert.match(
      result.stderr,
      new RegExp(`state lock .* is held by pid ${Deno.pid} \\(.*\\): try again when it has finished`),
    );
  } finally {
    lock.close();
  }
});
