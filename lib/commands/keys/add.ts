import { defineCommand } from "../../cli/command.ts";
import { readInputText } from "../../cli/input.ts";
import { addTrustedKey } from "../../state/key_store.ts";

export const keysAdd = defineCommand({
  name: "add",
  summary: "trust an Ed25519 public key for signed bundles",
  description: "Copies the Ed25519 public key in FILE (SPKI PEM, from aegisbpf keys gen or openssl pkey " +
    "-pubout) into <config-dir>/keys/ as <keyid>.pub. Anything else (an RSA key, a private key, junk) is " +
    "refused with exit 2. Adding a key already trusted changes nothing.",
  options: {},
  args: [{ name: "FILE", description: "the public key, PEM", complete: "file" }],
  examples: ["aegisbpf keys add release.pub"],
  async run(ctx, { args }) {
    const text = await readInputText(args.FILE, "public key file", 64 * 1024);
    const { keyid, file, added } = addTrustedKey(ctx.globals.configDir, text, args.FILE);
    ctx.stdout.line(added ? `Trusted key ${keyid} (${file})` : `Key ${keyid} was already trusted (${file})`);
    return 0;
  },
});
