import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { InputError } from "../errors.ts";
import { sha256File } from "./file_digest.ts";

Deno.test("sha256File() hashes a file larger than one read, and refuses a directory, a device and a missing file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "aegisbpf-digest-" });
  try {
    const data = new Uint8Array(300_000).map((_, i) => i % 251);
    await Deno.writeFile(`${dir}/big`, data);
    assert.equal(await sha256File(`${dir}/big`), createHash("sha256").update(data).digest("hex"));
    const refusals = [[dir, /is not a regular file/], ["/dev/null", /is not a regular file/], [
      `${dir}/none`,
      /no such file/,
    ]] as const;
    for (const [path, pattern] of refusals) {
      await assert.rejects(
        sha256File(path),
        (e: unknown) => e instanceof InputError && pattern.test(e.message),
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
