/**
 * Where the agent's events go: a kernel decision formatted (and, with kill on deny, its task signalled
 * here when the hook could not do it itself), an agent event stamped with host, mode and policy; each
 * appended to the bounded event log and handed to the caller (stdout, the API's stream).
 */

import { DECISION, type RawEvent } from "../../ffi/mod.ts";
import { messageOf } from "../errors.ts";
import { type EventContext, formatEvent, type PolicyRef } from "../kernel/events.ts";
import type { EnforceSignal } from "../kernel/mode_words.ts";
import { agentEvent, type AgentEventType, type AnyEvent } from "./agent_events.ts";
import { signalDeniedTask } from "./enforce_signal.ts";
import type { EventLogSink } from "./event_log_sink.ts";
import { jsonText } from "../text/printable.ts";

/** What an agent event carries besides its type and fields, as it is at the moment of the event. */
export type Envelope = { host: string; mode: "enforce" | "audit"; policy: PolicyRef | undefined };

export class EventPipeline {
  readonly #log: Pick<EventLogSink, "appendLine">;
  readonly #emit: (event: AnyEvent, line: string) => void;
  readonly #context: EventContext;
  readonly #enforceSignal: EnforceSignal;
  readonly #envelope: () => Envelope;
  readonly #warn: (message: string) => void;

  constructor(options: {
    log: Pick<EventLogSink, "appendLine">;
    /** The event, and its JSON line (made once, for the log and the caller). */
    emit: (event: AnyEvent, line: string) => void;
    context: EventContext;
    enforceSignal: EnforceSignal;
    envelope: () => Envelope;
    warn: (message: string) => void;
  }) {
    this.#log = options.log;
    this.#emit = options.emit;
    this.#context = options.context;
    this.#enforceSignal = options.enforceSignal;
    this.#envelope = options.envelope;
    this.#warn = options.warn;
  }

  /**
   * A decision from the kernel: formatted, and with kill on deny, its task signalled here when the hook
   * could not do it itself (the cgroup socket hooks), never PID 1 or a task in an `exempt` cgroup.
   */
  kernel(raw: RawEvent, exempt: () => readonly string[]): void {
    const event = formatEvent(raw, this.#context);
    const configured = this.#enforceSignal;
    if (configured !== "none" && raw.decision === DECISION.DENY && raw.signal === 0) {
      try {
        const decision = signalDeniedTask(raw, configured, exempt());
        if ("send" in decision) event.signal = { name: decision.send, by: "agent" };
      } catch (error) {
        this.#warn(`kill on deny: pid ${raw.pid}: ${messageOf(error)}`);
      }
    }
    this.#write(event);
  }

  /** An event of the agent's own. */
  agent(type: AgentEventType, fields: Record<string, unknown>): void {
    this.#write(agentEvent(this.#envelope(), type, fields));
  }

  #write(event: AnyEvent): void {
    const line = jsonText(event);
    // A full disk must not stop the stream: the sink reopens the log and reports the outage itself.
    this.#log.appendLine(line);
    this.#emit(event, line);
  }
}
