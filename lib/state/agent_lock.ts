/**
 * One agent per state directory: `<state-dir>/agent.lock`, an exclusive flock the agent takes before
 * anything else and holds for its whole life. The kernel releases it when the agent dies, even by kill -9,
 * so whether an agent is alive is the lock's answer, not a guess from a pid and a command line. The file
 * also says who holds it (pid, start time), for the messages.
 */

import { join } from "node:path";
import { RefusedError } from "../errors.ts";
import { makePrivateDir, PRIVATE_FILE_MODE } from "./access.ts";
import { chmodOpenFile, heldLock } from "./files.ts";

export type AgentLockHolder = { pid?: number; startedAt?: string };

/** A held agent lock; disposing of it (at the agent's exit) releases it. */
export type AgentLock = Disposable & { readonly path: string };

/**
 * How long a starting agent retries the lock: a command probing whether an agent is alive holds a shared
 * lock for microseconds, which must not read as a second agent.
 */
const PROBE_GRACE_MS = 500;
const RETRY_MS = 25;

export function agentLockPath(stateDir: string): string {
  return join(stateDir, "agent.lock");
}

/**
 * Takes the agent lock, or refuses (exit 3) naming the agent that holds it. The state directory is made
 * (0700) when missing.
 */
export async function takeAgentLock(stateDir: string): Promise<AgentLock> {
  makePrivateDir(stateDir);
  const path = agentLockPath(stateDir);
  const file = await Deno.open(path, { read: true, write: true, create: true, mode: PRIVATE_FILE_MODE });
  try {
    if (((file.statSync().mode ?? 0) & 0o077) !== 0) chmodOpenFile(file, path, PRIVATE_FILE_MODE);
    const deadline = Date.now() + PROBE_GRACE_MS;
    while (!(await file.tryLock(true))) {
      if (Date.now() >= deadline) {
        const holder = readAgentLockHolder(path);
        throw new RefusedError(
          `An agent is already running (${describeAgent(holder)}) on ${stateDir}: stop it first` +
            (holder.pid === undefined ? "" : ` (kill -TERM ${holder.pid})`),
        );
      }
      await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
    }
    const holder: AgentLockHolder = { pid: Deno.pid, startedAt: new Date().toISOString() };
    file.truncateSync(0);
    file.seekSync(0, Deno.SeekMode.Start);
    file.writeSync(new TextEncoder().encode(JSON.stringify(holder) + "\n"));
  } catch (error) {
    file.close();
    throw error;
  }
  return heldLock(file, path);
}

/**
 * The live agent on `stateDir`, or undefined when no process holds the agent lock. Reading takes a shared
 * lock for an instant and needs read access to the file (root, or the agent's own user).
 */
export function liveAgent(stateDir: string): AgentLockHolder | undefined {
  const path = agentLockPath(stateDir);
  let file: Deno.FsFile;
  try {
    file = Deno.openSync(path, { read: true });
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
  try {
    if (file.tryLockSync(false)) {
      file.unlockSync();
      return undefined;
    }
    return readAgentLockHolder(path);
  } finally {
    file.close();
  }
}

export function describeAgent(holder: AgentLockHolder): string {
  if (holder.pid === undefined) return "pid unknown";
  return holder.startedAt === undefined
    ? `pid ${holder.pid}`
    : `pid ${holder.pid}, started ${holder.startedAt}`;
}

function readAgentLockHolder(path: string): AgentLockHolder {
  try {
    const value: unknown = JSON.parse(Deno.readTextFileSync(path));
    if (typeof value !== "object" || value === null) return {};
    const { pid, startedAt } = value as Record<string, unknown>;
    return {
      ...(Number.isSafeInteger(pid) ? { pid: pid as number } : {}),
      ...(typeof startedAt === "string" ? { startedAt } : {}),
    };
  } catch {
    return {};
  }
}
