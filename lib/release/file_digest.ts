/** The sha256 of a release artifact, read in chunks: an image archive is hundreds of megabytes. */

import { createHash } from "node:crypto";
import { InputError } from "../errors.ts";

/** The hex SHA-256 of the regular file at `path`; a missing or special file is an InputError naming it. */
export async function sha256File(path: string): Promise<string> {
  const at = { position: { file: path } };
  let file: Deno.FsFile;
  try {
    // Stat first: opening a FIFO named as an artifact would wait for a writer forever.
    if (!(await Deno.stat(path)).isFile) throw new InputError(`${path}: is not a regular file`, at);
    file = await Deno.open(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) throw new InputError(`${path}: no such file`, at);
    if (error instanceof Deno.errors.PermissionDenied) throw new InputError(`${path}: permission denied`, at);
    throw error;
  }
  using _ = file;
  const hash = createHash("sha256");
  for await (const chunk of file.readable.values({ preventCancel: true })) hash.update(chunk);
  return hash.digest("hex");
}
