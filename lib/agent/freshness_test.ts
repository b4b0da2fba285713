import assert from "node:assert/strict";
import { lookupPath } from "./freshness.ts";

Deno.test("lookupPath() goes through every component: a symlinked ancestor, its target's components, the file", () => {
  const dir = Deno.realPathSync(Deno.makeTempDirSync());
  try {
    Deno.mkdirSync(`${dir}/app/releases/1`, { recursive: true });
    Deno.writeTextFileSync(`${dir}/app/releases/1/secret`, "s\n");
    Deno.symlinkSync("releases/1", `${dir}/app/current`);
    Deno.symlinkSync(`${dir}/app/current/secret`, `${dir}/link`);
    const { looked, final, directories } = lookupPath(`${dir}/link`);
    assert.equal(final, `${dir}/app/releases/1/secret`);
    for (
      const path of [`${dir}/link`, `${dir}/app`, `${dir}/app/current`, `${dir}/app/releases`, final]
    ) {
      assert.ok(looked.includes(path), `${path} looked up`);
    }
    // Each is seen in the directory that holds it: swapping `current` is an event of app/.
    for (const path of [dir, `${dir}/app`, `${dir}/app/releases`, `${dir}/app/releases/1`]) {
      assert.ok(directories.includes(path), `${path} watched`);
    }
    assert.ok(
      !directories.includes(`${dir}/app/current`),
      "a link is watched in its directory, not followed",
    );
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("lookupPath() stops at a missing component, watching the last directory found", () => {
  const dir = Deno.realPathSync(Deno.makeTempDirSync());
  try {
    Deno.symlinkSync("nowhere", `${dir}/dangling`);
    const missing = lookupPath(`${dir}/opt/new/tool`);
    assert.equal(missing.final, `${dir}/opt/new/tool`);
    assert.equal(missing.looked.at(-1), `${dir}/opt`);
    assert.ok(missing.directories.includes(dir));
    const dangling = lookupPath(`${dir}/dangling/x`);
    assert.equal(dangling.final, `${dir}/nowhere/x`);
    assert.ok(dangling.looked.includes(`${dir}/dangling`));
    // A loop ends after the kernel's 40 links.
    Deno.symlinkSync("loop", `${dir}/loop`);
    assert.equal(lookupPath(`${dir}/loop`).looked.at(-1), `${dir}/loop`);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
