import { defineCommand } from "../../cli/command.ts";
import { readInputText } from "../../cli/input.ts";
import { InputError } from "../../errors.ts";
import { verifyBundle } from "../../policy/bundle.ts";
import { MAX_ENVELOPE_BYTES } from "../../policy/dsse.ts";
import { readVersionCounter } from "../../state/history.ts";
import { keysDir, loadTrustedKeys } from "../../state/key_store.ts";
import { parsePolicy, policySha256 } from "../../policy/parse.ts";

export const policyVerify = defineCommand({
  name: "verify",
  summary: "check a bundle as apply would, changing nothing",
  description: "Checks BUNDLE in the order apply does: a well-formed envelope, a signature by a key " +
    "trusted in <config-dir>/keys/, a valid policy, a version above the anti-rollback counter in " +
    "<state-dir>/version_counter, and notAfter not passed. Exits 2 for a bad bundle or signature and 3 for " +
    "a replayed or expired one. Changes nothing.",
  options: {
    json: { type: "boolean", description: "print one JSON object: keyid, name, version, sha256" },
  },
  args: [{ name: "BUNDLE", description: "the signed bundle", complete: "file" }],
  examples: ["aegisbpf policy verify policy.bundle.json"],
  async run(ctx, { flags, args }) {
    const text = await readInputText(args.BUNDLE, "bundle", MAX_ENVELOPE_BYTES);
    const trustedKeys = loadTrustedKeys(ctx.globals.configDir);
    if (trustedKeys.length === 0) {
      throw new InputError(
        `No trusted keys in ${keysDir(ctx.globals.configDir)}; trust the signer with aegisbpf keys add FILE`,
      );
    }
    const verified = verifyBundle(text, {
      file: args.BUNDLE,
      trustedKeys,
      versionCounter: readVersionCounter(ctx.globals.stateDir),
      now: new Date(),
      parsePolicy,
    });
    const result = {
      bundle: args.BUNDLE,
      keyid: verified.keyid,
      name: verified.policy.metadata.name,
      version: verified.version,
      sha256: policySha256(verified.policyText),
    };
    if (flags.json) ctx.stdout.line(JSON.stringify(result));
    else {
      ctx.stdout.line(
        `${result.bundle}: good signature by trusted key ${result.keyid}; ` +
          `policy ${result.name} version ${result.version}, sha256 ${result.sha256}`,
      );
    }
    return 0;
  },
});
