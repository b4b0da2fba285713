/**
 * Rules that name a program (`exe`, `children`) and the egress default, on the host's cgroup hooks: the
 * kernel knows the program by the inode of the task's executable (bpf/task_subject.bpf.h). One plane for
 * the whole file: each case applies its own policy.
 */
import assert from "node:assert/strict";
import { DECISION, EVENT, HOOK } from "../../ffi/mod.ts";
import { sweepConnections } from "../../lib/kernel/connections.ts";
import type { DataPlane } from "../../lib/kernel/dataplane.ts";
import { ResolveError, resolvePlan } from "../../lib/kernel/resolve.ts";
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
        assert.equal((events[0]?.flags ?? 0) & EVENT.EXE, EVENT.EXE, "and says its inode is the program's");
        assert.equal(await outcome(cgroup, curl(CURL, "127.0.0.1", port)), "connected", "other destinations");
        assert.equal(await outcome(cgroup, python("127.0.0.2", port)), "connected", "python3 is not curl");
        // A copy is another inode: another program, which the rule does not name.
        assert.equal(await outcome(cgroup, curl(copy, "127.0.0.2", port)), "connected", "a copy is not curl");
        // Run through the dynamic loader, the program is the loader (the kernel's exe_file): a known limit.
        assert.equal(
          await outcome(
            cgroup,
            curl(`/lib64/ld-linux-x86-64.so.2 ${CURL}`, "127.0.0.2", port).replace(/^'([^']*)'/, "$1"),
          ),
          "connected",
          "ld.so CURL is ld.so",
        );
        // A symlink or a hard link is the same inode: the same program.
        Deno.symlinkSync(CURL, `${dir}/curl-symlink`);
        assert.equal(await outcome(cgroup, curl(`${dir}/curl-symlink`, "127.0.0.2", port)), "EPERM");
        Deno.linkSync(copy, `${dir}/curl-link`);
        await apply(
          plane,
          "audit",
          `  network:\n    egress:\n      deny:\n        - { id: no-copy, cidr: 127.0.0.2/32, exe: ${copy} }\n`,
        );
        drain(plane);
        assert.equal(
          await outcome(cgroup, curl(`${dir}/curl-link`, "127.0.0.2", port)),
          "connected",
          "audit",
        );
        const audited = drain(plane);
        assert.deepEqual(audited.map((e) => [e.hook, e.ruleId, e.decision]), [[HOOK.CONNECT, 1, 1]]);
        assert.equal(
          audited[0]?.ino,
          BigInt(Deno.statSync(copy).ino!),
          "a hard link of the copy is the copy",
        );
        assert.equal(await outcome(cgroup, curl(CURL, "127.0.0.2", port)), "connected");
        assert.deepEqual(drain(plane), [], "curl is not the copy");

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

/** A python3 process started now, in `cgroup`, that connects to host:port when told to and prints how it went. */
function laterClient(cgroup: TestCgroup, host: string, port: number) {
  const code = "import socket, sys\nsys.stdin.readline()\n" +
    `try:\n  socket.create_connection(("${host}", ${port}), 5)\n  print("connected")\n` +
    `except PermissionError:\n  print("EPERM")\nexcept OSError as e:\n  print(e)\n`;
  const child = new Deno.Command("bash", {
    args: ["-c", `echo $$ > '${cgroup.path}/cgroup.procs' && exec '${PYTHON}' -c '${code}'`],
    stdin: "piped",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  return {
    async go(): Promise<string> {
      const writer = child.stdin.getWriter();
      await writer.write(new TextEncoder().encode("go\n"));
      await writer.close();
      const { stdout } = await child.output();
      return new TextDecoder().decode(stdout).trim();
    },
  };
}

rootTest(
  "[root] subjects: a process started before apply, users and bind entries with exe, audit and enforce",
  async () => {
    await withPlane({ areas: ["egress", "bind"] }, async ({ plane, cgroup, server }) => {
      const port = server.port;
      const early = laterClient(cgroup, "127.0.0.2", port);
      await new Promise((resolve) => setTimeout(resolve, 300)); // python has started and waits
      await apply(
        plane,
        "enforce",
        `  network:\n    egress:\n      deny:\n        - { id: no-python, cidr: 127.0.0.2/32, exe: ${PYTHON} }\n`,
      );
      assert.equal(await early.go(), "EPERM", "a process that started before apply is its program");
      drain(plane);

      for (const mode of ["enforce", "audit"] as const) {
        await apply(
          plane,
          mode,
          "  network:\n    egress:\n      users:\n" +
            `        - { id: curl-root, uid: 0, allowPorts: [1], exe: ${CURL} }\n` +
            `    bind:\n      deny:\n        - { id: py-bind, port: 18081, exe: ${PYTHON} }\n`,
        );
        const denied = mode === "enforce" ? "EPERM" : "connected";
        assert.equal(
          await outcome(cgroup, curl(CURL, "127.0.0.1", port)),
          denied,
          `${mode}: curl's users entry`,
        );
        assert.equal(
          await outcome(cgroup, python("127.0.0.1", port)),
          "connected",
          `${mode}: not for python3`,
        );
        const bind = (exe: string) =>
          `'${exe}' -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 18081)); print('connected')"`;
        assert.equal(await outcome(cgroup, bind(PYTHON)), denied, `${mode}: python3 may not bind 18081`);
        const events = drain(plane);
        assert.deepEqual(
          events.map((event) => [event.hook, event.ruleId, event.mode]),
          [[HOOK.CONNECT, 1, mode === "enforce" ? 1 : 0], [HOOK.BIND, 2, mode === "enforce" ? 1 : 0]],
        );
        assert.equal(events[1]?.ino, BigInt(Deno.statSync(PYTHON).ino!), "the bind event names python3");
      }
    });
  },
);

/** This host's first global IPv4 address: local, so a connect to it stays on the machine. */
function hostAddress(): string {
  const text = new TextDecoder().decode(
    new Deno.Command("ip", { args: ["-4", "-o", "addr", "show", "scope", "global"] }).outputSync().stdout,
  );
  const found = /inet (\d+\.\d+\.\d+\.\d+)\//.exec(text)?.[1];
  if (!found) throw new Error("this test needs a global IPv4 address on the host (see ip addr)");
  return found;
}

rootTest(
  "[root] egress default deny in a scope: only allowed destinations connect, loopback works, the sweep lists old connections",
  async () => {
    await withPlane({ areas: ["egress", "bind"] }, async ({ plane, cgroup, server }) => {
      const host = hostAddress();
      const other = Deno.listen({ hostname: "0.0.0.0", port: 0 });
      const otherPort = (other.addr as Deno.NetAddr).port;
      const held: Deno.Conn[] = [];
      const accepting = (async () => {
        try {
          for await (const connection of other) held.push(connection);
        } catch {
          // closed
        }
      })();
      // Made before apply, to a destination the allowlist will not cover: held open by the python client.
      const old = new Deno.Command("bash", {
        args: [
          "-c",
          `echo $$ > '${cgroup.path}/cgroup.procs' && exec 3<>/dev/tcp/${host}/${otherPort} && echo connected && read`,
        ],
        stdin: "piped",
        stdout: "piped",
        stderr: "null",
      }).spawn();
      const reader = old.stdout.pipeThrough(new TextDecoderStream()).getReader();
      try {
        assert.equal((await reader.read()).value?.trim(), "connected");
        for (const mode of ["audit", "enforce"] as const) {
          await apply(
            plane,
            mode,
            `  scope: { cgroups: [${cgroup.relativePath}] }\n  network:\n    egress:\n      default: deny\n` +
              `      allow:\n        - { id: to-host, cidr: ${host}/32, port: ${server.port} }\n`,
          );
          drain(plane);
          const denied = mode === "enforce" ? "EPERM" : "connected";
          assert.equal(await outcome(cgroup, python(host, server.port)), "connected", `${mode}: allowed`);
          assert.equal(await outcome(cgroup, python(host, otherPort)), denied, `${mode}: no allow covers it`);
          assert.equal(
            await outcome(cgroup, python("127.0.0.1", otherPort)),
            "connected",
            `${mode}: loopback`,
          );
          const events = drain(plane);
          assert.equal(events.length, 1, `${mode}: one event`);
          const defaultRule = 2; // after to-host
          assert.equal(events[0]?.ruleId, defaultRule, "reported as network.egress.default");
          assert.equal(events[0]?.dport, otherPort);
          const listed = sweepConnections(plane.pinDir, { close: false }).connections;
          assert.deepEqual(
            listed.map((c) => `${c.daddr}:${c.dport} rule ${c.ruleId}`),
            [`${host}:${otherPort} rule ${defaultRule}`],
            `${mode}: the connection made before apply is listed`,
          );
        }
      } finally {
        old.kill("SIGKILL");
        await old.status;
        other.close();
        for (const connection of held) connection.close();
        await accepting;
      }
    });
  },
);

rootTest(
  "[root] subjects: a missing exe fails the apply unless optional, and two paths of one file are refused",
  () => {
    const dir = Deno.makeTempDirSync({ prefix: "aegisbpf-subject-" });
    try {
      const plan = (entries: string) =>
        compilePolicy(
          parsePolicy(
            `apiVersion: aegisbpf.io/v1\nkind: Policy\nmetadata: { name: s, version: 1 }\nspec:\n` +
              `  network:\n    egress:\n      deny:\n${entries}`,
            "s.yaml",
          ),
        );
      assert.throws(
        () => resolvePlan(plan(`        - { id: gone, cidr: 10.0.0.0/8, exe: ${dir}/gone }\n`)),
        (error: Error) =>
          error instanceof ResolveError && /Rule gone: exe .*gone does not exist/.test(error.message),
      );
      const warnings: string[] = [];
      const optional = resolvePlan(
        plan(`        - { id: maybe, cidr: 10.0.0.0/8, exe: ${dir}/gone, optional: true }\n`),
        { warn: (message) => warnings.push(message) },
      );
      assert.deepEqual(optional.subjects, []);
      assert.match(
        warnings[0] ?? "",
        /Rule maybe: exe .*gone does not exist; its rules are skipped \(optional\)/,
      );
      Deno.copyFileSync(CURL, `${dir}/a`);
      Deno.linkSync(`${dir}/a`, `${dir}/b`);
      assert.throws(
        () =>
          resolvePlan(
            plan(
              `        - { id: one, cidr: 10.0.0.0/8, exe: ${dir}/a }\n` +
                `        - { id: two, cidr: 10.1.0.0/16, exe: ${dir}/b }\n`,
            ),
          ),
        (error: Error) => error instanceof ResolveError && /is the same file as/.test(error.message),
      );
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
);

/** prctl(PR_SET_MM, op, fd of /bin/true) from python3 in the cgroup: "errno N" (0 when it succeeded). */
const prctlSetExe = (op: number) =>
  `'${PYTHON}' -c "import ctypes, os; libc = ctypes.CDLL(None, use_errno=True); ` +
  `fd = os.open('/bin/true', os.O_RDONLY); ` +
  `print('errno', 0 if libc.prctl(35, ${op}, fd, 0, 0) == 0 else ctypes.get_errno())"`;

rootTest(
  "[root] subjects: where BPF-LSM does not load, a task changing its executable (prctl PR_SET_MM) is reported, not refused",
  async () => {
    await withPlane({ areas: ["egress", "bind"] }, async ({ plane, cgroup }) => {
      const run = async (op: number) => (await cgroup.runBash(prctlSetExe(op))).stdout.trim();
      // No rule names a program: no guard, no report; what the kernel answers itself (EBUSY: python3's exe is
      // mapped; EPERM where the host withholds CAP_SYS_RESOURCE; EINVAL for a NULL map) is the baseline.
      await apply(plane, "enforce", `  network:\n    bind:\n      deny:\n        - { port: 9 }\n`);
      drain(plane);
      const baseline = [await run(13), await run(14)];
      assert.ok(baseline.every((line) => /^errno [1-9]/.test(line)), `the kernel refuses both: ${baseline}`);
      assert.deepEqual(drain(plane).filter((e) => e.hook === HOOK.IDENTITY), []);
      await apply(
        plane,
        "enforce",
        `  network:\n    bind:\n      deny:\n        - { port: 9, exe: ${CURL} }\n`,
      );
      drain(plane);
      assert.deepEqual([await run(13), await run(14)], baseline, "the tracepoint reports, it cannot refuse");
      const events = drain(plane).filter((e) => e.hook === HOOK.IDENTITY);
      assert.deepEqual(events.map((e) => [e.decision, e.op]), [[DECISION.AUDIT, 13], [DECISION.AUDIT, 14]]);
      assert.ok(
        events.every((e) => e.ino === BigInt(Deno.statSync(PYTHON).ino!) && (e.flags & EVENT.EXE) !== 0),
        "the events name python3",
      );
      assert.ok(events.every((e) => e.ruleId === 2), "rule exe.identity, numbered after the policy's rules");
    });
  },
);
