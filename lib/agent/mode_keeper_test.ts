import assert from "node:assert/strict";
import { ModeKeeper } from "./mode_keeper.ts";

function plane() {
  const words = { forceAudit: false, breakGlass: false, deadmanDeadlineNs: 0n };
  return {
    words,
    config: () => ({ ...words }),
    setConfig: (change: Partial<typeof words>) => Object.assign(words, change),
  };
}

Deno.test("ModeKeeper.takeOver() sets the forced-audit word to the floor: on under --audit, else off", () => {
  const floored = plane();
  new ModeKeeper(floored as never, true).takeOver();
  assert.equal(floored.words.forceAudit, true);
  const free = plane();
  free.words.forceAudit = true;
  new ModeKeeper(free as never, false).takeOver();
  assert.equal(free.words.forceAudit, false);
});

Deno.test("ModeKeeper.effective() is enforce only for an enforce policy with no word forcing audit", () => {
  const p = plane();
  const keeper = new ModeKeeper(p as never, false);
  assert.equal(keeper.effective("enforce"), "enforce");
  assert.equal(keeper.effective("audit"), "audit");
  assert.equal(keeper.effective(undefined), "audit");
  p.words.breakGlass = true;
  assert.equal(keeper.effective("enforce"), "audit");
  p.words.breakGlass = false;
  p.words.forceAudit = true;
  assert.equal(keeper.effective("enforce"), "audit");
});
