/**
 * docs/policy.md documents every key of the policy schema, with the type and default the schema gives it, and
 * nothing the schema does not have: a key cannot be added, renamed or removed without its reference.
 */
import assert from "node:assert/strict";
import { z } from "zod";
import { parsePolicy } from "./parse.ts";
import { policySchema } from "./schema.ts";

const DOC = new URL("../../docs/policy.md", import.meta.url);

type JsonSchema = {
  type?: string;
  const?: unknown;
  enum?: unknown[];
  default?: unknown;
  properties?: Record<string, JsonSchema>;
  required?: string[];
  items?: JsonSchema;
};

/** One key of the policy: its dotted path (`[]` for a list's items), type and default as the doc writes them. */
export type KeyRow = { path: string; type: string; default: string };

/** Every key path of `schema` below `prefix`, depth first in the schema's order. */
export function keyRows(schema: JsonSchema, prefix = ""): KeyRow[] {
  const rows: KeyRow[] = [];
  for (const [name, child] of Object.entries(schema.properties ?? {})) {
    const path = prefix ? `${prefix}.${name}` : name;
    const required = schema.required?.includes(name) && child.default === undefined;
    rows.push({
      path,
      type: typeText(child),
      default: required ? "required" : child.default === undefined ? "—" : JSON.stringify(child.default),
    });
    const items = child.type === "array" ? child.items : undefined;
    if (items?.properties) rows.push(...keyRows(items, `${path}[]`));
    if (child.properties) rows.push(...keyRows(child, path));
  }
  return rows;
}

function typeText(schema: JsonSchema): string {
  if (schema.const !== undefined) return JSON.stringify(schema.const);
  if (schema.enum) return schema.enum.map((value) => JSON.stringify(value)).join(" or ");
  if (schema.type === "array") return `list of ${typeText(schema.items ?? {})}`;
  return schema.type ?? "any";
}

/** The rows of the doc's key tables: `| \`path\` | type | default | meaning |`. */
export function documentedRows(markdown: string): KeyRow[] {
  return [
    ...markdown.matchAll(/^\| `((?:apiVersion|kind|metadata|spec)[^`]*)` +\| ([^|]*?) +\| ([^|]*?) +\|/gm),
  ]
    .map((match) => ({
      path: match[1]!,
      type: match[2]!.replaceAll("`", ""),
      default: match[3]!.replaceAll("`", ""),
    }));
}

const SCHEMA_ROWS = keyRows(z.toJSONSchema(policySchema, { io: "input" }) as JsonSchema);

Deno.test("docs/policy.md documents every key of the policy schema with its type and default", async () => {
  const documented = documentedRows(await Deno.readTextFile(DOC));
  const byPath = new Map(documented.map((row) => [row.path, row]));
  const missing = SCHEMA_ROWS.filter((row) => !byPath.has(row.path)).map((row) => row.path);
  assert.deepEqual(missing, [], "keys of lib/policy/schema.ts without a row in docs/policy.md");
  for (const row of SCHEMA_ROWS) assert.deepEqual(byPath.get(row.path), row, row.path);
});

Deno.test("docs/policy.md documents no key the policy schema does not have, and each once", async () => {
  const documented = documentedRows(await Deno.readTextFile(DOC)).map((row) => row.path);
  const known = new Set(SCHEMA_ROWS.map((row) => row.path));
  assert.deepEqual(documented.filter((path) => !known.has(path)), [], "rows for keys the schema lacks");
  assert.deepEqual(
    documented.filter((path, i) => documented.indexOf(path) !== i),
    [],
    "keys documented twice",
  );
});

Deno.test("every example policy in docs/policy.md is valid", async () => {
  const blocks = [...(await Deno.readTextFile(DOC)).matchAll(/^```(yaml|json)\n([\s\S]*?)^```$/gm)];
  const policies = blocks.filter((block) => /apiVersion/.test(block[2]!));
  assert.deepEqual(policies.map((block) => block[1]), ["yaml", "json"]);
  for (const [, language, text] of policies) parsePolicy(text!, `docs/policy.md (${language})`);
});

Deno.test("keyRows() walks nested objects and list items, with required keys and defaults", () => {
  const schema = z.toJSONSchema(
    z.strictObject({
      a: z.string(),
      b: z.strictObject({ c: z.enum(["x", "y"]).default("x"), d: z.array(z.strictObject({ e: z.int() })) })
        .optional(),
    }),
    { io: "input" },
  ) as JsonSchema;
  assert.deepEqual(keyRows(schema), [
    { path: "a", type: "string", default: "required" },
    { path: "b", type: "object", default: "—" },
    { path: "b.c", type: '"x" or "y"', default: '"x"' },
    { path: "b.d", type: "list of object", default: "required" },
    { path: "b.d[].e", type: "integer", default: "required" },
  ]);
});
