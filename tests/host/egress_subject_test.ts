/**
 * Rules that name a program (`exe`, `children`) and the egress default, on the host's cgroup hooks: the
 * kernel knows the program by the inode of the task's executable (bpf/task_subject.bpf.h). One plane for
 * the whole file: each case applies its own policy.
 */
import assert from "node:assert/strict";
import { HOOK } from "../../ffi/mod.ts";
import type { DataPlane } from "../../lib/kernel/dataplane.ts";
import { resolvePlan } from "../../lib/kernel/resolve.ts";
import { compilePolicy } from "../../lib/policy/compile.ts";
import { parsePolicy } from "../../lib/policy/parse.ts";
import type { TestCgroup } from "../support/cgroup.ts";
import { drain, withPlane } from "../support/plane.ts";
import { rootTest } from "../support/privileged.ts";

const CURL = "/usr/bin/curl";
/** The interpreter itself, not pyenv's shim script (a shim would make bash the program). */
const PYTHON = Deno.realPathSync("/usr/bin/python3");

function apply(plane: DataPlane, mode: "enforce" | "audit", spec: string): Promise<unknown> {
  const text = `apiVersion: aegisbpf.io/v1\nkind: Policy\nmetadata: { name: subjects, version: 1 }\n` +
    `spec:\n  mode: ${mode}\n${spec}`;
  return plane.apply(resolvePlan(compilePolicy(parsePolicy(text, "subjects.yaml"))));
}

/** What a connect from `script` (run by bash inside the cgroup) met: "connected", "EPERM" or its error. */
async function outcome(cgroup: TestCgroup, script: string): Promise<string> {
  const result = await cgroup.runBash(script);
  const text = result.stdout + result.stderr;
  if (/Operation not permitted|PermissionError/.test(text)) return "EPERM";
  if (/connected|Empty reply from server|Recv failure/.test(text)) return "connected";
  return text.trim() || `exit ${result.code}`;
}

const curl = (exe: string, host: string, port: number) =>
  `'${exe}' -sSv --max-time 5 http://${host}:${port}/ -o /dev/null; true`;
const python = (host: string, port: number) =>
  `'${PYTHON}' -c "import socket; socket.create_connection(('${host}', ${port}), 5); print('connected')"`;

rootTest(
  "[root] subjects: an exe rule denies curl and lets python3 connect, a copy is another program, a script is its interpreter, children: true follows sh -c",
  async () => {
    await withPlane({ areas: ["egress", "bind"] }, async ({ plane, cgroup, server }) => {
      const dir = Deno.makeTempDirSync({ prefix: "aegisbpf-subject-" });
      try {
        const copy = `${dir}/curl-copy`;
        Deno.copyFileSync(CURL, copy);
        Deno.chmodSync(copy, 0o755);
        const port = server.port;
        await apply(
          plane,
          "enforce",
          `  network:\n    egress:\n      deny:\n        - { id: no-curl, cidr: 127.0.0.2/32, exe: ${CURL} }\n`,
        );
        assert.equal(await outcome(cgroup, curl(CURL, "127.0.0.2", port)), "EPERM", "curl is denied");
        const events = drain(plane);
        assert.equal(events.length, 1);
        assert.equal(events[0]?.hook, HOOK.CONNECT);
        assert.equal(events[0]?.ruleId, 1);
        const exe = Deno.statSync(CURL);
        assert.equal(events[0]?.ino, BigInt(exe.ino!), "the event names the program: its exe's inode");
        assert.equal(await outcome(cgroup, curl(CURL, "127.0.0.1", port)), "connected", "other destinations");
        assert.equal(await outcome(cgroup, python("127.0.0.2", port)), "connected", "python3 is not curl");
        // A copy is another inode: another program, which the rule does not name.
        assert.equal(await outcome(cgroup, curl(copy, "127.0.0.2", port)), "connected", "a copy is not curl");
        // A hard link or a symlink is the same inode: the same program.
        Deno.linkSync(copy, `${dir}/curl-link`);
        Deno.symlinkSync(CURL, `${dir}/curl-symlink`);
        assert.equal(await outcome(cgroup, curl(`${dir}/curl-symlink`, "127.0.0.2", port)), "EPERM");

        // A script is the interpreter that runs it; children: true covers what the program starts.
        const script = `${dir}/client.py`;
        Deno.writeTextFileSync(
          script,
          `#!${PYTHON}\nimport socket, sys\nsocket.create_connection(("127.0.0.2", ${port}), 5)\nprint("connected")\n`,
        );
        Deno.chmodSync(script, 0o755);
        // The launcher: a copy of dash, so that no shell around the test run is its ancestor by chance.
        const launcher = `${dir}/launcher`;
        Deno.copyFileSync("/usr/bin/dash", launcher);
        Deno.chmodSync(launcher, 0o755);
        await apply(
          plane,
          "enforce",
          `  network:\n    egress:\n      deny:\n        - { id: no-python, cidr: 127.0.0.2/32, exe: ${PYTHON} }\n` +
            `        - { id: no-launched, cidr: 127.0.0.3/32, exe: ${launcher}, children: true }\n`,
        );
        assert.equal(await outcome(cgroup, `'${script}'`), "EPERM", "a script run by python3 is python3");
        assert.equal(await outcome(cgroup, curl(CURL, "127.0.0.2", port)), "connected");
        const launched = (command: string) => `'${launcher}' -c "${command}"`;
        assert.equal(await outcome(cgroup, launched(curl(CURL, "127.0.0.3", port))), "EPERM", "a child");
        assert.equal(
          await outcome(cgroup, launched(`sh -c '${curl(CURL, "127.0.0.3", port).replaceAll("'", "")}'`)),
          "EPERM",
          "a grandchild, through sh -c",
        );
        assert.equal(await outcome(cgroup, curl(CURL, "127.0.0.3", port)), "connected", "not launched");
        // A launcher that execs curl is curl from then on, a child of bash: not a child of the launcher.
        assert.equal(
          await outcome(cgroup, launched(`exec ${curl(CURL, "127.0.0.3", port).replace("; true", "")}`)),
          "connected",
        );
        drain(plane);
      } finally {
        Deno.removeSync(dir, { recursive: true });
      }
    });
  },
);
