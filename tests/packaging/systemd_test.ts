/**
 * The systemd units of packaging/systemd: systemd-analyze accepts them, their hardening holds what the
 * agent needs (its capability set applies and enforces a real policy; Deno cannot run under
 * MemoryDenyWriteExecute), the health wait of ExecStartPost is bounded, and the timer fires every 30 s.
 */
import assert from "node:assert/strict";
import { DataPlane } from "../../lib/kernel/dataplane.ts";
import { TestBpffs } from "../support/bpffs.ts";
import { cgroup2Root } from "../../lib/kernel/cgroup.ts";
import { rootTest, uniqueName } from "../support/privileged.ts";
import { directive, PACKAGING, parseUnitFile, readUnit, REPO, run, withTempDir } from "./unit_file.ts";

const UNITS = ["aegisbpf.service", "aegisbpf-metrics.service", "aegisbpf-metrics.timer"];
const BINARY = "/usr/bin/aegisbpf";

/** Copies of the units in `dir` whose /usr/bin/aegisbpf is an executable stub in `dir`, for verify. */
async function unitsWithStub(dir: string, edit = (text: string) => text): Promise<string[]> {
  await Deno.writeTextFile(`${dir}/aegisbpf`, "#!/bin/sh\nexit 0\n", { mode: 0o755 });
  return await Promise.all(UNITS.map(async (name) => {
    const text = await Deno.readTextFile(`${PACKAGING}systemd/${name}`);
    await Deno.writeTextFile(`${dir}/${name}`, edit(text.replaceAll(BINARY, `${dir}/aegisbpf`)));
    return `${dir}/${name}`;
  }));
}

Deno.test("systemd-analyze verify accepts the units without a warning", async () => {
  await withTempDir("aegisbpf-units-", async (dir) => {
    const verify = await run("systemd-analyze", ["verify", ...await unitsWithStub(dir)]);
    assert.equal(verify.stdout + verify.stderr, "");
    assert.equal(verify.code, 0);
  });
});

Deno.test("systemd-analyze verify reports a unit it does not accept (the check above can fail)", async () => {
  await withTempDir("aegisbpf-units-", async (dir) => {
    const paths = await unitsWithStub(dir, (text) => text.replace("Type=exec", "Type=exec\nRestartt=always"));
    const verify = await run("systemd-analyze", ["verify", ...paths]);
    assert.match(verify.stderr, /Unknown key 'Restartt'/);
  });
});

Deno.test("systemd-analyze security rates the units' exposure at most medium", async () => {
  await withTempDir("aegisbpf-units-", async (dir) => {
    await unitsWithStub(dir);
    // The agent needs CAP_SYS_ADMIN and the host's filesystem; the metrics writer much less.
    for (const [name, most] of [["aegisbpf.service", 5.5], ["aegisbpf-metrics.service", 4.0]] as const) {
      const result = await run("systemd-analyze", ["security", "--offline=true", `${dir}/${name}`]);
      const level = /Overall exposure level for .*: ([\d.]+)/.exec(result.stdout);
      assert.ok(level, `${name}: no exposure level in: ${result.stdout.slice(-300)}${result.stderr}`);
      assert.ok(Number(level[1]) <= most, `${name}: exposure ${level[1]} above ${most}`);
    }
  });
});

Deno.test("aegisbpf.service runs the agent with only the capabilities it needs and its hardening", () => {
  const unit = readUnit("aegisbpf.service");
  const service = (key: string) => directive(unit, "Service", key);
  assert.deepEqual(service("CapabilityBoundingSet").split(/\s+/).sort(), AGENT_CAPABILITIES.toSorted());
  assert.equal(service("AmbientCapabilities"), "");
  assert.equal(service("ExecStart"), "/usr/bin/aegisbpf $AEGISBPF_OPTS run $AEGISBPF_RUN_ARGS");
  assert.equal(service("EnvironmentFile"), "-/etc/default/aegisbpf");
  assert.equal(service("ExecReload"), "/bin/kill -HUP $MAINPID");
  assert.equal(service("Restart"), "on-failure");
  assert.equal(service("KillSignal"), "SIGTERM");
  assert.equal(service("LimitMEMLOCK"), "infinity");
  assert.equal(service("ProtectSystem"), "strict");
  assert.equal(service("ProtectHome"), "read-only");
  assert.deepEqual(service("ReadWritePaths").split(/\s+/), [
    "/sys/fs/bpf",
    "/etc/aegisbpf",
    "-/var/lib/node_exporter/textfile_collector",
    "-/var/lib/prometheus/node-exporter",
  ]);
  for (const [key, value] of Object.entries(AGENT_HARDENING)) assert.equal(service(key), value, key);
  // Absent on purpose: each would break the agent (see the unit's comments and the tests below).
  for (const key of ["MemoryDenyWriteExecute", "PrivateTmp", "PrivateDevices", "SystemCallFilter", "User"]) {
    assert.equal(unit.get("Service")!.has(key), false, `${key}= must not be set`);
  }
});

const AGENT_CAPABILITIES = [
  "CAP_BPF",
  "CAP_PERFMON",
  "CAP_NET_ADMIN",
  "CAP_SYS_ADMIN",
  "CAP_SYS_PTRACE",
  "CAP_DAC_READ_SEARCH",
  "CAP_KILL",
];

const AGENT_HARDENING = {
  Type: "exec",
  NoNewPrivileges: "yes",
  LockPersonality: "yes",
  RestrictNamespaces: "yes",
  SystemCallArchitectures: "native",
  RuntimeDirectory: "aegisbpf",
  RuntimeDirectoryMode: "0700",
  StateDirectory: "aegisbpf",
  ConfigurationDirectory: "aegisbpf",
  RestartPreventExitStatus: "2 3",
};

Deno.test("the metrics service writes the textfile with `metrics --out`, every 30 s from the timer", async () => {
  const service = readUnit("aegisbpf-metrics.service");
  assert.equal(directive(service, "Service", "Type"), "oneshot");
  assert.equal(
    directive(service, "Service", "ExecStart"),
    "/usr/bin/aegisbpf $AEGISBPF_OPTS metrics --out ${AEGISBPF_TEXTFILE}",
  );
  assert.equal(
    directive(service, "Service", "Environment"),
    "AEGISBPF_TEXTFILE=/var/lib/node_exporter/textfile_collector/aegisbpf.prom",
  );
  const timer = readUnit("aegisbpf-metrics.timer");
  assert.equal(directive(timer, "Timer", "Persistent"), "true");
  assert.equal(directive(timer, "Timer", "AccuracySec"), "1s");
  // systemd's own reading of the calendar expression: elapses 30 s apart.
  const calendar = await run(
    "systemd-analyze",
    ["calendar", "--iterations=4", directive(timer, "Timer", "OnCalendar")],
    { env: { PATH: "/usr/bin:/bin", TZ: "UTC" } },
  );
  assert.equal(calendar.code, 0, calendar.stderr);
  const times = [...calendar.stdout.matchAll(/(?:Next elapse|Iter\. #\d+): \w+ (\S+) (\S+) UTC/g)]
    .map((m) => Date.parse(`${m[1]}T${m[2]}Z`));
  assert.equal(times.length, 4, calendar.stdout);
  for (let i = 1; i < times.length; i++) assert.equal(times[i]! - times[i - 1]!, 30_000);
});

/** ExecStartPost of aegisbpf.service as the shell gets it (systemd turns `$$` into `$`), on `binary`. */
function healthWait(binary: string): string {
  const line = directive(readUnit("aegisbpf.service"), "Service", "ExecStartPost");
  const script = /^\/bin\/sh -c '(.*)'$/.exec(line)?.[1];
  assert.ok(script, `ExecStartPost is not /bin/sh -c '...': ${line}`);
  return script.replaceAll("$$", "$").replaceAll(BINARY, binary);
}

/** A stand-in for aegisbpf that records its arguments and fails its first `failures` calls. */
async function flakyHealth(dir: string, failures: number): Promise<string> {
  const path = `${dir}/aegisbpf`;
  await Deno.writeTextFile(
    path,
    `#!/bin/sh\necho "$*" >>"${dir}/calls"\n` +
      `n=$(wc -l <"${dir}/calls")\n[ "$n" -gt ${failures} ] && exit 0\necho "not healthy: try $n" >&2\nexit 1\n`,
    { mode: 0o755 },
  );
  return path;
}

const HEALTH_ENV = {
  PATH: "/usr/bin:/bin",
  AEGISBPF_OPTS: "--log-format json",
  AEGISBPF_HEALTH_ARGS: "--require-enforce",
};

Deno.test("ExecStartPost waits until `aegisbpf health` passes, with the flags of /etc/default", async () => {
  await withTempDir("aegisbpf-health-", async (dir) => {
    const result = await run("sh", ["-c", healthWait(await flakyHealth(dir, 2))], {
      env: { ...HEALTH_ENV, AEGISBPF_HEALTH_WAIT: "10" },
    });
    assert.equal(result.code, 0, result.stderr);
    const calls = (await Deno.readTextFile(`${dir}/calls`)).trimEnd().split("\n");
    assert.deepEqual(calls, Array(3).fill("--log-format json health --require-enforce"));
  });
});

Deno.test("ExecStartPost gives up after AEGISBPF_HEALTH_WAIT tries and shows health's last answer", async () => {
  await withTempDir("aegisbpf-health-", async (dir) => {
    const started = performance.now();
    const result = await run("sh", ["-c", healthWait(await flakyHealth(dir, 1000))], {
      env: { ...HEALTH_ENV, AEGISBPF_HEALTH_WAIT: "2" },
    });
    assert.equal(result.code, 1);
    assert.equal(result.stderr, "not healthy: try 3\n");
    assert.equal((await Deno.readTextFile(`${dir}/calls`)).trimEnd().split("\n").length, 3);
    assert.ok(performance.now() - started < 5_000);
  });
});

/**
 * Runs `deno eval` under the kernel's MemoryDenyWriteExecute (prctl PR_SET_MDWE, 65, with
 * PR_MDWE_REFUSE_EXEC_GAIN; systemd applies the same rule), or without it; perl-base is always there.
 */
function denoUnderMdwe(mdwe: boolean) {
  const prctl = mdwe ? "syscall(157, 65, 1, 0, 0, 0) == 0 or die qq(prctl PR_SET_MDWE: $!\\n);" : "";
  return run("perl", ["-e", `${prctl} exec @ARGV or die`, Deno.execPath(), "eval", "console.log(6 * 7)"]);
}

Deno.test("Deno aborts under MemoryDenyWriteExecute, so the unit cannot set it", async () => {
  const plain = await denoUnderMdwe(false);
  assert.equal(plain.stdout, "42\n", plain.stderr);
  const denied = await denoUnderMdwe(true);
  assert.doesNotMatch(denied.stderr, /prctl PR_SET_MDWE/, "this kernel has no PR_SET_MDWE (Linux 6.3+)");
  assert.notEqual(denied.code, 0);
  assert.equal(denied.stdout, "");
  assert.match(denied.stderr, /Check failed|panicked/);
});

/** `setpriv` names: CAP_NET_ADMIN -> net_admin. */
const setprivCaps = (caps: string[]) => caps.map((cap) => `+${cap.replace(/^CAP_/, "").toLowerCase()}`);

/** `command` run as root with only `caps` (bounding set, so also permitted and effective). */
const withCapabilities = (caps: string[], command: string[]) => [
  "setpriv",
  `--bounding-set=-all,${setprivCaps(caps).join(",")}`,
  "--inh-caps=-all",
  "--",
  ...command,
];

/**
 * The filesystem aegisbpf.service sees, in a private mount namespace: ProtectSystem=strict (/usr, /etc,
 * /boot read-only), ProtectHome=read-only (/home, /root), ProtectKernelTunables= and ProtectControlGroups=
 * (/sys with every mount under it, cgroupfs included, read-only). The test's bpffs, state and config
 * directories live in /tmp, writable as the unit's ReadWritePaths= are. Then runs the command it is given.
 */
const UNIT_FILESYSTEM = `set -e
for top in /usr /etc /boot /home /root /sys; do
  [ -d "$top" ] || continue
  mountpoint -q "$top" || mount --bind "$top" "$top"
  awk -v top="$top" '$2 == top || index($2, top "/") == 1 { print $2 }' /proc/self/mounts |
    while read -r path; do mount -o remount,bind,ro "$path"; done
done
exec "$@"`;

const inUnitFilesystem = (command: string[]) => [
  "unshare",
  "--mount",
  "--propagation",
  "private",
  "--",
  "sh",
  "-c",
  UNIT_FILESYSTEM,
  "sh",
  ...command,
];

const BIND_PORT = 61853;
const BIND_POLICY = `apiVersion: aegisbpf.io/v1
kind: Policy
metadata: { name: unit-capabilities, version: 1 }
spec:
  mode: enforce
  network:
    bind:
      deny: [{ id: unused-port, port: ${BIND_PORT}, protocol: tcp }]
`;

/**
 * `policy apply` of BIND_POLICY with only `caps`, in the unit's filesystem view, on a private bpffs; and
 * whether the bind was then denied.
 */
async function applyWithCapabilities(
  caps: string[],
): Promise<{ code: number; stderr: string; denied: boolean }> {
  const bpffs = await TestBpffs.mount();
  try {
    return await withTempDir("aegisbpf-caps-", async (dir) => {
      await Deno.mkdir(`${dir}/etc`);
      await Deno.mkdir(`${dir}/state`);
      await Deno.writeTextFile(`${dir}/policy.yaml`, BIND_POLICY);
      try {
        const [command, ...args] = inUnitFilesystem(withCapabilities(caps, [
          Deno.execPath(),
          "run",
          "--allow-all",
          `${REPO}main.ts`,
          "policy",
          "apply",
          `${dir}/policy.yaml`,
        ]));
        const apply = await run(command!, args, {
          env: {
            ...Deno.env.toObject(),
            AEGISBPF_BPFFS: bpffs.path,
            AEGISBPF_CONFIG_DIR: `${dir}/etc`,
            AEGISBPF_STATE_DIR: `${dir}/state`,
          },
        });
        let denied = false;
        try {
          Deno.listen({ hostname: "127.0.0.1", port: BIND_PORT }).close();
        } catch (error) {
          if (!(error instanceof Deno.errors.PermissionDenied)) throw error;
          denied = true;
        }
        return { code: apply.code, stderr: apply.stderr, denied };
      } finally {
        DataPlane.detach(bpffs.path);
      }
    });
  } finally {
    await bpffs.unmount();
  }
}

rootTest(
  "[root] with only aegisbpf.service's capabilities and read-only filesystem, policy apply enforces",
  async () => {
    const unit = directive(readUnit("aegisbpf.service"), "Service", "CapabilityBoundingSet").split(/\s+/);
    const applied = await applyWithCapabilities(unit);
    assert.equal(applied.code, 0, applied.stderr);
    assert.equal(applied.denied, true, "the bind of the denied port went through");
    // The control: without CAP_BPF and CAP_SYS_ADMIN the same apply must fail, or setpriv limited nothing.
    const without = await applyWithCapabilities(
      unit.filter((cap) => cap !== "CAP_BPF" && cap !== "CAP_SYS_ADMIN"),
    );
    assert.notEqual(without.code, 0);
    assert.match(without.stderr, /EPERM|not permitted/);
    assert.equal(without.denied, false);
  },
);

rootTest(
  "[root] the emulated unit filesystem is read-only where the unit's is (the test above can fail)",
  async () => {
    const cgroup = `${cgroup2Root()}/${uniqueName("aegisbpf-pkg-")}`;
    const probes = ["/usr/aegisbpf-rw-probe", "/etc/aegisbpf-rw-probe", cgroup];
    try {
      const [command, ...args] = inUnitFilesystem([
        "sh",
        "-c",
        'for p in "$@"; do mkdir "$p" 2>/dev/null && echo "$p"; done; true',
        "sh",
        ...probes,
      ]);
      const probe = await run(command!, args);
      assert.equal(probe.code, 0, probe.stderr);
      assert.equal(probe.stdout, "", "writable in the emulated unit filesystem");
    } finally {
      for (const path of probes) await Deno.remove(path).catch(() => {});
    }
  },
);

rootTest(
  "[root] aegisbpf.service's capabilities read /proc/PID/exe of a process with every capability",
  async () => {
    // PID 1 holds every capability; a process with fewer needs CAP_SYS_PTRACE to see its executable, which
    // is in the survival set. A root `sleep` stands in for PID 1 (not readable at all on some sandboxes).
    const unit = directive(readUnit("aegisbpf.service"), "Service", "CapabilityBoundingSet").split(/\s+/);
    const sleeper = new Deno.Command("sleep", { args: ["30"], stdout: "null", stderr: "null" }).spawn();
    try {
      const exe = `/proc/${sleeper.pid}/exe`;
      const seen = await run("setpriv", withCapabilities(unit, ["readlink", exe]).slice(1));
      assert.equal(seen.stdout.trim(), Deno.realPathSync("/usr/bin/sleep"), seen.stderr);
      const blind = await run(
        "setpriv",
        withCapabilities(unit.filter((cap) => cap !== "CAP_SYS_PTRACE"), ["readlink", exe]).slice(1),
      );
      assert.notEqual(blind.code, 0);
    } finally {
      sleeper.kill();
      await sleeper.status;
    }
  },
);

Deno.test("parseUnitFile() keeps repeated directives and refuses a line that is not KEY=VALUE", () => {
  const unit = parseUnitFile("[Service]\n# c\nA=1\nA=2\n\n[Install]\nWantedBy=x\n");
  assert.deepEqual(unit.get("Service")?.get("A"), ["1", "2"]);
  assert.throws(() => parseUnitFile("[Service]\nnot a directive\n"), /line 2 is not KEY=VALUE/);
});

Deno.test("aegisbpf.default sets every variable the units read, and sh reads it as systemd does", async () => {
  const path = `${PACKAGING}systemd/aegisbpf.default`;
  const text = await Deno.readTextFile(path);
  const used = new Set(
    UNITS.flatMap((name) =>
      [
        ...Deno.readTextFileSync(`${PACKAGING}systemd/${name}`).matchAll(/\$\{?(AEGISBPF_[A-Z_]+)/g),
      ].map((m) => m[1]!)
    ),
  );
  const assigned = [...text.matchAll(/^(AEGISBPF_[A-Z_]+)=/gm)].map((m) => m[1]!);
  assert.deepEqual([...used].sort(), [...assigned].sort());
  // Values are plain or double-quoted without expansions, which systemd's EnvironmentFile= and sh agree on.
  for (const line of text.split("\n").filter((line) => /^[A-Z]/.test(line))) {
    assert.match(line, /^[A-Z_]+=("[^"$`\\]*"|[^"'$`\\\s]*)$/, line);
  }
  const sourced = await run("sh", [
    "-c",
    `. "${path}" && printf '%s|' "$AEGISBPF_OPTS" "$AEGISBPF_HEALTH_WAIT"`,
  ]);
  assert.equal(sourced.stdout, "--log-format json|60|");
});
