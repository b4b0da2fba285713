/**
 * The forced-audit floor `run --audit` sets in the kernel's word when the agent starts (the tamper guard holds
 * it while the agent runs), and the mode the agent is in as the kernel's words say (break-glass, the floor, a
 * passed deadman deadline all audit).
 */

import type { DataPlane } from "../kernel/dataplane.ts";
import { bootTimeNs } from "../kernel/mode_words.ts";
import type { Mode } from "../policy/plan.ts";

export class ModeKeeper {
  readonly #plane: Pick<DataPlane, "config" | "setConfig">;
  /** `--audit`: the floor this agent holds in the kernel's forced-audit word while it runs. */
  readonly floor: boolean;

  constructor(plane: Pick<DataPlane, "config" | "setConfig">, floor: boolean) {
    this.#plane = plane;
    this.floor = floor;
  }

  /**
   * A new agent takes over the forced-audit word: its floor under --audit, else off (a detach that failed
   * half-way, or an earlier agent's floor, leaves it on). Returns the words as they are now.
   */
  takeOver(): ReturnType<DataPlane["setConfig"]> {
    return this.#plane.setConfig({ forceAudit: this.floor });
  }

  /** What the kernel does with a policy of `planMode` now. */
  effective(planMode: Mode | undefined): "enforce" | "audit" {
    const words = this.#plane.config();
    const deadman = words.deadmanDeadlineNs !== 0n && bootTimeNs() >= words.deadmanDeadlineNs;
    const enforcing = planMode === "enforce" && !words.breakGlass && !words.forceAudit && !deadman;
    return enforcing ? "enforce" : "audit";
  }
}
