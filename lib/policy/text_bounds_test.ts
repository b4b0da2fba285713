import assert from "node:assert/strict";
import { SPEC_EXAMPLE } from "./_testdata.ts";
import { Random } from "./random_policy.ts";
import {
  checkBounds,
  jsonErrorOffset,
  jsonKeysWithinBounds,
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

/** JSON near every bound: nesting, long strings and numbers, escapes, many keys and items, repeated keys. */
function randomJson(random: Random, depth = 0): unknown {
  const near = (bound: number) => bound - 3 + random.int(6);
  const kind = random.int(depth > MAX_DEPTH + 2 ? 3 : 7);
  if (kind === 0) return random.chance(0.5) ? random.int(1000) : Number("9".repeat(1 + random.int(20)));
  if (kind === 1) {
    const piece = random.pick(["x", '"', "\\", '\\"', ":", "{[", "#", "\u00e9"]);
    return random.chance(0.05) ? piece.repeat(near(MAX_SCALAR) / piece.length) : piece.repeat(random.int(8));
  }
  if (kind === 2) return random.pick([true, false, null]);
  // A long list or mapping holds numbers only: the text stays small.
  const long = random.chance(0.05);
  const length = long ? near(MAX_KEYS) : random.int(4);
  const child = () => long ? random.int(10) : randomJson(random, depth + 1);
  if (kind <= 4) return Array.from({ length }, child);
  const object: Record<string, unknown> = {};
  for (let i = 0; i < length; i++) object[`k${i}${random.pick(["", ":", '"'])}`] = child();
  return object;
}

Deno.test("jsonKeysWithinBounds() passes only JSON checkBounds passes, and counts the keys jsonKeysWritten counts", () => {
  const random = new Random(18);
  let passed = 0, refused = 0;
  const check = (text: string) => {
    const keys = jsonKeysWithinBounds(text);
    if (keys === undefined) return refused++;
    passed++;
    assert.equal(checkBounds(text), undefined, `passed what checkBounds refuses: ${text.slice(0, 80)}`);
    assert.equal(keys, jsonKeysWritten(text));
  };
  for (let i = 0; i < 400; i++) {
    const value = random.chance(0.5) ? randomJson(random) : { spec: randomJson(random) };
    check(JSON.stringify(value));
    check(JSON.stringify(value, null, random.int(3)));
  }
  // At each bound, exactly: one under passes both; over it, checkBounds refuses and so does the fast pass.
  for (const depth of [MAX_DEPTH - 2, MAX_DEPTH - 1, MAX_DEPTH]) {
    check(`${"[".repeat(depth)}${"]".repeat(depth)}`);
  }
  for (const length of [MAX_SCALAR - 3, MAX_SCALAR - 2, MAX_SCALAR - 1, MAX_SCALAR, MAX_SCALAR + 1]) {
    check(`["${"x".repeat(length)}"]`);
    check(`{"a":${"1".repeat(length)}}`);
    check(`["${"\\".repeat(length >> 1)}"]`);
  }
  for (const count of [MAX_KEYS, MAX_KEYS + 1]) {
    check(`{${Array.from({ length: count }, (_, i) => `"k${i}":1`).join(",")}}`);
  }
  assert.ok(passed > 100 && refused > 20, `passed ${passed}, refused ${refused}: the cases miss a side`);
});

Deno.test("jsonKeysWithinBounds() refuses nesting, keys and values over the bounds", () => {
  assert.equal(jsonKeysWithinBounds(`${"[".repeat(MAX_DEPTH)}${"]".repeat(MAX_DEPTH)}`), undefined);
  assert.equal(jsonKeysWithinBounds(`["${"x".repeat(MAX_SCALAR + 1)}"]`), undefined);
  assert.equal(
    jsonKeysWithinBounds(`{${Array.from({ length: MAX_KEYS + 1 }, (_, i) => `"k${i}":1`).join(",")}}`),
    undefined,
  );
  assert.equal(jsonKeysWithinBounds('{"a": "b:", "c" : {"a": ["x", "\\":"]}}'), 3);
  assert.equal(jsonKeysWithinBounds(String.raw`{"a\\": 1, "b\\\"": 2}`), 2);
});
