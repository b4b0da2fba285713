/**
 * What keeps the agent's process its own. The agent runs as root and its enforcement must not lapse because
 * of something a local user or a stray signal can cause:
 *
 * - Deno (2.9.2 and later) opens the V8 inspector on 127.0.0.1:9229 when the process receives SIGUSR1, and
 *   anyone who can connect to it runs code in the process. There is no flag to turn that off. The runtime
 *   catches SIGUSR1 through its signal driver, which installs its OS handler once per process, the first
 *   time anything listens for the signal: `disarmInspector` listens first (so that one install happens
 *   now), then sets the process-wide disposition to ignore. The kernel then discards every SIGUSR1, and the
 *   runtime's later registration for the inspector finds its handler installed and does not install it
 *   again.
 * - An error nobody awaited (a listener's rejected promise, an exception in a callback) ends a Deno process.
 *   `guardProcess` reports such errors and keeps the agent running: the kernel keeps enforcing either way,
 *   and a dead agent only adds a restart (and, with --deadman, a lapse to audit).
 */

import { ignoreSignal } from "../../ffi/mod.ts";

const SIGUSR1 = 10;

let disarmed = false;

/** SIGUSR1 is discarded from now on, for the whole process: the inspector cannot be opened with it. */
export function disarmInspector(): void {
  if (disarmed) return;
  Deno.addSignalListener("SIGUSR1", ignore);
  ignoreSignal(SIGUSR1);
  Deno.removeSignalListener("SIGUSR1", ignore);
  disarmed = true;
}

function ignore(): void {}

/**
 * Until disposed, an unhandled rejection or an uncaught error anywhere in the process is reported through
 * `report` instead of ending it.
 */
export function guardProcess(report: (message: string) => void): Disposable {
  const onRejection = (event: PromiseRejectionEvent) => {
    event.preventDefault();
    report(`unhandled rejection, the agent goes on: ${messageOf(event.reason)}`);
  };
  const onError = (event: ErrorEvent) => {
    event.preventDefault();
    report(`uncaught error, the agent goes on: ${messageOf(event.error ?? event.message)}`);
  };
  globalThis.addEventListener("unhandledrejection", onRejection);
  globalThis.addEventListener("error", onError);
  return {
    [Symbol.dispose]() {
      globalThis.removeEventListener("unhandledrejection", onRejection);
      globalThis.removeEventListener("error", onError);
    },
  };
}

function messageOf(value: unknown): string {
  return value instanceof Error ? `${value.name}: ${value.message}` : String(value);
}
