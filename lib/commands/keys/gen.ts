import { dirname } from "node:path";
import { defineCommand } from "../../cli/command.ts";
import { InputError } from "../../errors.ts";
import { generateKeyPair } from "../../policy/keys.ts";
import { writeKeyPair } from "../../state/key_store.ts";

export const keysGen = defineCommand({
  name: "gen",
  summary: "make an Ed25519 key pair, PREFIX.key and PREFIX.pub",
  description:
    "Writes a new Ed25519 key pair as PEM files that openssl reads too: PREFIX.key (PKCS#8, mode " +
    "0600) to sign bundles with, and PREFIX.pub (SPKI) to trust on hosts with aegisbpf keys add. Never " +
    "replaces an existing file.",
  options: {
    out: {
      type: "string",
      valueName: "PREFIX",
      required: true,
      complete: "file",
      description: "path and name of the key files, without .key or .pub",
    },
  },
  args: [],
  examples: ["aegisbpf keys gen --out ./release", "aegisbpf keys add ./release.pub"],
  run(ctx, { flags }) {
    const pair = generateKeyPair();
    let files;
    try {
      files = writeKeyPair(flags.out, pair);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
      throw new InputError(
        `Directory ${dirname(flags.out)} does not exist; create it or choose another --out`,
      );
    }
    ctx.stdout.line(`keyid   ${pair.keyid}`);
    ctx.stdout.line(`private ${files.privateKeyFile}`);
    ctx.stdout.line(`public  ${files.publicKeyFile}`);
    ctx.log.info(`trust it on a host with: aegisbpf keys add ${files.publicKeyFile}`);
    return Promise.resolve(0);
  },
});
