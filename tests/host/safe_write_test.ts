/**
 * Atomic writes into a directory another user can write (a node_exporter textfile directory owned by
 * `prometheus`): that user, uid 65534 here, swaps every temporary file for a symlink to a root-owned 0600
 * file while root writes the textfile; the target must never change, and every write succeeds or fails
 * with a clear error.
 */

import assert from "node:assert/strict";
import { writeTextfile } from "../../lib/commands/metrics.ts";
import { writeFileAtomic } from "../../lib/state/files.ts";
import { isLeftover, must, rootTest, uniqueName } from "../support/privileged.ts";

const PREFIX = "aegisbpf-safewrite-";
const SWAPPER = new URL("../support/symlink_swapper.c", import.meta.url).pathname;
const NOBODY = ["--reuid=65534", "--regid=65534", "--clear-groups"];
const WRITES = 2000;
const SECRET = "root only\n";

function removeLeftovers(): void {
  for (const entry of Deno.readDirSync("/tmp")) {
    if (isLeftover(entry.name, PREFIX)) Deno.removeSync(`/tmp/${entry.name}`, { recursive: true });
  }
}

rootTest(
  "[root] writeTextfile in a directory uid 65534 owns never reaches a symlink swapped in, over 2,000 writes",
  async () => {
    removeLeftovers();
    const base = `/tmp/${uniqueName(PREFIX)}`;
    Deno.mkdirSync(base, { mode: 0o755 });
    Deno.chmodSync(base, 0o755);
    let swapper: Deno.ChildProcess | undefined;
    try {
      const textfileDir = `${base}/textfile`;
      Deno.mkdirSync(textfileDir);
      Deno.chownSync(textfileDir, 65534, 65534);
      Deno.chmodSync(textfileDir, 0o755);
      const target = `${base}/target`;
      Deno.writeTextFileSync(target, SECRET, { mode: 0o600 });
      Deno.chmodSync(target, 0o600);
      const binary = `${base}/symlink_swapper`;
      await must("clang", ["-O2", "-Wall", "-Werror", "-o", binary, SWAPPER]);
      swapper = new Deno.Command("setpriv", {
        args: [...NOBODY, binary, textfileDir, target],
        stdout: "piped",
      })
        .spawn();
      await new Promise((resolve) => setTimeout(resolve, 200)); // the swapper is looping before the first write

      const path = `${textfileDir}/aegisbpf.prom`;
      const failures = new Map<string, number>();
      let succeeded = 0;
      for (let i = 0; i < WRITES; i++) {
        const text = `aegisbpf_write ${i}\n`;
        try {
          writeTextfile(path, text);
          succeeded++;
          const written = Deno.lstatSync(path);
          assert.ok(written.isFile, `write ${i} left a regular file`);
          assert.equal(written.uid, 0);
          assert.equal(written.mode! & 0o7777, 0o644, `write ${i}: mode`);
          assert.equal(Deno.readTextFileSync(path), text, `write ${i}: content`);
        } catch (error) {
          assert.ok(error instanceof Error && !(error instanceof assert.AssertionError), String(error));
          assert.match(error.message, /was replaced while it was written: another user can write/);
          failures.set(error.message.replace(/\.tmp-[^ ]*/, ""), (failures.get(error.message) ?? 0) + 1);
        }
        const info = Deno.lstatSync(target);
        assert.equal(info.mode! & 0o7777, 0o600, `after write ${i} the target's mode changed`);
        assert.equal(info.uid, 0);
        assert.equal(Deno.readTextFileSync(target), SECRET, `after write ${i} the target's content changed`);
      }
      swapper.kill("SIGTERM");
      const output = await swapper.output();
      swapper = undefined;
      const swapped = Number(new TextDecoder().decode(output.stdout).trim());
      console.log(
        `${succeeded} writes succeeded, ${WRITES - succeeded} failed cleanly, ${swapped} swaps made`,
      );
      assert.ok(swapped > 0, "the swapper never caught a temporary file: the race was not run");
      assert.equal(succeeded + [...failures.values()].reduce((a, b) => a + b, 0), WRITES);
    } finally {
      if (swapper) {
        swapper.kill("SIGKILL");
        await swapper.status;
      }
      Deno.removeSync(base, { recursive: true });
    }
  },
);

Deno.test("writeFileAtomic() gives the mode asked through the descriptor when the umask would narrow it", () => {
  const dir = Deno.makeTempDirSync({ prefix: "aegisbpf-umask-" });
  const umask = Deno.umask(0o077);
  try {
    writeFileAtomic(`${dir}/aegisbpf.prom`, "x 1\n", 0o644);
    assert.equal(Deno.statSync(`${dir}/aegisbpf.prom`).mode! & 0o7777, 0o644);
    writeFileAtomic(`${dir}/state.json`, "{}\n", 0o600);
    assert.equal(Deno.statSync(`${dir}/state.json`).mode! & 0o7777, 0o600);
  } finally {
    Deno.umask(umask);
    Deno.removeSync(dir, { recursive: true });
  }
});
