import assert from "node:assert/strict";
import { z } from "zod";

const SCHEMA_DIR = new URL("../../docs/schema/", import.meta.url);

/** Asserts that `value` is valid under the documented JSON schema `docs/schema/<name>`, listing every issue. */
export function assertMatchesSchema(name: string, value: unknown): void {
  const schema = z.fromJSONSchema(JSON.parse(Deno.readTextFileSync(new URL(name, SCHEMA_DIR))));
  const result = schema.safeParse(value);
  assert.ok(result.success, `${name}: ${result.error ? z.prettifyError(result.error) : ""}`);
}
