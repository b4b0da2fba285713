/** Reading a file named on the command line, with errors that say what is wrong with the name. */

import { InputError } from "../errors.ts";

/** The largest key or bundle file read whole; bundles carry their own, tighter limit. */
const MAX_INPUT_BYTES = 64 * 1024 * 1024;

/**
 * The text of `path`; `what` names it in errors ("key file", "bundle"). A missing, unreadable, special or
 * huge file, or one that is not UTF-8, is an InputError (exit 2) naming the file.
 */
export async function readInputText(path: string, what: string, maxBytes = MAX_INPUT_BYTES): Promise<string> {
  const at = { position: { file: path } };
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) throw new InputError(`${path}: no such ${what}`, at);
    if (error instanceof Deno.errors.PermissionDenied) throw new InputError(`${path}: permission denied`, at);
    throw error;
  }
  if (info.isDirectory) throw new InputError(`${path}: is a directory; give the ${what}`, at);
  if (!info.isFile) throw new InputError(`${path}: is not a regular file; give the ${what}`, at);
  if (info.size > maxBytes) throw new InputError(`${path}: too large for a ${what} (${info.size} bytes)`, at);
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(await Deno.readFile(path));
  } catch (error) {
    if (error instanceof TypeError) throw new InputError(`${path}: is not UTF-8 text; give the ${what}`, at);
    throw error;
  }
}
