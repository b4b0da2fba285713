/**
 * What `policy apply` and `policy rollback` apply, read and checked before anything changes: a policy file,
 * a signed bundle or an https URL; `--sha256` against the exact bytes; a bundle verified against the keys
 * trusted now and the anti-rollback counter; unsigned policy refused where signatures are required.
 * No kernel access here. YAML (a YAML policy, config.yaml) needs the YAML parser loaded: run `checkInput` and
 * `readApplyConfig` inside `withYaml` (lib/policy/yaml.ts) unless lib/policy/parse.ts is imported.
 */

import { concatBytes } from "../../ffi/bytes.ts";
import { join } from "node:path";
import { z } from "zod";
import { InputError, RefusedError } from "../errors.ts";
import { isBundle, verifyBundle } from "../policy/bundle.ts";
import { MAX_ENVELOPE_BYTES } from "../policy/dsse.ts";
import { readVersionCounter } from "../state/history.ts";
import { keysDir, loadTrustedKeys } from "../state/key_store.ts";
import {
  MAX_POLICY_BYTES,
  parsePolicySource,
  policySha256,
  type PolicySource,
  readPolicyFile,
} from "../policy/parse_text.ts";
import { yaml } from "../policy/yaml.ts";

/** How long a URL fetch may take (redirects included), and how large a fetched policy or bundle may be. */
export const FETCH_TIMEOUT_MS = 10_000;
/** Redirects followed at most, each to https only. */
export const MAX_REDIRECTS = 5;
export const MAX_FETCH_BYTES = MAX_ENVELOPE_BYTES;
/** The largest policy or bundle read, from a file, a URL or the API: a bundle's base64 payload is larger. */
export const MAX_INPUT_BYTES = Math.max(MAX_POLICY_BYTES, MAX_ENVELOPE_BYTES, MAX_FETCH_BYTES);

/** Raw input: the exact bytes read, decoded. */
export type RawInput = { source: string; text: string; bytes: Uint8Array };

/** A checked policy, ready to compile. */
export type PolicyInput = {
  /** The file path or URL it came from, as given. */
  source: string;
  kind: "policy" | "bundle";
  /** What history stores: the policy text, or the whole bundle so that a rollback can verify it again. */
  content: string;
  /** The policy's own text (a bundle's payload). */
  policyText: string;
  /** The SHA-256 of the policy text: what history, show and `--to` name. */
  sha256: string;
  parsed: PolicySource;
  /** The trusted key that signed a bundle. */
  keyid?: string;
};

/** Reads FILE, or fetches an https URL with a timeout and a size limit. */
export async function readRawInput(
  ref: string,
  options: { fetch?: typeof fetch; timeoutMs?: number } = {},
): Promise<RawInput> {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(ref)) return await fetchInput(ref, options);
  const file = await readPolicyFile(ref, MAX_INPUT_BYTES);
  return { source: ref, text: file.text, bytes: file.bytes };
}

async function fetchInput(
  url: string,
  options: { fetch?: typeof fetch; timeoutMs?: number },
): Promise<RawInput> {
  const at = { position: { file: url } };
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new InputError(`${url}: not a valid URL`, at);
  }
  if (parsed.protocol !== "https:") {
    throw new InputError(`${url}: only https URLs are fetched; give a file or an https URL`, at);
  }
  const timeoutMs = options.timeoutMs ?? FETCH_TIMEOUT_MS;
  const signal = AbortSignal.timeout(timeoutMs);
  const response = await fetchHttpsOnly(url, parsed, { ...options, timeoutMs, signal });
  if (!response.ok) {
    await response.body?.cancel();
    throw new InputError(
      `${url}: fetch failed: HTTP ${response.status} ${response.statusText}`.trimEnd(),
      at,
    );
  }
  const bytes = await readLimited(response, url, signal, timeoutMs);
  try {
    return { source: url, text: new TextDecoder("utf-8", { fatal: true }).decode(bytes), bytes };
  } catch {
    throw new InputError(`${url}: is not UTF-8 text; a policy is YAML or JSON, a bundle JSON`, at);
  }
}

/**
 * Fetches `first`, following at most MAX_REDIRECTS redirects by hand: a redirect to anything but https
 * (a downgrade to http would let anyone on the path change the policy) is refused for safety, naming both
 * URLs.
 */
async function fetchHttpsOnly(
  url: string,
  first: URL,
  options: { fetch?: typeof fetch; timeoutMs: number; signal: AbortSignal },
): Promise<Response> {
  const at = { position: { file: url } };
  let current = first;
  for (let redirects = 0;; redirects++) {
    let response: Response;
    try {
      response = await (options.fetch ?? fetch)(current, { signal: options.signal, redirect: "manual" });
    } catch (error) {
      const why = options.signal.aborted
        ? `no answer within ${options.timeoutMs / 1000} s`
        : (error as Error).message;
      throw new InputError(`${url}: fetch failed: ${why}`, { ...at, cause: error });
    }
    const location = response.headers.get("location");
    if (![301, 302, 303, 307, 308].includes(response.status) || location === null) return response;
    await response.body?.cancel();
    if (redirects === MAX_REDIRECTS) {
      throw new InputError(`${url}: fetch failed: more than ${MAX_REDIRECTS} redirects`, at);
    }
    let next: URL;
    try {
      next = new URL(location, current);
    } catch {
      throw new InputError(`${url}: fetch failed: ${current} redirects to an invalid URL`, at);
    }
    if (next.protocol !== "https:") {
      throw new RefusedError(
        `Refused ${url}: ${current} redirects to ${next}, which is not https; give the https URL of the ` +
          `policy itself`,
      );
    }
    current = next;
  }
}

async function readLimited(response: Response, url: string, signal: AbortSignal, timeoutMs: number) {
  const at = { position: { file: url } };
  const tooLarge = () => new InputError(`${url}: larger than ${MAX_FETCH_BYTES} bytes; not fetched`, at);
  if (Number(response.headers.get("content-length") ?? 0) > MAX_FETCH_BYTES) {
    await response.body?.cancel();
    throw tooLarge();
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    for await (const chunk of response.body ?? []) {
      size += chunk.length;
      if (size > MAX_FETCH_BYTES) throw tooLarge();
      chunks.push(chunk);
    }
  } catch (error) {
    if (error instanceof InputError) throw error;
    const why = signal.aborted ? `no answer within ${timeoutMs / 1000} s` : (error as Error).message;
    throw new InputError(`${url}: fetch failed: ${why}`, { ...at, cause: error });
  }
  return concatBytes(chunks);
}

/** `--sha256 HEX` against the exact bytes read; a mismatch is bad input (exit 2). */
export function checkSha256(input: RawInput, expected: string): void {
  const want = expected.toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(want)) {
    throw new InputError(`--sha256 ${JSON.stringify(expected)}: give 64 hex digits`);
  }
  const got = policySha256(input.bytes);
  if (got !== want) {
    throw new InputError(
      `${input.source}: sha256 mismatch: expected ${want}, the bytes read hash to ${got}`,
      {
        position: { file: input.source },
      },
    );
  }
}

/** `<config-dir>/config.yaml`; other keys belong to other commands and are left alone here. */
export type ApplyConfig = { requireSignature: boolean };

const configSchema = z.looseObject({ requireSignature: z.boolean().optional() });

export function readApplyConfig(configDir: string): ApplyConfig {
  const file = join(configDir, "config.yaml");
  let text: string;
  try {
    text = Deno.readTextFileSync(file);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return { requireSignature: false };
    throw error;
  }
  const { parse: parseYaml } = yaml();
  let value: unknown;
  try {
    value = parseYaml(text) ?? {};
  } catch (error) {
    throw new InputError(`${file}: not valid YAML: ${(error as Error).message.split("\n")[0]}`, {
      position: { file },
    });
  }
  const parsed = configSchema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new InputError(`${file}: ${issue?.path.join(".") || "config"}: ${issue?.message ?? "invalid"}`, {
      position: { file },
    });
  }
  return { requireSignature: parsed.data.requireSignature ?? false };
}

export type CheckOptions = {
  configDir: string;
  stateDir: string;
  requireSignature: boolean;
  /** `policy rollback`: a stored bundle may be below the anti-rollback counter; its signature still counts. */
  rollback?: boolean;
  /**
   * `policy apply` and the API: a bundle whose version equals the counter passes this check, and
   * `refuseReplay` decides under the state lock (the bundle in force, or the one that raised the counter).
   */
  counterEqualDecidedLater?: boolean;
  now?: Date;
};

/** Parses a policy, or verifies a bundle and parses its payload; refuses unsigned policy where required. */
export function checkInput(input: RawInput, options: CheckOptions): PolicyInput {
  if (!isBundle(input.text)) {
    if (options.requireSignature) {
      throw new RefusedError(
        `Refused ${input.source}: unsigned policy, and signatures are required ` +
          `(--require-signature or requireSignature in config.yaml); sign it with aegisbpf policy sign`,
      );
    }
    const parsed = parsePolicySource(input.text, input.source);
    return {
      source: input.source,
      kind: "policy",
      content: input.text,
      policyText: input.text,
      sha256: policySha256(input.text),
      parsed,
    };
  }
  const trustedKeys = loadTrustedKeys(options.configDir);
  if (trustedKeys.length === 0) {
    throw new InputError(
      `${input.source}: a signed bundle, but no trusted keys in ${keysDir(options.configDir)}; ` +
        `trust the signer with aegisbpf keys add FILE`,
    );
  }
  const verified = verifyBundle(input.text, {
    file: input.source,
    trustedKeys,
    versionCounter: readVersionCounter(options.stateDir),
    now: options.now ?? new Date(),
    parsePolicy: (text, file) => {
      const parsed = parsePolicySource(text, file);
      return { metadata: parsed.policy.metadata, parsed };
    },
    ...(options.rollback ? { rollback: true } : {}),
    ...(options.counterEqualDecidedLater ? { counterEqualDecidedLater: true } : {}),
  });
  return {
    source: input.source,
    kind: "bundle",
    content: input.text,
    policyText: verified.policyText,
    sha256: policySha256(verified.policyText),
    parsed: verified.policy.parsed,
    keyid: verified.keyid,
  };
}
