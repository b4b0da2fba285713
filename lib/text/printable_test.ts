import assert from "node:assert/strict";
import { bufferWriter, printableWriter, table } from "../cli/output.ts";
import { palette } from "./palette.ts";
import { escapeJson, jsonText, printable, printableText } from "./printable.ts";

/** Every character a terminal acts on or hides, one of each kind. */
const HOSTILE = "a\x1b[2J\x07\x00\t\r\nb\x7f\x85\x9b2J\u061c\u200b\u200f\u2028\u202e\u2066\ufeffc";

Deno.test("printable() escapes C0 as \\xNN and DEL, C1 and invisible format characters as \\uNNNN", () => {
  assert.equal(
    printable(HOSTILE),
    "a\\x1b[2J\\x07\\x00\\x09\\x0d\\x0ab\\u007f\\u0085\\u009b2J\\u061c\\u200b\\u200f\\u2028\\u202e\\u2066\\ufeffc",
  );
  assert.equal(printable("/usr/bin/curl été 日本 \u{1f600}"), "/usr/bin/curl été 日本 \u{1f600}");
});

Deno.test("printableText() keeps newlines, and the palette's colour codes only when asked", () => {
  assert.equal(printableText("one\x1b[2J\ntwo\r\n"), "one\\x1b[2J\ntwo\\x0d\n");
  const red = palette(true).red("deny");
  assert.equal(printableText(red, true), red);
  assert.equal(printableText(red), "\\x1b[31mdeny\\x1b[39m");
  // ESC of anything but the palette's codes is escaped even where colour is on.
  assert.equal(
    printableText(`${red}\x1b[8m\x1b]0;t\x07\x1b[31;8m`, true),
    `${red}\\x1b[8m\\x1b]0;t\\x07\\x1b[31;8m`,
  );
});

Deno.test("jsonText() escapes what JSON.stringify leaves raw, and reads back to the same value", () => {
  const value = { comm: HOSTILE, n: 1, list: ["\x9b"] };
  const text = jsonText(value);
  // deno-lint-ignore no-control-regex -- finding them is the point
  assert.ok(!/[\x00-\x1f\x7f-\x9f\u2028\u202e\ufeff]/.test(text), text);
  assert.deepEqual(JSON.parse(text), value);
  assert.equal(jsonText({ a: "\x7f" }), '{"a":"\\u007f"}');
  assert.equal(jsonText({ a: 1n }, (_key, v) => typeof v === "bigint" ? Number(v) : v, 2), '{\n  "a": 1\n}');
  assert.equal(escapeJson(JSON.stringify(value)), text);
});

Deno.test("printableWriter() escapes what reaches the writer; JSON lines stay JSON", () => {
  const out = bufferWriter();
  const sink = printableWriter(out, false);
  sink.line(`comm=${HOSTILE}`);
  sink.line(JSON.stringify({ comm: HOSTILE }));
  const [text, json] = out.text().split("\n").filter((line) =>
    line.startsWith("comm=") || line.startsWith("{")
  );
  assert.ok(text?.startsWith("comm=a\\x1b[2J"), text);
  assert.deepEqual(JSON.parse(json!), { comm: HOSTILE });
  // deno-lint-ignore no-control-regex -- finding them is the point
  assert.ok(!/[\x00-\x09\x0b-\x1f\x7f-\x9f]/.test(out.text()));
});

Deno.test("table() aligns cells by what is shown once escaped", () => {
  assert.deepEqual(table([["\x1b[2J", "x"], ["abcdefgh", "y"]]), ["\\x1b[2J   x", "abcdefgh  y"]);
});
