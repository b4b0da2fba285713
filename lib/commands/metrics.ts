import { dirname } from "node:path";
import { defineCommand } from "../cli/command.ts";
import { InputError } from "../errors.ts";
import { collect, families } from "../metrics/collect.ts";
import { exposition } from "../metrics/exposition.ts";
import { pinDirOf } from "../kernel/inspect.ts";
import { writeFileAtomic } from "../state/files.ts";

export const metrics = defineCommand({
  name: "metrics",
  summary: "print the Prometheus metrics, or write them atomically for node_exporter",
  description: "Reads the pinned maps and the history, so it works with or without a running agent and " +
    "changes nothing, and prints every metric family in the Prometheus text format. With " +
    "nothing pinned (after detach) no policy is in force: aegisbpf_enforcing is 0, the policy families " +
    "have no sample, and a note on stderr says so. With " +
    "--out PATH it writes a temporary file in PATH's directory, fsyncs it and renames it over PATH (mode " +
    "0644), so node_exporter's textfile collector never reads half a file.",
  options: {
    out: {
      type: "string",
      valueName: "PATH",
      complete: "file",
      description: "write to PATH atomically (a *.prom file in the textfile collector's directory)",
    },
  },
  args: [],
  examples: [
    "aegisbpf metrics",
    "aegisbpf metrics --out /var/lib/node_exporter/textfile_collector/aegisbpf.prom",
  ],
  // deno-lint-ignore require-await -- every command's run is async
  async run(ctx, { flags }) {
    const reading = collect(ctx.globals);
    if (!reading.pinned) {
      ctx.log.info(
        `no policy is in force: nothing of aegisbpf is pinned under ${pinDirOf(ctx.globals.bpffs)}; ` +
          "the metrics say so (aegisbpf_enforcing 0, no aegisbpf_policy_info)",
      );
    }
    const text = exposition(families(reading));
    if (flags.out === undefined) ctx.stdout.write(text);
    else writeTextfile(flags.out, text);
    return 0;
  },
});

/** Writes `text` to `path` atomically, mode 0644; a bad path is an InputError naming it. */
export function writeTextfile(path: string, text: string): void {
  checkTextfilePath(path);
  writeFileAtomic(path, text, 0o644);
}

/** A *.prom path in an existing directory, or an InputError naming what is wrong. */
export function checkTextfilePath(path: string): void {
  if (!path.endsWith(".prom")) {
    throw new InputError(`--out ${path}: node_exporter's textfile collector reads only *.prom files`);
  }
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(dirname(path));
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new InputError(`--out ${path}: no directory ${dirname(path)}; create it or fix the path`);
    }
    throw error;
  }
  if (!info.isDirectory) throw new InputError(`--out ${path}: ${dirname(path)} is not a directory`);
}
