/**
 * Writes the manual page docs/aegisbpf.1 and the commands' declarations lib/commands/declarations.json
 * (what parsing and help read without importing every command) from the command modules (`deno task man`).
 * tests/packaging/man_test.ts and lib/cli/declarations_test.ts fail when a committed file differs from
 * what this writes.
 */
import { COMMANDS } from "../lib/commands/loaders.ts";
import { DECLARATIONS_FILE, declarationsOf, loadRegistry } from "../lib/cli/lazy.ts";
import { manPage } from "../lib/cli/man.ts";
import { VERSION } from "../lib/version.ts";

export const MAN_PAGE = new URL("../docs/aegisbpf.1", import.meta.url);
export const DECLARATIONS = new URL(`../${DECLARATIONS_FILE}`, import.meta.url);

/** The page as the command modules describe it now. */
export async function currentManPage(): Promise<string> {
  return manPage(await loadRegistry(COMMANDS), { version: VERSION });
}

/** declarations.json as the command modules declare them now. */
export async function currentDeclarations(): Promise<string> {
  return JSON.stringify(declarationsOf(await loadRegistry(COMMANDS)), null, 2) + "\n";
}

if (import.meta.main) {
  await Deno.writeTextFile(MAN_PAGE, await currentManPage());
  await Deno.writeTextFile(DECLARATIONS, await currentDeclarations());
}
