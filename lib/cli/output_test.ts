import assert from "node:assert/strict";
import { bufferWriter, plainAscii, printableWriter, table, useColor, visibleWidth } from "./output.ts";
import { palette } from "../text/palette.ts";

const env = (vars: Record<string, string>) => (name: string) => vars[name];

Deno.test("useColor() colours a terminal only, and never when NO_COLOR is set", () => {
  assert.equal(useColor(true, env({})), true);
  assert.equal(useColor(false, env({})), false);
  assert.equal(useColor(true, env({ NO_COLOR: "1" })), false);
  assert.equal(useColor(true, env({ NO_COLOR: "" })), true);
  assert.equal(useColor(false, env({ FORCE_COLOR: "1" })), true);
  assert.equal(useColor(false, env({ FORCE_COLOR: "0" })), false);
  assert.equal(useColor(true, env({ FORCE_COLOR: "1", NO_COLOR: "1" })), false);
});

Deno.test("palette() leaves text unchanged without colour", () => {
  assert.equal(palette(false).red("x"), "x");
  assert.equal(palette(true).red("x"), "\x1b[31mx\x1b[39m");
});

Deno.test("table() aligns columns by visible width and pads no last column", () => {
  const red = palette(true).red;
  assert.deepEqual(table([["name", "keyid"], [red("a"), "1"], ["longer", "22"]]), [
    "name    keyid",
    `${red("a")}       1`,
    "longer  22",
  ]);
  assert.equal(visibleWidth(red("abc")), 3);
});

Deno.test("printableWriter() passes printable ASCII lines through its sink as the very bytes it was given", async () => {
  const given: Uint8Array[] = [];
  const inner = bufferWriter();
  const writer = printableWriter({
    ...inner,
    sink: { write: (data) => (given.push(data), inner.sink.write(data)) },
  }, false);
  const json = new TextEncoder().encode('{"comm":"a\\u001b[2J","path":"/x y"}\n{"n":1}\n');
  assert.equal(await writer.sink.write(json), json.length);
  assert.equal(given[0], json, "no decode, escape and encode of a line nothing in needs escaping");
  assert.equal(inner.text(), '{"comm":"a\\u001b[2J","path":"/x y"}\n{"n":1}\n');
});

Deno.test("printableWriter() escapes in its sink what a terminal acts on: controls, C1, bidi; keeps UTF-8", async () => {
  const inner = bufferWriter();
  const writer = printableWriter(inner, false);
  const text = "tab\there\x1b[2J \x7f \u009b \u202e é 日本\n";
  const data = new TextEncoder().encode(text);
  assert.equal(await writer.sink.write(data), data.length, "counted as the bytes it was given");
  assert.equal(inner.text(), "tab\\x09here\\x1b[2J \\u007f \\u009b \\u202e é 日本\n");
});

Deno.test("plainAscii() is true only for printable ASCII and newlines", () => {
  const bytes = (text: string) => new TextEncoder().encode(text);
  assert.equal(plainAscii(bytes('{"a":"b c ~"}\n')), true);
  assert.equal(plainAscii(bytes("")), true);
  for (const text of ["\t", "\r", "\x00", "\x1b", "\x7f", "é", "\u0085", "\u2028", "\ufeff"]) {
    assert.equal(plainAscii(bytes(`a${text}b`)), false, JSON.stringify(text));
  }
});

Deno.test("plainAscii() finds an unsafe byte at every offset and alignment, and passes every printable one", () => {
  const buffer = new Uint8Array(64 + 3);
  for (let start = 0; start < 4; start++) {
    for (let length = 0; length <= 40; length++) {
      const data = buffer.subarray(start, start + length);
      for (let at = 0; at < length; at++) {
        for (let byte = 0; byte < 256; byte++) {
          data.fill(0x41);
          data[(at + 7) % length] = 0x0a;
          data[at] = byte;
          const plain = (byte >= 0x20 && byte < 0x7f) || byte === 0x0a;
          if (plainAscii(data) !== plain) {
            assert.fail(`start ${start} length ${length} at ${at} byte ${byte}`);
          }
        }
      }
    }
  }
});

Deno.test("printableWriter's writePrintable passes bytes through unlooked-at; write still escapes", async () => {
  const inner = bufferWriter();
  const writer = printableWriter(inner, false);
  const encoder = new TextEncoder();
  await writer.sink.write(encoder.encode("a\x1b[2Jb\n"));
  await writer.sink.writePrintable!(encoder.encode('{"comm":"\\u009b"}\n'));
  assert.equal(inner.text(), 'a\\x1b[2Jb\n{"comm":"\\u009b"}\n');
});
