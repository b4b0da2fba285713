import assert from "node:assert/strict";
import { join } from "node:path";
import { removeDeadPrivateDirs } from "./server.ts";

/** PID_MAX_LIMIT on 64-bit Linux: every pid is below it, so no process has it. */
const NO_PROCESS = 4194304;

Deno.test("removeDeadPrivateDirs() removes the private socket directories of dead processes only", async () => {
  const parent = await Deno.makeTempDir({ prefix: "aegisbpf-private-dirs-test-" });
  try {
    const dead = NO_PROCESS;
    const names = {
      dead: `aegisbpf-api-${dead}-abc`,
      alive: `aegisbpf-api-${Deno.pid}-def`,
      noPid: "aegisbpf-api-0a1b2c",
      other: `other-${dead}-x`,
    };
    for (const name of Object.values(names)) await Deno.mkdir(join(parent, name));
    await Deno.writeTextFile(join(parent, names.dead, "app.sock"), "");
    await Deno.writeTextFile(join(parent, `aegisbpf-api-${dead}-file`), "a file, not a directory");
    assert.equal(await removeDeadPrivateDirs(parent), 1);
    const left = (await Array.fromAsync(Deno.readDir(parent))).map((entry) => entry.name).sort();
    assert.deepEqual(left, [names.alive, `aegisbpf-api-${dead}-file`, names.noPid, names.other].sort());
  } finally {
    await Deno.remove(parent, { recursive: true });
  }
});
