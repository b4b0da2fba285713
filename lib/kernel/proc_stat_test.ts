import assert from "node:assert/strict";
import { statFields } from "./proc_stat.ts";

Deno.test("statFields() starts after the command name, whatever spaces and parentheses it holds", () => {
  const rest = ["S", ...Array.from({ length: 18 }, (_, i) => String(i + 4)), "12345", "0"];
  const fields = statFields(`77 (evil) (x y) ${rest.join(" ")}\n`);
  assert.equal(fields[0], "S");
  assert.equal(fields[19], "12345");
});
