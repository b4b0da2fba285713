import { defineCommand } from "../../cli/command.ts";
import { table } from "../../cli/output.ts";
import { palette } from "../../text/palette.ts";
import { keysDir, listTrustedKeys } from "../../state/key_store.ts";

export const keysList = defineCommand({
  name: "list",
  summary: "list the trusted keys, and any file there that is not one",
  description:
    "Lists every file of <config-dir>/keys/ with its keyid, or with the reason it is not a usable " +
    "key: verification refuses a key directory holding such a file, so remove or fix it.",
  options: {
    json: { type: "boolean", description: "print one JSON array of {file, keyid} or {file, problem}" },
  },
  args: [],
  examples: ["aegisbpf keys list", "aegisbpf keys list --config-dir /etc/aegisbpf --json"],
  run(ctx, { flags }) {
    const keys = listTrustedKeys(ctx.globals.configDir);
    if (flags.json) {
      ctx.stdout.line(JSON.stringify(keys));
      return Promise.resolve(0);
    }
    if (keys.length === 0) {
      ctx.log.info(
        `no trusted keys in ${keysDir(ctx.globals.configDir)}; add one with aegisbpf keys add FILE`,
      );
      return Promise.resolve(0);
    }
    const style = palette(ctx.color);
    const rows = keys.map((key) => [key.keyid ?? style.red("not a key"), key.file, key.problem ?? ""]);
    const header = [
      style.bold("KEYID"),
      style.bold("FILE"),
      keys.some((key) => key.problem) ? style.bold("PROBLEM") : "",
    ];
    for (const line of table([header, ...rows])) ctx.stdout.line(line.trimEnd());
    return Promise.resolve(0);
  },
});
