import { defineCommand } from "../../cli/command.ts";
import { RefusedError } from "../../errors.ts";
import { MIN_KEYID_PREFIX } from "../../policy/keys.ts";
import { findTrustedKey, removeTrustedKey } from "../../state/key_store.ts";
import { keyUses } from "../../state/keys_in_use.ts";

export const keysRemove = defineCommand({
  name: "remove",
  summary: "stop trusting a key",
  description:
    `Removes the key KEYID from <config-dir>/keys/. KEYID may be the first ${MIN_KEYID_PREFIX} or ` +
    "more hex digits of the keyid when they name one key. Bundles signed only by it are refused from now on. " +
    "Refuses (exit 3) a key that signed the policy in force or the configured bundle " +
    "(<config-dir>/policy.yaml), naming it, unless --force: a rollback to it, or the agent's next start or " +
    "reload, would refuse it.",
  options: {
    force: {
      type: "boolean",
      description: "remove it even if it signed the policy in force or the configured bundle",
    },
  },
  args: [{ name: "KEYID", description: "the keyid, as aegisbpf keys list shows it, or a unique prefix" }],
  examples: ["aegisbpf keys remove 3f2a9c41"],
  run(ctx, { flags, args }) {
    const { configDir } = ctx.globals;
    const keyid = findTrustedKey(configDir, args.KEYID);
    const uses = keyUses(keyid, ctx.globals);
    if (uses.length > 0 && flags.force !== true) {
      throw new RefusedError(
        `Refused to remove key ${keyid}: it signed ${uses.join(" and ")}; a rollback to it, or the agent's ` +
          `next start or reload, would refuse it. Apply a policy signed by another key first, or pass --force`,
      );
    }
    if (uses.length > 0) {
      ctx.log.warn(`removing key ${keyid} although it signed ${uses.join(" and ")} (--force)`);
    }
    removeTrustedKey(configDir, keyid);
    ctx.stdout.line(`Removed key ${keyid}`);
    return Promise.resolve(0);
  },
});
