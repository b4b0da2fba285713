import { basename, dirname, join } from "node:path";
import { defineCommand } from "../../cli/command.ts";
import { readInputText } from "../../cli/input.ts";
import { InputError } from "../../errors.ts";
import { MAX_ENVELOPE_BYTES } from "../../policy/dsse.ts";
import { keyIdOf, type TrustedKey } from "../../policy/keys.ts";
import { decodePublicKeyPem } from "../../policy/pem.ts";
import { sha256File } from "../../release/file_digest.ts";
import { judgeArtifacts, SignatureError, verifyReleaseEnvelope } from "../../release/statement.ts";
import { keysDir, loadTrustedKeys } from "../../state/key_store.ts";

export const releaseVerify = defineCommand({
  name: "verify",
  summary: "check release artifacts against their signed statement, offline",
  description: "Checks that the release envelope (--envelope, else the one aegisbpf-<version>.intoto.jsonl " +
    "beside the first FILE: an in-toto statement in a DSSE envelope) is signed by the release key, and " +
    "that each FILE is one of its subjects with the same sha256. Reads no network. The key is --key (an Ed25519 public key PEM), else the keys trusted in " +
    "<config-dir>/keys/. Prints one line per FILE. Exits 0 when every FILE verifies, 1 when any does not " +
    "(a changed file, a file the statement does not name, a signature by another key or over altered " +
    "contents), 2 for bad input (a missing file, a malformed or truncated envelope, a bad key).",
  options: {
    key: {
      type: "string",
      valueName: "FILE",
      complete: "file",
      description: "the release public key (SPKI PEM); default: the trusted keys",
    },
    envelope: {
      type: "string",
      valueName: "FILE",
      complete: "file",
      description: "the signed statement; default: the one *.intoto.jsonl beside the first FILE",
    },
    json: { type: "boolean", description: "print one JSON object per FILE: file, ok, reason" },
  },
  args: [{ name: "FILE", description: "a release artifact", variadic: true, complete: "file" }],
  examples: [
    "aegisbpf release verify --key release.pub dist/aegisbpf_0.1.0_amd64.deb dist/aegisbpf-0.1.0.oci.tar",
    "aegisbpf release verify --envelope aegisbpf-0.1.0.intoto.jsonl aegisbpf_0.1.0_amd64.cdx.json",
  ],
  async run(ctx, { flags, args }) {
    const files = args.FILE;
    if (files.length === 0) throw new InputError("Name at least one release artifact to verify");
    const envelopeFile = flags.envelope ?? findEnvelope(files[0]!);
    const text = await readInputText(envelopeFile, "release envelope", MAX_ENVELOPE_BYTES);
    const keys = flags.key === undefined ? storeKeys(ctx.globals.configDir) : [await readKey(flags.key)];
    const artifacts = [];
    for (const file of files) artifacts.push({ file, name: basename(file), sha256: await sha256File(file) });
    let verdicts;
    try {
      const release = verifyReleaseEnvelope(text, envelopeFile, keys);
      verdicts = judgeArtifacts(release, artifacts);
      ctx.log.info(`${envelopeFile}: signed by ${release.keyid}`, { version: release.version });
    } catch (error) {
      if (!(error instanceof SignatureError)) throw error;
      verdicts = files.map((file) => ({ file, ok: false, reason: `not verified: ${error.message}` }));
    }
    for (const verdict of verdicts) {
      if (flags.json) ctx.stdout.line(JSON.stringify(verdict));
      else ctx.stdout.line(`${verdict.file}: ${verdict.ok ? "OK" : "FAILED"}: ${verdict.reason}`);
    }
    return verdicts.every((verdict) => verdict.ok) ? 0 : 1;
  },
});

/** The one `*.intoto.jsonl` in the directory of `file`. */
function findEnvelope(file: string): string {
  const dir = dirname(file);
  let names: string[];
  try {
    names = [...Deno.readDirSync(dir)].filter((e) => e.isFile && e.name.endsWith(".intoto.jsonl")).map((e) =>
      e.name
    );
  } catch {
    names = [];
  }
  if (names.length !== 1) {
    throw new InputError(
      `${
        names.length === 0 ? "No" : "More than one"
      } *.intoto.jsonl in ${dir}: name the release envelope with --envelope`,
    );
  }
  return join(dir, names[0]!);
}

function storeKeys(configDir: string): TrustedKey[] {
  const keys = loadTrustedKeys(configDir);
  if (keys.length === 0) {
    throw new InputError(`No trusted keys in ${keysDir(configDir)}: give the release key with --key FILE`);
  }
  return keys;
}

async function readKey(file: string): Promise<TrustedKey> {
  const publicKey = decodePublicKeyPem(await readInputText(file, "public key file", 64 * 1024), file);
  return { keyid: keyIdOf(publicKey), publicKey, file };
}
