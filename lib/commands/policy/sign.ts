import { dirname } from "node:path";
import { defineCommand } from "../../cli/command.ts";
import { readInputText } from "../../cli/input.ts";
import { InputError } from "../../errors.ts";
import { signPolicy } from "../../policy/bundle.ts";
import { readSigningKey } from "../../policy/keys.ts";
import { parsePolicy, readPolicyFile } from "../../policy/parse.ts";
import { writeFileAtomic } from "../../state/files.ts";

export const policySign = defineCommand({
  name: "sign",
  summary: "sign a policy into a bundle with an Ed25519 key",
  description: "Validates FILE and writes a signed bundle (a DSSE envelope, see docs/policy.md) to BUNDLE. " +
    "KEY is a PKCS#8 PEM private key from aegisbpf keys gen or openssl genpkey -algorithm ed25519. " +
    "An invalid policy is never signed.",
  options: {
    key: {
      type: "string",
      valueName: "KEY",
      required: true,
      complete: "file",
      description: "the private key, PKCS#8 PEM",
    },
    out: {
      type: "string",
      valueName: "BUNDLE",
      required: true,
      complete: "file",
      description: "where the bundle is written (atomically; - for stdout)",
    },
  },
  args: [{ name: "FILE", description: "the policy, YAML or JSON", complete: "file" }],
  examples: ["aegisbpf policy sign policy.yaml --key release.key --out policy.bundle.json"],
  async run(ctx, { flags, args }) {
    const policy = await readPolicyFile(args.FILE);
    const { metadata } = parsePolicy(policy.text, policy.path);
    const keyText = await readInputText(flags.key, "private key file");
    const { keyid } = readSigningKey(keyText, flags.key);
    const bundle = signPolicy(policy.text, keyText, flags.key);
    if (flags.out === "-") ctx.stdout.write(`${bundle}\n`);
    else writeBundle(flags.out, `${bundle}\n`);
    ctx.log.info(`signed policy ${metadata.name} version ${metadata.version}`, { keyid, bundle: flags.out });
    return 0;
  },
});

function writeBundle(path: string, text: string): void {
  try {
    writeFileAtomic(path, text, 0o644);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new InputError(
        `${path}: directory ${dirname(path)} does not exist; create it or choose another --out`,
      );
    }
    if (error instanceof Deno.errors.IsADirectory) {
      throw new InputError(`${path}: is a directory; give a file`);
    }
    throw error;
  }
}
