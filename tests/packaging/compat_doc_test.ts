/**
 * scripts/compat_matrix.ts reads a run's output as it is printed, and docs/COMPATIBILITY.md's matrix (its
 * output) names only test files that exist.
 */
import assert from "node:assert/strict";
import { matrixTable, readMatrix } from "../../scripts/compat_matrix.ts";
import { REPO } from "./unit_file.ts";

const RUN = [
  "running 2 tests from ./lib/a_test.ts",
  "a one ... ok (1ms)",
  "a two ... ok (1ms)",
  "running 2 tests from ./tests/host/x_test.ts",
  "[root] x works ... ok (2s)",
  "[root] x breaks ... FAILED (2s)",
  "running 2 tests from ./tests/vm/vm_test.ts",
  "[vm] LSM suite passes inside Debian kernel 6.1 ...",
  "------- output -------",
  "--- inside the VM with kernel 6.1 (linux-image-6.1.0-57-cloud-amd64-unsigned) ---",
  "running 2 tests from ./tests/vm/inside/y_test.ts",
  "[vm] y ...[vm] y ... ok (3s)",
  "[vm] y later ... ignored (0ms)",
  "--- end of VM output ---",
  "[vm] LSM suite passes inside Debian kernel 6.1 ... ok (5m)",
  "",
  "x breaks => ./tests/host/x_test.ts:10:6",
].join("\n");

Deno.test("readMatrix() counts each file's results on the host's kernel and inside each VM kernel", () => {
  const matrix = readMatrix(RUN, "6.18 (host)");
  assert.deepEqual(Object.fromEntries([...matrix].map(([file, by]) => [file, Object.fromEntries(by)])), {
    "lib/a_test.ts": { "6.18 (host)": { passed: 2, failed: 0, ignored: 0 } },
    "tests/host/x_test.ts": { "6.18 (host)": { passed: 1, failed: 1, ignored: 0 } },
    "tests/vm/inside/y_test.ts": { "6.1 (VM)": { passed: 1, failed: 0, ignored: 1 } },
  });
  assert.equal(
    matrixTable(matrix),
    [
      "| tests | 6.1 (VM) | 6.18 (host) |",
      "| --- | --- | --- |",
      "| unit suite | not run | 2 passed |",
      "| `host/x_test.ts` | not run | 1 passed, 1 FAILED |",
      "| `vm/inside/y_test.ts` | 1 passed, 1 ignored | not run |",
    ].join("\n"),
  );
});

Deno.test("docs/COMPATIBILITY.md's matrix names only test files that exist", async () => {
  const doc = await Deno.readTextFile(`${REPO}docs/COMPATIBILITY.md`);
  const files = [...doc.matchAll(/^\| `((?:host|vm\/inside)\/[a-z0-9_]+_test\.ts)` +\|/gm)].map((m) => m[1]!);
  assert.ok(files.length > 40, `only ${files.length} rows: is the table there?`);
  const missing = files.filter((file) => {
    try {
      return !Deno.statSync(`${REPO}tests/${file}`).isFile;
    } catch {
      return true;
    }
  });
  assert.deepEqual(missing, [], "rows of files that no longer exist: regenerate the matrix");
});
