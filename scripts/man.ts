/**
 * Writes the manual page docs/aegisbpf.1 from the command registry (`deno task man`).
 * tests/packaging/man_test.ts fails when the committed page differs from what this writes.
 */
import { REGISTRY } from "../main.ts";
import { manPage } from "../lib/cli/man.ts";
import { VERSION } from "../lib/version.ts";

export const MAN_PAGE = new URL("../docs/aegisbpf.1", import.meta.url);

/** The page as the registry describes it now. */
export function currentManPage(): string {
  return manPage(REGISTRY, { version: VERSION });
}

if (import.meta.main) await Deno.writeTextFile(MAN_PAGE, currentManPage());
