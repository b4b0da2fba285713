import assert from "node:assert/strict";
import { DataPlane } from "../../../lib/kernel/dataplane.ts";
import { profileText } from "../../../lib/policy/profiles.ts";
import { AgentRun } from "../../support/agent_run.ts";

// The starter library's baseline (policies/baseline.yaml), run by the agent inside the qemu guest
// (tests/vm/harness.ts), where BPF-LSM programs load: in audit every write to a protected persistence file
// goes through and is reported with the rule's ATT&CK tags; in enforce the same writes fail with EPERM and
// are reported as denied, with the same tags, while reading the files still works. The guest is thrown
// away after the run: the test makes the files it protects where the guest's /etc lacks them. Its writers
// entries are left out: the guest's dpkg and rpm are busybox, as are its shell and /init, so with
// `children: true` every process here would be a trusted writer (and apply refuses the two entries as the
// same program).
const inVm = Deno.env.get("AEGIS_IN_VM") === "1";

/** What the test writes to, and the rule and technique the baseline refuses it with. */
const TARGETS = [
  { path: "/etc/crontab", rule: "crontab", tag: "T1053.003" },
  { path: "/etc/sudoers", rule: "sudoers", tag: "T1548.003" },
  { path: "/etc/ld.so.preload", rule: "ld-so-preload", tag: "T1574.006" },
  { path: "/etc/shadow", rule: "shadow", tag: "T1003.008" },
] as const;

/** Appends a line with a shell of its own; "ok", "EPERM" or the error. */
async function append(path: string): Promise<string> {
  const output = await new Deno.Command("sh", {
    args: ["-c", `echo '# aegisbpf' >> '${path}'`],
    stderr: "piped",
  })
    .output();
  if (output.success) return "ok";
  const text = new TextDecoder().decode(output.stderr);
  return /Operation not permitted/.test(text) ? "EPERM" : text;
}

async function runProfile(mode: "audit" | "enforce"): Promise<void> {
  const bpffs = `/sys/fs/bpf/profile-${mode}`;
  Deno.mkdirSync(bpffs, { recursive: true });
  const dir = Deno.makeTempDirSync({ prefix: `aegisbpf-profile-${mode}-` });
  const dirs = { bpffs, stateDir: `${dir}/state`, configDir: `${dir}/etc` };
  Deno.mkdirSync(dirs.configDir);
  Deno.writeTextFileSync(`${dir}/cmdline`, "ro\n");
  const shipped = await profileText("baseline");
  const text = shipped.replace("  mode: audit\n", `  mode: ${mode}\n`).replace(
    / {4}writers:\n( {6}.*\n)+/,
    "",
  );
  assert.doesNotMatch(text, /^ *writers:/m);
  assert.match(text, new RegExp(`mode: ${mode}`));
  Deno.writeTextFileSync(`${dir}/baseline.yaml`, text);
  try {
    await using agent = AgentRun.spawn(dirs, ["--policy", `${dir}/baseline.yaml`], {
      env: { AEGISBPF_PROC_CMDLINE: `${dir}/cmdline` },
    });
    await agent.ready(120_000);
    const state = JSON.parse(Deno.readTextFileSync(`${dirs.stateDir}/agent.json`));
    assert.equal(state.areas.file, mode === "enforce" ? "enforce" : "audit-only");
    for (const { path, rule, tag } of TARGETS) {
      assert.equal(await append(path), mode === "enforce" ? "EPERM" : "ok", `${mode}: ${path}`);
      assert.ok(Deno.readTextFileSync(path).length >= 0, `${path} stays readable`);
      const event = await agent.waitFor((e) => e.type === "file.write" && e.rule === rule, 30_000);
      assert.equal(event.decision, mode === "enforce" ? "deny" : "audit", `${mode}: ${rule}`);
      assert.deepEqual(event.tags, [tag], `${mode}: ${rule}`);
    }
  } finally {
    DataPlane.detach(bpffs);
  }
}

Deno.test({
  name:
    "[vm] the baseline profile reports (audit) and refuses (enforce) writes to persistence and credential files, with the rules' ATT&CK tags",
  ignore: !inVm,
  async fn() {
    // The baseline's rules that are not optional need their files; the guest's /etc may lack them.
    for (const path of [...TARGETS.map((target) => target.path), "/etc/passwd", "/etc/group"]) {
      try {
        Deno.statSync(path);
      } catch {
        Deno.writeTextFileSync(path, "");
      }
    }
    await runProfile("audit");
    await runProfile("enforce");
  },
});
