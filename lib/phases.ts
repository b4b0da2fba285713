/**
 * Where one command's time goes: wall-clock milliseconds of named phases, measured with performance.now()
 * around the real calls. Off unless a command starts recording (`policy apply` and `rollback` do at
 * `--log-level debug` and print one line per phase), so that the agent, which applies many times, keeps
 * nothing. A phase inside another is recorded with its parent's name before its own: `kernel/flip`.
 */

export type Phase = { name: string; ms: number };

let recorded: Phase[] | undefined;
const open: string[] = [];

/** Starts recording (again): what was recorded before is dropped. */
export function recordPhases(): void {
  recorded = [];
  open.length = 0;
}

/** The phases recorded since recordPhases(), in the order they ended; recording stops. */
export function takePhases(): Phase[] {
  const phases = recorded ?? [];
  recorded = undefined;
  return phases;
}

/** Runs `fn`, recording its wall time as phase `name` when recording. */
export function phase<T>(name: string, fn: () => T): T {
  if (!recorded) return fn();
  const started = begin(name);
  try {
    return fn();
  } finally {
    end(name, started);
  }
}

/** phase() for an async call: the time until its promise settles. */
export async function phaseAsync<T>(name: string, fn: () => Promise<T>): Promise<T> {
  if (!recorded) return await fn();
  const started = begin(name);
  try {
    return await fn();
  } finally {
    end(name, started);
  }
}

/** Records a phase measured by the caller (start-up, which began before any code of ours ran). */
export function addPhase(name: string, ms: number): void {
  recorded?.push({ name, ms });
}

function begin(name: string): number {
  open.push(name);
  return performance.now();
}

function end(name: string, started: number): void {
  const ms = performance.now() - started;
  open.pop();
  recorded?.push({ name: [...open, name].join("/"), ms });
}
