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
import { EventJsonWriter } from "./event_json.ts";
import { jsonText } from "../text/printable.ts";

/** What an agent event carries besides its type and fields, as it is at the moment of the event. */
export type Envelope = { host: string; mode: "enforce" | "audit"; policy: PolicyRef | undefined };

export class EventPipeline {
  readonly #log: Pick<EventLogSink, "appendLine" | "appendBytes">;
  readonly #emit: (event: AnyEvent, line: string) => void;
  readonly #emitJson: ((line: Uint8Array) => void) | undefined;
  readonly #json: EventJsonWriter;
  readonly #context: EventContext;
  readonly #enforceSignal: EnforceSignal;
  readonly #envelope: () => Envelope;
  readonly #warn: (message: string) => void;

  constructor(options: {
    log: Pick<EventLogSink, "appendLine" | "appendBytes">;
    /** The event, and its JSON line (made once, for the log and the caller). */
    emit: (event: AnyEvent, line: string) => void;
    /**
     * For a caller that wants only the JSON line of a kernel event: its UTF-8 with the newline, made once
     * for the log and the caller straight from the record (event_json.ts), in place of `emit`. Valid only
     * during the call. Kernel events the byte writer does not cover, and agent events, still go to `emit`.
     */
    emitJson?: (line: Uint8Array) => void;
    context: EventContext;
    enforceSignal: EnforceSignal;
    envelope: () => Envelope;
    warn: (message: string) => void;
  }) {
    this.#log = options.log;
    this.#emit = options.emit;
    this.#emitJson = options.emitJson;
    this.#context = options.context;
    this.#json = new EventJsonWriter(options.context);
    this.#enforceSignal = options.enforceSignal;
    this.#envelope = options.envelope;
    this.#warn = options.warn;
  }

  /**
   * A decision from the kernel: formatted, and with kill on deny, its task signalled here when the hook
   * could not do it itself (the cgroup socket hooks), never PID 1 or a task in an `exempt` cgroup.
   */
  kernel(raw: RawEvent, exempt: () => readonly string[]): void {
    const configured = this.#enforceSignal;
    const signalHere = configured !== "none" && raw.decision === DECISION.DENY && raw.signal === 0;
    // Straight to bytes when nothing but the line is wanted and no signal is to be sent here.
    if (this.#emitJson !== undefined && !signalHere && this.#json.write(raw)) {
      const line = this.#json.line.view();
      this.#log.appendBytes(line);
      this.#emitJson(line);
      return;
    }
    const event = formatEvent(raw, this.#context);
    if (signalHere) {
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
