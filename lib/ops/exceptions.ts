/**
 * Expiring exceptions (`aegisbpf exception`, /v1/exceptions): a temporary allow that beats the policy's deny
 * for one match, written into its own pinned maps (a policy flip keeps it) with its expiry, which the kernel
 * enforces with or without an agent. Adds and removes hold the state lock, and are history notes.
 *
 * Expired exceptions decide nothing from their deadline on; they stay listed, as expired, until
 * `exception remove ID` or `exception remove --expired` removes them.
 */

import { join } from "node:path";
import { z } from "zod";
import { InputError } from "../errors.ts";
import { withYaml, yaml } from "../policy/yaml.ts";
import { cgroup2Root } from "../kernel/cgroup.ts";
import {
  addKernelException,
  bootTimeNs,
  type ExceptionScope,
  kernelExceptions,
  type KernelMatch,
  removeKernelExceptions,
} from "../kernel/exceptions.ts";
import { fileIdentities } from "../kernel/resolve.ts";
import {
  appendHistoryNote,
  type ExceptionFile,
  type ExceptionRecord,
  readExceptions,
  writeExceptions,
} from "../state/exceptions.ts";
import { lockState } from "./apply.ts";
import {
  type AllowTarget,
  checkCgroupPath,
  checkReason,
  checkTicket,
  DEFAULT_MAX_TTL_MS,
  parseAllow,
  parseMaxTtl,
  parseTtl,
} from "./exception_input.ts";

export type ExceptionPaths = { bpffs: string; stateDir: string; configDir: string };
export type LockOptions = { wait: boolean; timeoutMs?: number; onWait: (message: string) => void };

export type ExceptionRequest = { allow: string; in?: string; ttl: string; reason?: string; ticket?: string };

/**
 * - `active`: in the kernel and live
 * - `expired`: in the kernel past its deadline: it decides nothing
 * - `gone`: named here, not in the kernel (a reboot or a detach removed the pins): it decides nothing
 * - `unnamed`: in the kernel with no record here (a command killed between the two writes)
 */
export type ExceptionState = "active" | "expired" | "gone" | "unnamed";

export type ExceptionView = {
  id: number;
  allow?: string | undefined;
  kind: "exec" | "file" | "egress";
  in?: string | undefined;
  reason?: string | undefined;
  ticket?: string | undefined;
  uid?: number | undefined;
  created?: string | undefined;
  expires?: string | undefined;
  state: ExceptionState;
  /** Seconds left while active. */
  remainingSeconds?: number;
};

/** config.yaml's exceptionMaxTtl, or the 7-day default. */
export function readMaxTtlMs(configDir: string): number {
  const file = join(configDir, "config.yaml");
  let text: string;
  try {
    text = Deno.readTextFileSync(file);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return DEFAULT_MAX_TTL_MS;
    throw error;
  }
  const { parse } = yaml();
  let value: unknown;
  try {
    value = parse(text) ?? {};
  } catch (error) {
    throw new InputError(`${file}: not valid YAML: ${(error as Error).message.split("\n")[0]}`, {
      position: { file },
    });
  }
  const parsed = z.looseObject({ exceptionMaxTtl: z.string().optional() }).safeParse(value);
  if (!parsed.success) {
    throw new InputError(`${file}: exceptionMaxTtl must be a duration such as 14d`, { position: { file } });
  }
  const text2 = parsed.data.exceptionMaxTtl;
  return text2 === undefined ? DEFAULT_MAX_TTL_MS : parseMaxTtl(text2, file);
}

type Checked = {
  target: AllowTarget;
  match: KernelMatch;
  ttlMs: number;
  reason: string;
  ticket: string | undefined;
  cgroup: { path: string; scope: ExceptionScope } | undefined;
  inodes: string[] | undefined;
};

/** Checks and resolves a request: every refusal is an InputError naming the flag, before anything is written. */
export function checkRequest(paths: ExceptionPaths, request: ExceptionRequest): Checked {
  const target = parseAllow(request.allow);
  const ttlMs = parseTtl(request.ttl, readMaxTtlMs(paths.configDir));
  const reason = checkReason(request.reason);
  const ticket = checkTicket(request.ticket);
  const cgroupPath = checkCgroupPath(request.in);
  let cgroup: Checked["cgroup"];
  if (cgroupPath !== undefined) {
    const root = cgroup2Root();
    let info: Deno.FileInfo | undefined;
    try {
      info = Deno.statSync(join(root, cgroupPath));
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory)) throw error;
    }
    if (!info?.isDirectory || !info.ino) {
      throw new InputError(`--in ${cgroupPath}: no such cgroup under ${root}`);
    }
    cgroup = {
      path: cgroupPath,
      scope: { cgroupId: BigInt(info.ino), cgroupLevel: cgroupPath.split("/").length },
    };
  }
  if (target.kind === "egress") {
    const { cidr, port } = target;
    return {
      target,
      match: {
        kind: "egress",
        net: { family: cidr.family, addr: cidr.addr, prefixLength: cidr.prefixLength, port },
      },
      ttlMs,
      reason,
      ticket,
      cgroup,
      inodes: undefined,
    };
  }
  let stat: Deno.FileInfo;
  try {
    stat = Deno.statSync(target.path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory) {
      throw new InputError(`--allow ${request.allow}: no such file`);
    }
    throw error;
  }
  if (target.kind === "exec" && !stat.isFile) {
    throw new InputError(`--allow ${request.allow}: not a regular file, nothing to run`);
  }
  const inodes = fileIdentities(target.path, Deno.readTextFileSync("/proc/self/mountinfo"));
  return {
    target,
    match: { kind: target.kind, inodes },
    ttlMs,
    reason,
    ticket,
    cgroup,
    inodes: inodes.map(({ dev, ino }) => `${dev}:${ino}`),
  };
}

/** The next number: one above the last handed out, wrapping past 65535 to the lowest not in use. */
function nextId(file: ExceptionFile, inKernel: ReadonlySet<number>): number {
  const used = new Set([...inKernel, ...file.exceptions.map((x) => x.id)]);
  for (let step = 1; step <= 65535; step++) {
    const id = ((file.lastId + step - 1) % 65535) + 1;
    if (!used.has(id)) return id;
  }
  throw new InputError("65535 exceptions exist: remove some first (aegisbpf exception remove --expired)");
}

/** Adds an exception; returns it as listed. */
export async function addException(
  paths: ExceptionPaths,
  request: ExceptionRequest,
  options: LockOptions & { uid: number },
): Promise<ExceptionView> {
  const checked = await withYaml(() => checkRequest(paths, request));
  using _lock = await lockState(paths.stateDir, "exception add", options);
  const file = readExceptions(paths.stateDir);
  const id = nextId(file, new Set(kernelExceptions(paths.bpffs).map((x) => x.id)));
  const nowMs = Date.now();
  const expiresBootNs = bootTimeNs() + BigInt(checked.ttlMs) * 1_000_000n;
  addKernelException(
    paths.bpffs,
    checked.match,
    checked.cgroup ? { id, expiresBootNs, scope: checked.cgroup.scope } : { id, expiresBootNs },
  );
  const record: ExceptionRecord = {
    id,
    allow: request.allow,
    kind: checked.target.kind,
    ...(checked.cgroup ? { in: checked.cgroup.path } : {}),
    reason: checked.reason,
    ...(checked.ticket !== undefined ? { ticket: checked.ticket } : {}),
    uid: options.uid,
    created: new Date(nowMs).toISOString(),
    expires: new Date(nowMs + checked.ttlMs).toISOString(),
    expiresBootNs: String(expiresBootNs),
    ...(checked.inodes ? { inodes: checked.inodes } : {}),
  };
  try {
    writeExceptions(paths.stateDir, { format: 1, lastId: id, exceptions: [...file.exceptions, record] });
  } catch (error) {
    removeKernelExceptions(paths.bpffs, new Set([id])); // nothing half-written: no nameless exception
    throw error;
  }
  appendHistoryNote(paths.stateDir, {
    time: record.created,
    uid: options.uid,
    note: "exception-added",
    exception: id,
    allow: record.allow,
    reason: record.reason,
    ...(record.ticket !== undefined ? { ticket: record.ticket } : {}),
    expires: record.expires,
  });
  return viewOf(record, "active", Number(checked.ttlMs / 1000));
}

/** Every exception, named or only in the kernel, with its state now. */
export function listExceptions(paths: { bpffs: string; stateDir: string }): ExceptionView[] {
  const file = readExceptions(paths.stateDir);
  const kernel = kernelExceptions(paths.bpffs);
  const now = bootTimeNs();
  const views: ExceptionView[] = [];
  for (const record of file.exceptions) {
    const entries = kernel.filter((x) => x.id === record.id);
    if (entries.length === 0) {
      views.push(viewOf(record, "gone"));
      continue;
    }
    const expires = entries[0]!.expiresBootNs;
    const live = entries.some((x) => !x.expired);
    views.push(
      viewOf(
        record,
        live ? "active" : "expired",
        live ? Number((expires - now) / 1_000_000_000n) : undefined,
      ),
    );
  }
  const named = new Set(file.exceptions.map((x) => x.id));
  for (const entry of kernel) {
    if (named.has(entry.id) || views.some((v) => v.id === entry.id)) continue;
    views.push({ id: entry.id, kind: entry.kind, state: "unnamed" });
  }
  return views.sort((a, b) => a.id - b.id);
}

function viewOf(record: ExceptionRecord, state: ExceptionState, remainingSeconds?: number): ExceptionView {
  const { expiresBootNs: _ns, inodes: _inodes, ...rest } = record;
  return { ...rest, state, ...(remainingSeconds !== undefined ? { remainingSeconds } : {}) };
}

/**
 * Removes exception `id` (or, with `expired`, every exception that decides nothing any more) from the kernel
 * and the record; returns the ids removed. An unknown id is an InputError.
 */
export async function removeExceptions(
  paths: ExceptionPaths,
  which: { id: number } | { expired: true },
  options: LockOptions & { uid: number },
): Promise<number[]> {
  using _lock = await lockState(paths.stateDir, "exception remove", options);
  const views = listExceptions(paths);
  const chosen = "id" in which
    ? views.filter((v) => v.id === which.id)
    : views.filter((v) => v.state === "expired" || v.state === "gone");
  if ("id" in which && chosen.length === 0) {
    throw new InputError(`No exception ${which.id}: see aegisbpf exception list`);
  }
  const ids = new Set(chosen.map((v) => v.id));
  if (ids.size === 0) return [];
  if (chosen.some((v) => v.state !== "gone")) removeKernelExceptions(paths.bpffs, ids);
  const file = readExceptions(paths.stateDir);
  writeExceptions(paths.stateDir, { ...file, exceptions: file.exceptions.filter((x) => !ids.has(x.id)) });
  const time = new Date().toISOString();
  for (const view of chosen) {
    appendHistoryNote(paths.stateDir, {
      time,
      uid: options.uid,
      note: view.state === "active" || view.state === "unnamed"
        ? "exception-removed"
        : "exception-expired-removed",
      exception: view.id,
      allow: view.allow ?? `${view.kind}:?`,
    });
  }
  return [...ids].sort((a, b) => a - b);
}

/** Live exceptions by kind, for health, status and metrics. */
export function exceptionCounts(views: readonly ExceptionView[]): Record<"exec" | "file" | "egress", number> {
  const counts = { exec: 0, file: 0, egress: 0 };
  for (const view of views) if (view.state === "active" || view.state === "unnamed") counts[view.kind]++;
  return counts;
}
