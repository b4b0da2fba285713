/**
 * CI's quick run of the benchmark (root): `bench/run.ts --quick` runs every suite of bench/suites/ and
 * must produce each one's figures. Fails when a suite throws (a figure that cannot be produced, a peer that
 * cannot be set up) or records nothing. No timing is asserted: the figures are for reading, not gating.
 */
import assert from "node:assert/strict";
import type { Results } from "../../bench/lib/report.ts";
import { rootTest } from "../support/privileged.ts";

const RUN = new URL("../../bench/run.ts", import.meta.url).pathname;
const SUITES_DIR = new URL("../../bench/suites/", import.meta.url).pathname;

rootTest("[root] the quick benchmark produces the figures of every suite", async () => {
  const dir = await Deno.makeTempDir({ prefix: "aegisbpf-bench-quick-test-" });
  try {
    const { code } = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", RUN, "--quick", "--out-dir", dir],
      stdout: "inherit",
      stderr: "inherit",
    }).output();
    const results = JSON.parse(await Deno.readTextFile(`${dir}/results.json`)) as Results;
    assert.deepEqual(results.failures, [], "suites that failed (their output is above)");
    assert.equal(code, 0);
    const suites = [...Deno.readDirSync(SUITES_DIR)].map((entry) => entry.name)
      .filter((name) => name.endsWith(".ts")).map((name) => name.slice(0, -3));
    assert.ok(suites.length > 0);
    for (const suite of suites) {
      const section = results.sections.find((s) => s.id === suite);
      assert.ok(section, `suite ${suite} wrote no section`);
      assert.ok(section.figures.length > 0, `suite ${suite} recorded no figure`);
      for (const figure of section.figures) {
        assert.ok(figure.samples.every(Number.isFinite), `${figure.id}: a sample is not a number`);
      }
    }
    const markdown = await Deno.readTextFile(`${dir}/RESULTS.md`);
    assert.match(markdown, /^## Published figures of other agents$/m);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
