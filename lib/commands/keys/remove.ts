import { defineCommand } from "../../cli/command.ts";
import { MIN_KEYID_PREFIX, removeTrustedKey } from "../../policy/keys.ts";

export const keysRemove = defineCommand({
  name: "remove",
  summary: "stop trusting a key",
  description:
    `Removes the key KEYID from <config-dir>/keys/. KEYID may be the first ${MIN_KEYID_PREFIX} or ` +
    "more hex digits of the keyid when they name one key. Bundles signed only by it are refused from now on.",
  options: {},
  args: [{ name: "KEYID", description: "the keyid, as aegisbpf keys list shows it, or a unique prefix" }],
  examples: ["aegisbpf keys remove 3f2a9c41"],
  run(ctx, { args }) {
    const keyid = removeTrustedKey(ctx.globals.configDir, args.KEYID);
    ctx.stdout.line(`Removed key ${keyid}`);
    return Promise.resolve(0);
  },
});
