import assert from "node:assert/strict";
import { SPEC_EXAMPLE } from "./_testdata.ts";
import {
  checkBounds,
  jsonErrorOffset,
  jsonKeysWritten,
  MAX_DEPTH,
  MAX_ITEMS,
  MAX_KEYS,
  MAX_SCALAR,
} from "./text_bounds.ts";

function refused(text: string, detail: RegExp): number {
  const problem = checkBounds(text);
  assert.ok(problem, `accepted: ${JSON.stringify(text.slice(0, 80))}`);
  assert.match(problem.detail, detail);
  return problem.offset;
}

Deno.test("checkBounds() accepts the SPEC example, its JSON form and YAML that only looks nested", () => {
  assert.equal(checkBounds(SPEC_EXAMPLE), undefined);
  assert.equal(checkBounds(JSON.stringify({ a: { b: [1, { c: "[[[[" }] } }, null, 2)), undefined);
  const tricky = [
    "metadata:",
    "  description: |",
    `    ${"[".repeat(100)} an unbalanced bracket in a block scalar`,
    `    ${"{".repeat(100)}`,
    "  note: it's [not] a quote # and [[[ not nesting",
    `  quoted: "${"[".repeat(100)}"`,
    `  single: '${"{".repeat(100)}'' still quoted'`,
    "  list:",
    "  - a",
    "  -",
    "    b: c",
  ].join("\n");
  assert.equal(checkBounds(tricky), undefined);
});

Deno.test("checkBounds() refuses nesting deeper than MAX_DEPTH in JSON, YAML flow and YAML block", () => {
  // The document itself is the first level.
  assert.equal(refused("[".repeat(10_000), /nesting is too deep/), MAX_DEPTH - 1);
  assert.equal(refused('{"a":'.repeat(100), /nesting is too deep/), 5 * (MAX_DEPTH - 1));
  assert.equal(refused("- ".repeat(100), /nesting is too deep/), 2 * MAX_DEPTH);
  const stairs = Array.from({ length: 100 }, (_, i) => `${" ".repeat(i)}a:`).join("\n");
  assert.ok(refused(stairs, /nesting is too deep/) > 0);
  assert.equal(checkBounds("[".repeat(MAX_DEPTH - 1)), undefined);
});

Deno.test("checkBounds() refuses a mapping with too many keys and a list with too many items", () => {
  const keys = (n: number) => Array.from({ length: n }, (_, i) => `k${i}: 1`).join("\n");
  assert.equal(checkBounds(keys(MAX_KEYS)), undefined);
  refused(keys(MAX_KEYS + 1), /more than 1000 keys/);
  refused(
    `{${Array.from({ length: MAX_KEYS + 1 }, (_, i) => `"k${i}":1`).join(",")}}`,
    /more than 1000 keys/,
  );
  refused(`[${"1,".repeat(MAX_ITEMS)}1]`, /more than 1000000 items/);
  refused("- 1\n".repeat(MAX_ITEMS + 1), /more than 1000000 items/);
});

Deno.test("checkBounds() refuses a quoted or plain value longer than MAX_SCALAR", () => {
  assert.equal(refused(`a: "${"x".repeat(MAX_SCALAR + 1)}"`, /a value longer than/), 3);
  assert.equal(refused(`a: '${"x".repeat(MAX_SCALAR + 1)}'`, /a value longer than/), 3);
  assert.equal(refused(`a: ${"x".repeat(MAX_SCALAR + 1)}`, /a value longer than/), 3);
  assert.equal(checkBounds(`a: ${"x ".repeat(MAX_SCALAR)}`), undefined);
});

Deno.test("jsonErrorOffset() finds where JSON breaks, and the end for JSON cut short", () => {
  assert.equal(jsonErrorOffset('{"a": tru}'), 6);
  assert.equal(jsonErrorOffset("[1,]"), 3);
  assert.equal(jsonErrorOffset('{"a":}'), 5);
  assert.equal(jsonErrorOffset("[[[["), 4);
  assert.equal(jsonErrorOffset('{"a": "\\x"}'), 8);
  assert.equal(jsonErrorOffset('{"a": [1, 2.5e3, true, null, "\\u00e9"]} x'), 40);
});

Deno.test("jsonKeysWritten() counts keys written, repeated ones too, and not strings that are values", () => {
  assert.equal(jsonKeysWritten('{"a": "b:", "c" : {"a": ["x", "\\":"]}}'), 3);
  assert.equal(jsonKeysWritten('{"a": 1, "a": 2}'), 2);
});
