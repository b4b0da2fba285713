/**
 * What a trusted key still vouches for: the policy in force (history's current entry was verified under
 * it) and the configured bundle `<config-dir>/policy.yaml` (signed by it). Removing such a key makes the
 * next rollback to that entry, or the agent's next start or reload of that file, refuse them.
 */

import { join } from "node:path";
import { isBundle } from "../policy/bundle.ts";
import { parseEnvelope } from "../policy/dsse.ts";
import { currentEntry, listHistory } from "./history.ts";
import { parsePolicySource } from "../policy/parse.ts";

/** One use, as a person reads it: `the policy in force, web version 7 (history entry 12)`. */
export function keyUses(keyid: string, dirs: { configDir: string; stateDir: string }): string[] {
  const uses: string[] = [];
  const current = currentEntry(listHistory(dirs.stateDir));
  if (current?.keyid === keyid) {
    uses.push(
      `the policy in force, ${current.name} version ${current.version} (history entry ${current.seq})`,
    );
  }
  const configured = join(dirs.configDir, "policy.yaml");
  const signers = bundleSigners(configured);
  if (signers?.keyids.includes(keyid)) uses.push(`the configured bundle ${configured}${signers.policy}`);
  return uses;
}

/** The keyids a bundle file is signed with and its policy's name, or undefined when it is not a bundle. */
function bundleSigners(file: string): { keyids: string[]; policy: string } | undefined {
  let text: string;
  try {
    text = Deno.readTextFileSync(file);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
  if (!isBundle(text)) return undefined;
  const envelope = parseEnvelope(text, file);
  let policy = "";
  try {
    const { name, version } =
      parsePolicySource(new TextDecoder().decode(envelope.payload), file).policy.metadata;
    policy = ` (policy ${name} version ${version})`;
  } catch {
    // An invalid payload is refused when it is applied; the key still signed the file.
  }
  return { keyids: envelope.signatures.map((signature) => signature.keyid), policy };
}
