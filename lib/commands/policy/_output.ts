import { dirname } from "node:path";
import { InputError } from "../../errors.ts";
import { writeFileAtomic } from "../../state/files.ts";

/**
 * Writes a policy `policy suggest` or `policy init` made to `path` (atomically), refusing to replace a file
 * that exists unless `force`: a suggestion never overwrites the policy it was made from by accident.
 */
export function writePolicyOutput(path: string, text: string, force: boolean): void {
  if (!force) {
    try {
      Deno.lstatSync(path);
      throw new InputError(`${path}: exists; give another -o FILE, or --force to replace it`);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
  }
  try {
    writeFileAtomic(path, text, 0o644);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new InputError(
        `${path}: directory ${dirname(path)} does not exist; create it or choose another -o`,
      );
    }
    if (error instanceof Deno.errors.IsADirectory) {
      throw new InputError(`${path}: is a directory; give a file`);
    }
    throw error;
  }
}
