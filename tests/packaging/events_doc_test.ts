/** docs/events.md explains every event type and every field of a kernel event that the event schema has. */
import assert from "node:assert/strict";
import { REPO } from "./unit_file.ts";

type Schema = { $defs: Record<string, { properties: Record<string, { enum?: string[] }> }> };

const SCHEMA: Schema = JSON.parse(await Deno.readTextFile(`${REPO}docs/schema/event.schema.json`));
const DOC = await Deno.readTextFile(`${REPO}docs/events.md`);

/** The first cell of each table row: `| \`name\` |`. */
const rowNames = new Set([...DOC.matchAll(/^\| `([^`]+)` +\|/gm)].map((match) => match[1]!));

Deno.test("docs/events.md has a row for every event type of the schema, and for no other", () => {
  const types = ["kernelEvent", "agentEvent"].flatMap((def) => SCHEMA.$defs[def]!.properties.type!.enum!);
  assert.deepEqual(types.filter((type) => !rowNames.has(type)), []);
  const documented = [...rowNames].filter((name) => /^[a-z_]+\.[a-z_.]+$/.test(name) || name === "exec");
  assert.deepEqual(documented.filter((name) => !types.includes(name)), []);
});

Deno.test("docs/events.md has a row for every field of a kernel event", () => {
  const fields = Object.keys(SCHEMA.$defs.kernelEvent!.properties);
  assert.deepEqual(fields.filter((field) => !rowNames.has(field)), []);
});
