/**
 * The kernel matrix of docs/COMPATIBILITY.md, from a test run's own output: every test file, the kernel it
 * ran on (this host's for the unit, cli, host and packaging suites; each Debian kernel the VM suite booted,
 * from its "--- inside the VM with kernel K (PACKAGE) ---" sections), and how many of its tests passed,
 * failed or were ignored there.
 *
 *   deno task test 2>&1 | tee run.log
 *   deno run --allow-read scripts/compat_matrix.ts run.log [--host-kernel RELEASE]
 *
 * Prints a Markdown table; exit 1 when the log holds no test result at all (a wrong file).
 */

export type Tally = { passed: number; failed: number; ignored: number };
/** By test file, then by kernel. */
export type Matrix = Map<string, Map<string, Tally>>;

const FILE = /^running \d+ tests? from \.\/(\S+)$/;
const VM_START = /^--- inside the VM with kernel (\S+) \(([^)]*)\) ---$/;
const VM_END = /^--- end of VM output ---$/;
const RESULT = / \.\.\. (ok|FAILED|ignored) \([^)]*\)$/;

/** Test results of a run's output, by file and kernel; `hostKernel` names the kernel outside the VM. */
export function readMatrix(output: string, hostKernel: string): Matrix {
  const matrix: Matrix = new Map();
  let kernel = hostKernel;
  let file: string | undefined;
  for (const line of output.split("\n")) {
    const vm = VM_START.exec(line);
    if (vm) {
      kernel = `${vm[1]} (VM)`;
      file = undefined;
      continue;
    }
    if (VM_END.test(line)) {
      kernel = hostKernel;
      file = undefined;
      continue;
    }
    const running = FILE.exec(line);
    if (running) {
      file = running[1]!;
      continue;
    }
    const result = RESULT.exec(line);
    // The VM suite's own wrapper test on the host is the sections above, not a result of its own.
    if (!result || file === undefined || file === "tests/vm/vm_test.ts") continue;
    const byKernel = matrix.get(file) ?? new Map<string, Tally>();
    matrix.set(file, byKernel);
    const tally = byKernel.get(kernel) ?? { passed: 0, failed: 0, ignored: 0 };
    byKernel.set(kernel, tally);
    if (result[1] === "ok") tally.passed++;
    else if (result[1] === "FAILED") tally.failed++;
    else tally.ignored++;
  }
  return matrix;
}

/** The suite a test file belongs to, as the README's "Test suites" names them. */
function suiteOf(file: string): string {
  const match = /^tests\/(cli|host|packaging|bench|vm)\//.exec(file);
  return match ? match[1]! : "unit";
}

/** The matrix as Markdown: one row per suite for the unit-like suites, one per file for host and VM. */
export function matrixTable(matrix: Matrix): string {
  const kernels = [...new Set([...matrix.values()].flatMap((byKernel) => [...byKernel.keys()]))].sort();
  const rows = new Map<string, Map<string, Tally>>();
  for (const [file, byKernel] of [...matrix].sort(([a], [b]) => a.localeCompare(b))) {
    const suite = suiteOf(file);
    const row = suite === "host" || suite === "vm" ? `\`${file.replace(/^tests\//, "")}\`` : `${suite} suite`;
    const merged = rows.get(row) ?? new Map<string, Tally>();
    rows.set(row, merged);
    for (const [kernel, tally] of byKernel) {
      const sum = merged.get(kernel) ?? { passed: 0, failed: 0, ignored: 0 };
      merged.set(kernel, {
        passed: sum.passed + tally.passed,
        failed: sum.failed + tally.failed,
        ignored: sum.ignored + tally.ignored,
      });
    }
  }
  const cell = (tally: Tally | undefined) =>
    tally === undefined
      ? "not run"
      : `${tally.passed} passed${tally.failed ? `, ${tally.failed} FAILED` : ""}${
        tally.ignored ? `, ${tally.ignored} ignored` : ""
      }`;
  const lines = [
    `| tests | ${kernels.join(" | ")} |`,
    `| --- | ${kernels.map(() => "---").join(" | ")} |`,
    ...[...rows].map(([row, byKernel]) =>
      `| ${row} | ${kernels.map((k) => cell(byKernel.get(k))).join(" | ")} |`
    ),
  ];
  return lines.join("\n");
}

if (import.meta.main) {
  const args = [...Deno.args];
  const at = args.indexOf("--host-kernel");
  const hostKernel = at >= 0 ? args.splice(at, 2)[1] ?? Deno.osRelease() : Deno.osRelease();
  if (args.length === 0) {
    console.error("usage: deno run --allow-read scripts/compat_matrix.ts LOG... [--host-kernel RELEASE]");
    Deno.exit(2);
  }
  const matrix = readMatrix(args.map((path) => Deno.readTextFileSync(path)).join("\n"), hostKernel);
  if (matrix.size === 0) {
    console.error(`no test results in ${args.join(", ")}: is it the output of deno task test?`);
    Deno.exit(1);
  }
  console.log(matrixTable(matrix));
}
