import { agentFile, readAgentState } from "../state/agent_state.ts";
import { lockState } from "../ops/apply.ts";
import { defineCommand } from "../cli/command.ts";
import { DataPlane, DetachError } from "../kernel/dataplane.ts";
import { pinDirOf } from "../kernel/inspect.ts";
import { RefusedError } from "../errors.ts";
import { removeIfPresent } from "../state/files.ts";
import { removeFloorRecord, writeFloorRecord } from "../state/tamper_record.ts";

export const detach = defineCommand({
  name: "detach",
  summary: "remove every aegisbpf program, link and pin from the kernel (clean uninstall)",
  description: "Takes the state lock, empties the rule maps and forces audit, then detaches and unpins " +
    "every link and removes every pinned program and map under <bpffs>/aegisbpf. The history of applied " +
    "policies in the state directory is kept, so a later policy rollback can put a policy back. Refused " +
    "(exit 3) while an agent is running: stop it first; --force detaches under it (its BPF-LSM and " +
    "tracepoint programs stay attached, with no rules and audit forced, until it exits). If something " +
    "cannot be removed it goes on with the rest, names what is left (exit 1), and leaves audit forced: an " +
    "agent that starts resets it.",
  options: {
    force: { type: "boolean", description: "detach even while an agent is running" },
    "no-wait": { type: "boolean", description: "fail at once when another command holds the state lock" },
  },
  args: [],
  examples: ["aegisbpf detach", "aegisbpf detach --force"],
  async run(ctx, { flags }) {
    const { bpffs, stateDir } = ctx.globals;
    using _lock = await lockState(stateDir, "detach", {
      wait: flags["no-wait"] !== true,
      onWait: (message) => ctx.log.info(message),
      timeoutMs: ctx.globals.lockTimeoutMs,
    });
    const agent = readAgentState(stateDir);
    if (agent.state === "running") {
      if (!flags.force) {
        throw new RefusedError(
          `Refused: an agent is running (pid ${agent.record.pid}) and would keep its programs attached; ` +
            `stop it first (systemctl stop aegisbpf, or kill ${agent.record.pid}), or pass --force`,
        );
      }
      ctx.log.warn(
        `detaching under the running agent (pid ${agent.record.pid}): its programs audit with no rules until it exits`,
      );
    }
    if (agent.state === "unreadable") {
      ctx.log.warn(`cannot tell whether an agent is running (${agent.why}); detaching`);
    }
    const pinDir = pinDirOf(bpffs);
    let removed: string[];
    try {
      removed = DataPlane.detach(bpffs);
    } catch (error) {
      if (!(error instanceof DetachError)) throw error;
      // Audit stays forced on what is left: asked for, not tampering (health reads this).
      writeFloorRecord(stateDir, "detach");
      for (const { entry, error: why } of error.failures) {
        ctx.stderr.line(`aegisbpf: left ${pinDir}/${entry}: ${why instanceof Error ? why.message : why}`);
      }
      throw new Error(
        `Detach removed ${error.removed.length} entries but left ${error.failures.length} under ${pinDir} ` +
          `(listed above), with audit forced; fix the cause and run aegisbpf detach again`,
        { cause: error },
      );
    }
    removeFloorRecord(stateDir);
    if (agent.state === "died") {
      removeIfPresent(agentFile(stateDir));
      ctx.log.info(`removed ${agentFile(stateDir)}: its agent had died (${agent.why})`);
    }
    if (removed.length === 0) {
      ctx.stdout.line(`nothing of aegisbpf is pinned under ${pinDir}; nothing to detach`);
      return 0;
    }
    const count = (kind: string) => removed.filter((entry) => entry.startsWith(`${kind}/`)).length;
    // Only what this pin directory held is known gone: another bpffs may hold pins of its own, and an agent
    // detached under keeps the programs it holds open.
    const running = agent.state === "running"
      ? `; the running agent (pid ${agent.record.pid}) keeps its own programs attached until it exits`
      : "";
    ctx.stdout.line(
      `detached: removed ${count("links") + count("tc")} links, ${count("progs")} programs and ${
        count("maps")
      } maps ` +
        `under ${pinDir}; nothing is pinned there now${running}; history kept in ${stateDir}`,
    );
    return 0;
  },
});
