/**
 * The signals `run` answers, listened to from its first moment: without a listener SIGHUP's default
 * action ends the process, so a `systemctl reload` right after a restart would kill an agent still
 * starting. A SIGHUP before the agent can reload is remembered and served once it can (several make one
 * reload); SIGTERM or SIGINT at any time asks for a clean stop, which `run` makes as soon as it can (a
 * SIGHUP after it is ignored). SIGUSR2 (sent by the package's dpkg hook after a dpkg run) asks for a rule
 * refresh of the policy in force, so that `trust: dpkg` takes the packages installed since; one before the
 * agent can serve it is remembered too (its default action would end the process).
 */

const STOP_SIGNALS = ["SIGTERM", "SIGINT"] as const;

export class RunSignals implements Disposable {
  /** Resolves with the name of the first stop signal. */
  readonly stopped: Promise<string>;
  #stopSignal: string | undefined;
  #reload: (() => void) | undefined;
  #reloadPending = false;
  #refresh: (() => void) | undefined;
  #refreshPending = false;
  readonly #listeners: [Deno.Signal, () => void][];

  constructor() {
    let stop!: (signal: string) => void;
    this.stopped = new Promise<string>((resolve) => (stop = resolve));
    this.#listeners = [
      ...STOP_SIGNALS.map((name): [Deno.Signal, () => void] => [name, () => {
        this.#stopSignal ??= name;
        stop(name);
      }]),
      ["SIGHUP", () => this.#onReload()],
      ["SIGUSR2", () => this.#onRefresh()],
    ];
    for (const [name, listener] of this.#listeners) Deno.addSignalListener(name, listener);
  }

  /** The stop signal received so far, if any. */
  get stopSignal(): string | undefined {
    return this.#stopSignal;
  }

  /** From now on SIGHUP calls `reload`; a SIGHUP received before is served now. */
  serveReloads(reload: () => void): void {
    this.#reload = reload;
    if (this.#reloadPending) {
      this.#reloadPending = false;
      reload();
    }
  }

  /** From now on SIGUSR2 calls `refresh`; a SIGUSR2 received before is served now. */
  serveRefreshes(refresh: () => void): void {
    this.#refresh = refresh;
    if (this.#refreshPending) {
      this.#refreshPending = false;
      refresh();
    }
  }

  #onRefresh(): void {
    if (this.#stopSignal !== undefined) return;
    if (this.#refresh) this.#refresh();
    else this.#refreshPending = true;
  }

  #onReload(): void {
    // Stopping: a reload now would apply into an agent on its way out.
    if (this.#stopSignal !== undefined) return;
    if (this.#reload) this.#reload();
    else this.#reloadPending = true;
  }

  [Symbol.dispose](): void {
    for (const [name, listener] of this.#listeners) Deno.removeSignalListener(name, listener);
  }
}
