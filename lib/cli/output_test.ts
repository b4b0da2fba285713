import assert from "node:assert/strict";
import { table, useColor, visibleWidth } from "./output.ts";
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
