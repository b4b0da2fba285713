import assert from "node:assert/strict";
import { join } from "node:path";
import { removeDeadPrivateDirs } from "./server.ts";

Deno.test("removeDeadPrivateDirs() removes the private socket directories of dead processes only", async () => {
  const parent = await Deno.makeTempDir({ prefix: "aegisbpf-private-dirs-test-" });
  try {
    const dead = 4242;
    const alive = (pid: number) => pid !== dead;
    const names = {
      dead: `aegisbpf-api-${dead}-abc`,
      alive: `aegisbpf-api-${Deno.pid}-def`,
      noPid: "aegisbpf-api-0a1b2c",
      other: `other-${dead}-x`,
    };
    for (const name of Object.values(names)) await Deno.mkdir(join(parent, name));
    await Deno.writeTextFile(join(parent, names.dead, "app.sock"), "");
    await Deno.writeTextFile(join(parent, `aegisbpf-api-${dead}-file`), "a file, not a directory");
    const uid = (await Deno.lstat(parent)).uid!;
    assert.equal(
      await removeDeadPrivateDirs(parent, uid + 1, alive),
      0,
      "another user's directories are left",
    );
    assert.equal(await removeDeadPrivateDirs(parent, uid, alive), 1);
    const left = (await Array.fromAsync(Deno.readDir(parent))).map((entry) => entry.name).sort();
    assert.deepEqual(left, [names.alive, `aegisbpf-api-${dead}-file`, names.noPid, names.other].sort());
  } finally {
    await Deno.remove(parent, { recursive: true });
  }
});
