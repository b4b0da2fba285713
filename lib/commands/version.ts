import { defineCommand } from "../cli/command.ts";
import type { Logger } from "../cli/log.ts";
import { table } from "../cli/output.ts";
import { libbpfVersion } from "../kernel/info.ts";
import { VERSION } from "../version.ts";

export const version = defineCommand({
  name: "version",
  summary: "print the aegisbpf, libbpf and kernel versions",
  description: "Prints the aegisbpf version, the libbpf it loads and the running kernel.",
  options: {
    json: { type: "boolean", description: "print one JSON object" },
  },
  args: [],
  examples: ["aegisbpf version", "aegisbpf version --json"],
  run(ctx, { flags }) {
    const versions = { aegisbpf: VERSION, libbpf: loadedLibbpf(ctx.log), kernel: Deno.osRelease() };
    if (flags.json) ctx.stdout.line(JSON.stringify(versions));
    else {
      const rows = Object.entries(versions).map(([name, value]) => [name, value ?? "not loadable"]);
      for (const line of table(rows, 1)) ctx.stdout.line(line);
    }
    return Promise.resolve(0);
  },
});

/** The libbpf version, or null where libbpf.so.1 cannot be loaded: `version` still answers then. */
function loadedLibbpf(log: Logger): string | null {
  try {
    return libbpfVersion();
  } catch (error) {
    log.warn(`cannot load libbpf.so.1; install libbpf 1.x`, { reason: String(error) });
    return null;
  }
}
