/** The sha256 of a release artifact, read in chunks: an image archive is hundreds of megabytes. */

import { createHash } from "node:crypto";
import { InputError } from "../errors.ts";

/** The hex SHA-256 of the regular file at `path`; a missing or special file is an InputError naming it. */
export async function sha256File(path: string): Promise<string> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new InputError(`${path}: no such file`, { position: { file: path } });
    }
    if (error instanceof Deno.errors.PermissionDenied) {
      throw new InputError(`${path}: permission denied`, { position: { file: path } });
    }
    throw error;
  }
  using _ = file;
  if (!(await file.stat()).isFile) {
    throw new InputError(`${path}: is not a regular file`, { position: { file: path } });
  }
  const hash = createHash("sha256");
  for await (const chunk of file.readable.values({ preventCancel: true })) hash.update(chunk);
  return hash.digest("hex");
}
