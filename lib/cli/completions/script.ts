/** The completion script of one shell for the commands of the registry. */

import type { Registry } from "../command.ts";
import { bashScript } from "./bash.ts";
import { fishScript } from "./fish.ts";
import { completionModel } from "./model.ts";
import { zshScript } from "./zsh.ts";

export const SHELLS = ["bash", "zsh", "fish"] as const;
export type Shell = (typeof SHELLS)[number];

export function completionScript(shell: Shell, registry: Registry): string {
  const model = completionModel(registry);
  return { bash: bashScript, zsh: zshScript, fish: fishScript }[shell](model);
}
