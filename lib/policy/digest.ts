/**
 * The hex SHA-256 of a policy's exact bytes, on its own: the history (and `health`, which reads it) needs
 * the digest without the YAML and schema parsers.
 */
import { createHash } from "node:crypto";

/** The hex SHA-256 of the exact bytes of a policy (text is hashed as UTF-8). */
export function policySha256(data: string | Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}
