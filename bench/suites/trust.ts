/**
 * `exec.allow: [{ trust: dpkg }]` on this host's own dpkg database (root): resolving the trusted set
 * (lib/dpkg/trust.ts: the database read, each candidate file's stat, an MD5 of what the cache does not
 * hold) with no cache file ("cold") and with the cache the previous resolution left ("warm"); then the
 * whole `policy apply` of an audit policy holding the entry, cold and warm, with a private bpffs, state
 * and config directory, scoped to a test cgroup.
 */
import { suite } from "../lib/suite.ts";
import { median } from "../lib/stats.ts";
import { formatNumber } from "../lib/report.ts";
import { resolveDpkgTrust } from "../../lib/dpkg/trust.ts";
import { DataPlane } from "../../lib/kernel/dataplane.ts";
import { aegisbpf } from "../../tests/cli/cli.ts";
import { TestCgroup } from "../../tests/support/cgroup.ts";

await suite("trust", "trust: dpkg on this host's packages", async (ctx) => {
  const rounds = ctx.pick(5, 1);
  const cache = `${ctx.tmp}/dpkg_trust.json`;
  const resolve = () => {
    const start = performance.now();
    const found = resolveDpkgTrust({ cacheFile: cache });
    return { ms: performance.now() - start, found };
  };
  const cold: number[] = [];
  const warm: number[] = [];
  let last = resolve().found;
  for (let round = 0; round < rounds; round++) {
    Deno.removeSync(cache);
    const first = resolve();
    cold.push(first.ms);
    const again = resolve();
    warm.push(again.ms);
    last = again.found;
  }
  const { stats } = last;
  ctx.method(
    `this host's dpkg database: ${formatNumber(stats.packages)} installed packages, ${
      formatNumber(stats.listed)
    } files with an MD5 line, ${
      formatNumber(stats.candidates)
    } of them could run (an exec bit, or a *.so* ELF), ` +
      `${last.trusted.length.toLocaleString("en")} trusted, ${last.untrusted.length} left untrusted`,
  );
  ctx.method(
    "resolveDpkgTrust() in this process, wall clock; cold: the cache file removed first (every candidate " +
      "classified and hashed; the kernel's page cache is left as it is, warm after the first round: the " +
      "figure is CPU, not disk); warm: right after, with the cache it wrote (nothing changed). " +
      `${rounds} rounds after one unrecorded warm-up`,
  );
  ctx.figure("trust.resolve-cold", "trust: dpkg resolved, no cache file", "ms", cold);
  ctx.figure("trust.resolve-warm", "trust: dpkg resolved, with the cache", "ms", warm);

  // The whole command, as a user runs it.
  const cgroup = TestCgroup.create();
  const bpffs = `${ctx.tmp}/bpffs`;
  Deno.mkdirSync(bpffs);
  await must("mount", ["-t", "bpf", "bpf", bpffs]);
  try {
    Deno.mkdirSync(`${ctx.tmp}/etc`, { mode: 0o700 });
    const file = (version: number) => {
      const path = `${ctx.tmp}/p${version}.yaml`;
      Deno.writeTextFileSync(
        path,
        `apiVersion: aegisbpf.io/v1\nkind: Policy\nmetadata: { name: trust-bench, version: ${version} }\n` +
          `spec:\n  mode: audit\n  scope: { cgroups: ["${cgroup.relativePath}"] }\n  exec:\n    default: deny\n` +
          `    allow:\n      - { id: pkgs, trust: dpkg }\n      - { id: runtime, path: ${
            Deno.realPathSync(Deno.execPath())
          } }\n`,
      );
      return path;
    };
    const applyCold: number[] = [];
    const applyWarm: number[] = [];
    let version = 0;
    for (let round = 0; round <= rounds; round++) {
      const state = `${ctx.tmp}/state${round}`;
      Deno.mkdirSync(state, { mode: 0o700 });
      const env = { AEGISBPF_BPFFS: bpffs, AEGISBPF_STATE_DIR: state, AEGISBPF_CONFIG_DIR: `${ctx.tmp}/etc` };
      const timed = async () => {
        const start = performance.now();
        const result = await aegisbpf(["policy", "apply", "--force", file(++version)], { env });
        if (result.code !== 0) throw new Error(`policy apply failed: ${result.stderr}`);
        return performance.now() - start;
      };
      try {
        const first = await timed();
        const second = await timed();
        // Round 0 warms the runtime's caches up: not recorded.
        if (round > 0) {
          applyCold.push(first);
          applyWarm.push(second);
        }
      } finally {
        DataPlane.detach(bpffs);
      }
    }
    ctx.method(
      "`deno run --allow-all main.ts policy apply --force FILE` of an audit policy with `{ trust: dpkg }` and " +
        "the runtime's path, wall clock from spawn to exit; cold: a fresh state directory (no cache), " +
        "warm: the next version of the policy on the same state directory (a new history entry and flip)",
    );
    ctx.figure(
      "trust.apply-cold",
      "`policy apply` with trust: dpkg, no cache, whole command",
      "ms",
      applyCold,
    );
    ctx.figure(
      "trust.apply-warm",
      "`policy apply` with trust: dpkg, with the cache, whole command",
      "ms",
      applyWarm,
    );
    const got = median(applyWarm);
    ctx.target({
      name: "trust: dpkg on a full Debian system resolved and applied",
      want: "<= 2,000 ms",
      got: `${formatNumber(got)} ms (median, whole command, with the cache; ` +
        `${formatNumber(median(applyCold))} ms without it)`,
      met: got <= 2000,
    });
  } finally {
    try {
      DataPlane.detach(bpffs);
    } finally {
      await must("umount", [bpffs]);
      cgroup.remove();
    }
  }
});

async function must(command: string, args: string[]): Promise<void> {
  const result = await new Deno.Command(command, { args, stderr: "piped" }).output();
  if (!result.success) {
    throw new Error(`${command} ${args.join(" ")} failed: ${new TextDecoder().decode(result.stderr)}`);
  }
}
