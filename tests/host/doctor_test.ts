/**
 * `doctor` on this host, through the real command: file and exec audit-only (the kernel refuses BPF-LSM
 * loads with EPERM although bpf is listed), egress, bind and ingress enforce; the JSON output matches its
 * documented schema; a world-writable state directory fails the run.
 */
import assert from "node:assert/strict";
import { scratch } from "../cli/cli.ts";
import { TestBpffs } from "../support/bpffs.ts";
import { rootTest } from "../support/privileged.ts";
import { assertMatchesSchema } from "../support/schema.ts";
import { openAegisObject } from "../../lib/kernel/object.ts";
import { PROGRAM_KINDS } from "../../lib/kernel/probe.ts";

Deno.test("PROGRAM_KINDS names every program of the built object (a new program needs its type named)", () => {
  const open = openAegisObject([]);
  try {
    assert.deepEqual(open.programNames().sort(), Object.keys(PROGRAM_KINDS).sort());
  } finally {
    open.close();
  }
});

async function withDoctor(
  fn: (run: (args: string[]) => ReturnType<typeof runIn>, dir: string) => Promise<void>,
) {
  const bpffs = await TestBpffs.mount();
  try {
    await using s = await scratch();
    await Deno.mkdir(`${s.dir}/textfile`);
    const run = (args: string[]) =>
      runIn(s, ["doctor", "--textfile-dir", `${s.dir}/textfile`, ...args], bpffs.path);
    await fn(run, s.dir);
  } finally {
    await bpffs.unmount();
  }
}

function runIn(s: Awaited<ReturnType<typeof scratch>>, args: string[], bpffs: string) {
  return s.run(args, { env: { AEGISBPF_BPFFS: bpffs, NO_COLOR: "1" } });
}

rootTest(
  "[root] doctor --json on this host: file and exec audit-only by EPERM, the rest enforce",
  async () => {
    await withDoctor(async (run) => {
      const started = performance.now();
      const result = await run(["--json"]);
      const ms = performance.now() - started;
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stderr, "");
      const report = JSON.parse(result.stdout);
      assertMatchesSchema("doctor.schema.json", report);
      for (const area of ["file", "exec"]) {
        assert.equal(report.areas[area].verdict, "audit-only", area);
        assert.match(
          report.areas[area].reason,
          /EPERM although bpf is listed in \/sys\/kernel\/security\/lsm/,
        );
      }
      for (const area of ["egress", "bind", "ingress"]) {
        assert.equal(report.areas[area].verdict, "enforce", area);
      }
      const lsm = report.probes.find((probe: { name: string }) => probe.name === "aegis_file_open");
      assert.equal(lsm.ok, false);
      assert.equal(lsm.errnoName, "EPERM");
      assert.ok(report.probes.length >= 15, "maps and every program");
      assert.equal(report.checks.find((check: { name: string }) => check.name === "bpffs").status, "ok");
      console.log(`doctor --json took ${ms.toFixed(0)} ms (process start included)`);
    });
  },
);

rootTest("[root] doctor prints aligned tables with a fix line per audit-only area, exit 0", async () => {
  await withDoctor(async (run) => {
    const result = await run([]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(
      result.stdout,
      /^file +audit-only +BPF-LSM program load failed: EPERM although bpf is listed/m,
    );
    assert.match(result.stdout, /^egress +enforce +aegis_connect4/m);
    assert.match(result.stdout, /^ {2}file: fix: boot a kernel that lets BPF-LSM programs load/m);
    assert.match(result.stdout, /^aegis_file_open +BPF-LSM lsm\/file_open +refused: EPERM/m);
    assert.match(result.stdout, /ready: every area can at least audit\n$/);
    assert.ok(!result.stdout.includes("\x1b["), "no colour with NO_COLOR");
  });
});

rootTest(
  "[root] doctor fails (exit 1) on a world-writable state directory and a bpffs that is not one",
  async () => {
    await withDoctor(async (run, dir) => {
      await Deno.mkdir(`${dir}/state`, { recursive: true });
      await Deno.chmod(`${dir}/state`, 0o777);
      const result = await run(["--json", "--bpffs", dir]);
      assert.equal(result.code, 1, result.stderr);
      const report = JSON.parse(result.stdout);
      assertMatchesSchema("doctor.schema.json", report);
      assert.equal(report.ok, false);
      const state = report.checks.find((check: { name: string }) => check.name === "state directory");
      assert.equal(state.status, "fail");
      assert.equal(state.remediation, `chmod 0700 ${dir}/state`);
      const bpffs = report.checks.find((check: { name: string }) => check.name === "bpffs");
      assert.equal(bpffs.status, "fail");
      assert.equal(bpffs.remediation, `mount -t bpf bpf ${dir}`);
    });
  },
);
