/**
 * What `aegisbpf exception add` (and POST /v1/exceptions) is given, checked before anything is written:
 * pure, no file or kernel access here. Every refusal is an InputError naming the flag (exit 2).
 */

import { InputError } from "../errors.ts";
import { type Cidr, CidrError, networkOf, parseCidr } from "../policy/cidr.ts";
import { parseDuration } from "../text/duration.ts";

/** The longest an exception may live unless config.yaml's exceptionMaxTtl says otherwise. */
export const DEFAULT_MAX_TTL_MS = 7 * 86_400_000;
/** The longest exceptionMaxTtl may set: an exception is temporary. */
export const MAX_TTL_CEILING_MS = 90 * 86_400_000;
export const REASON_MAX = 200;
export const TICKET_MAX = 64;

export type AllowTarget =
  | { kind: "exec" | "file"; path: string }
  | { kind: "egress"; cidr: Cidr; port: number };

/** `exec:PATH`, `file:PATH`, `egress:CIDR`, `egress:CIDR:PORT`, `egress:[IPV6/LEN]:PORT`. */
export function parseAllow(text: string): AllowTarget {
  const colon = text.indexOf(":");
  const kind = colon < 0 ? "" : text.slice(0, colon);
  const rest = text.slice(colon + 1);
  if (kind === "exec" || kind === "file") {
    if (!rest.startsWith("/")) {
      throw new InputError(
        `--allow ${JSON.stringify(text)}: the path must be absolute, e.g. ${kind}:/usr/bin/curl`,
      );
    }
    refuseControl(rest, "--allow");
    return { kind, path: rest };
  }
  if (kind === "egress") return { kind, ...parseDestination(rest, text) };
  throw new InputError(
    `--allow ${
      JSON.stringify(text)
    }: write exec:PATH, file:PATH or egress:CIDR[:PORT], e.g. egress:10.0.0.0/8:443`,
  );
}

function parseDestination(rest: string, text: string): { cidr: Cidr; port: number } {
  let address = rest;
  let port: string | undefined;
  const bracket = /^\[([^\]]+)\](?::(.*))?$/.exec(rest);
  if (bracket) {
    address = bracket[1]!;
    port = bracket[2];
  } else if ((rest.match(/:/g) ?? []).length === 1) {
    [address, port] = rest.split(":") as [string, string];
  }
  let cidr: Cidr;
  try {
    cidr = networkOf(parseCidr(address));
  } catch (error) {
    if (!(error instanceof CidrError)) throw error;
    throw new InputError(`--allow ${JSON.stringify(text)}: ${error.message}`);
  }
  if (port === undefined) return { cidr, port: 0 };
  const number = /^\d{1,5}$/.test(port) ? Number(port) : NaN;
  if (!(number >= 1 && number <= 65535)) {
    throw new InputError(`--allow ${JSON.stringify(text)}: the port must be 1..65535`);
  }
  return { cidr, port: number };
}

/** --ttl in ms: a duration above zero and at most `maxMs` (DEFAULT_MAX_TTL_MS unless config.yaml says). */
export function parseTtl(text: string, maxMs: number): number {
  const ms = parseDuration(text, "--ttl");
  if (ms > maxMs) {
    throw new InputError(
      `--ttl ${text} is longer than an exception may live here (${formatMs(maxMs)}; exceptionMaxTtl in ` +
        "config.yaml sets it)",
    );
  }
  return ms;
}

/** --reason: required, not blank, at most REASON_MAX characters, no control characters. */
export function checkReason(reason: string | undefined): string {
  const text = reason?.trim() ?? "";
  if (text === "") {
    throw new InputError("--reason is required: say why this exception is needed, for the record");
  }
  if (text.length > REASON_MAX) throw new InputError(`--reason is longer than ${REASON_MAX} characters`);
  refuseControl(text, "--reason");
  return text;
}

/** --ticket: optional; when given, not blank, at most TICKET_MAX characters, no control characters. */
export function checkTicket(ticket: string | undefined): string | undefined {
  if (ticket === undefined) return undefined;
  const text = ticket.trim();
  if (text === "") throw new InputError("--ticket is empty: leave it out, or name the ticket");
  if (text.length > TICKET_MAX) throw new InputError(`--ticket is longer than ${TICKET_MAX} characters`);
  refuseControl(text, "--ticket");
  return text;
}

/** --in: a cgroup path below the cgroup v2 root, without `..`. */
export function checkCgroupPath(path: string | undefined): string | undefined {
  if (path === undefined) return undefined;
  const trimmed = path.replace(/^\/+|\/+$/g, "");
  if (trimmed === "" || trimmed.split("/").some((part) => part === "" || part === "." || part === "..")) {
    throw new InputError(
      `--in ${JSON.stringify(path)}: name a cgroup below the root, e.g. system.slice/web.service`,
    );
  }
  refuseControl(trimmed, "--in");
  return trimmed;
}

/** The config value exceptionMaxTtl (a duration) in ms, within MAX_TTL_CEILING_MS. */
export function parseMaxTtl(text: string, file: string): number {
  const ms = parseDuration(text, `${file}: exceptionMaxTtl`);
  if (ms > MAX_TTL_CEILING_MS) {
    throw new InputError(`${file}: exceptionMaxTtl ${text} is longer than ${formatMs(MAX_TTL_CEILING_MS)}`, {
      position: { file },
    });
  }
  return ms;
}

function refuseControl(text: string, flag: string): void {
  // deno-lint-ignore no-control-regex
  if (/[\u0000-\u001f\u007f-\u009f]/.test(text)) throw new InputError(`${flag} holds a control character`);
}

/** 7d, 36h, 90m, 45s: the largest whole unit. */
export function formatMs(ms: number): string {
  for (const [unit, size] of [["d", 86_400_000], ["h", 3_600_000], ["m", 60_000], ["s", 1000]] as const) {
    if (ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}
