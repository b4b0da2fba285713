/**
 * scripts/build-deb.sh: the .deb builds in both forms; dpkg-deb shows the package, the units, the
 * conffile and the launcher; the source form's launcher runs the extracted package with the system's Deno,
 * with no network, and writes nothing into it; maintainer scripts never enable or start the agent.
 */
import assert from "node:assert/strict";
import { VERSION } from "../../lib/version.ts";
import { listeningTcpPorts, signalIgnored } from "../support/listeners.ts";
import { rootTest } from "../support/privileged.ts";
import { REPO, run, withTempDir } from "./unit_file.ts";

const BUILD = `${REPO}scripts/build-deb.sh`;
const DEB_NAME = `aegisbpf_${VERSION}_amd64.deb`;

/** `dpkg-deb --contents` as path -> mode string (drwx------ ...), paths without the leading "./". */
async function contents(deb: string): Promise<Map<string, string>> {
  const listing = await run("dpkg-deb", ["--contents", deb]);
  assert.equal(listing.code, 0, listing.stderr);
  return new Map(
    listing.stdout.trimEnd().split("\n").map((line) => {
      const fields = line.split(/\s+/);
      assert.equal(fields[1], "root/root", `not owned by root: ${line}`);
      return [fields[5]!.replace(/^\.\//, "").replace(/\/$/, ""), fields[0]!];
    }),
  );
}

async function field(deb: string, name: string): Promise<string> {
  const result = await run("dpkg-deb", ["--field", deb, name]);
  assert.equal(result.code, 0, result.stderr);
  return result.stdout.trim();
}

const COMMON_FILES: [string, string][] = [
  ["usr/bin/aegisbpf", "-rwxr-xr-x"],
  ["usr/lib/systemd/system/aegisbpf.service", "-rw-r--r--"],
  ["usr/lib/systemd/system/aegisbpf-metrics.service", "-rw-r--r--"],
  ["usr/lib/systemd/system/aegisbpf-metrics.timer", "-rw-r--r--"],
  ["etc/default/aegisbpf", "-rw-r--r--"],
  ["etc/aegisbpf", "drwx------"],
  ["usr/share/doc/aegisbpf/runbooks/README.md", "-rw-r--r--"],
  ["usr/share/doc/aegisbpf/runbooks/break-glass.md", "-rw-r--r--"],
  ["usr/share/doc/aegisbpf/runbooks/learn.md", "-rw-r--r--"],
  ["usr/share/doc/aegisbpf/examples/kubernetes/base/agent/daemonset.yaml", "-rw-r--r--"],
  ["usr/share/doc/aegisbpf/examples/kubernetes/overlays/canary/kustomization.yaml", "-rw-r--r--"],
  ["usr/share/doc/aegisbpf/aegisbpf.cdx.json", "-rw-r--r--"],
  ["usr/share/bash-completion/completions/aegisbpf", "-rw-r--r--"],
  ["usr/share/man/man1/aegisbpf.1.gz", "-rw-r--r--"],
  ["usr/share/doc/aegisbpf/policy.md", "-rw-r--r--"],
  ["usr/share/doc/aegisbpf/api.md", "-rw-r--r--"],
  ["usr/share/doc/aegisbpf/events.md", "-rw-r--r--"],
  ["usr/share/doc/aegisbpf/schema/event.schema.json", "-rw-r--r--"],
  ["usr/libexec/aegisbpf/dpkg-hook", "-rwxr-xr-x"],
];

function assertCommon(files: Map<string, string>): void {
  for (const [path, mode] of COMMON_FILES) assert.equal(files.get(path), mode, path);
}

const SIGUSR1 = 10;

rootTest(
  "[root] build-deb.sh --source builds a .deb whose launcher runs the extracted package offline",
  async () => {
    await withTempDir("aegisbpf-deb-", async (dir) => {
      const built = await run(BUILD, ["--source", "--out", dir]);
      assert.equal(built.code, 0, built.stderr);
      const deb = `${dir}/${DEB_NAME}`;
      assert.equal(built.stdout.trim(), deb);

      const info = await run("dpkg-deb", ["--info", deb]);
      assert.equal(info.code, 0, info.stderr);
      assert.match(info.stdout, /^ Package: aegisbpf$/m);
      assert.match(info.stdout, new RegExp(`^ Version: ${VERSION.replaceAll(".", "\\.")}$`, "m"));
      assert.match(info.stdout, /^ Architecture: amd64$/m);
      assert.equal(await field(deb, "Depends"), "libbpf1, libc6");
      const description = await field(deb, "Description");
      assert.match(description, /source tree in \/usr\/lib\/aegisbpf/);
      assert.match(description, /launcher that runs it with the system's\s+Deno 2/);
      assert.match(description, /neither enabled nor started/);

      const files = await contents(deb);
      assertCommon(files);
      for (const path of ["main.ts", "deno.json", "deno.lock", "bpf/build/aegis.bpf.o", "lib/version.ts"]) {
        assert.ok(files.has(`usr/lib/aegisbpf/${path}`), path);
      }
      for (const name of ["yaml", "zod", "hono", "@noble/ed25519"]) {
        assert.match(
          files.get(`usr/lib/aegisbpf/node_modules/${name}`) ?? "",
          /^l/,
          `npm ${name} not vendored`,
        );
      }
      const tests = [...files.keys()].filter((path) => path.endsWith("_test.ts"));
      assert.deepEqual(tests, []);

      const root = `${dir}/root`;
      const extract = await run("dpkg-deb", ["-x", deb, root]);
      assert.equal(extract.code, 0, extract.stderr);
      const control = `${dir}/control`;
      assert.equal((await run("dpkg-deb", ["-e", deb, control])).code, 0);
      assert.equal((await Deno.readTextFile(`${control}/conffiles`)).trim(), "/etc/default/aegisbpf");
      assert.deepEqual(
        await Deno.readTextFile(`${root}/usr/lib/systemd/system/aegisbpf.service`),
        await Deno.readTextFile(`${REPO}packaging/systemd/aegisbpf.service`),
      );

      // No network (a fresh network namespace) and a DENO_DIR with nothing in it: all it needs is shipped.
      const emptyDenoDir = `${dir}/deno-dir`;
      const launch = (args: string[], env: Record<string, string> = {}) =>
        run("unshare", ["--net", "--", `${root}/usr/bin/aegisbpf`, ...args], {
          env: { PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin", DENO_DIR: emptyDenoDir, ...env },
          cwd: "/",
        });
      const version = await launch(["version"]);
      assert.equal(version.code, 0, version.stderr);
      assert.match(version.stdout, new RegExp(`^aegisbpf +${VERSION.replaceAll(".", "\\.")}$`, "m"));
      // YAML and zod from the shipped node_modules; exit codes pass through the launcher.
      await Deno.writeTextFile(`${dir}/bad.yaml`, "apiVersion: aegisbpf.io/v1\nkind: Policy\n");
      const invalid = await launch(["policy", "validate", `${dir}/bad.yaml`]);
      assert.equal(invalid.code, 2);
      assert.match(invalid.stdout + invalid.stderr, /bad\.yaml:\d+:\d+: error: /);
      const noDeno = await launch(["version"], { AEGISBPF_DENO: `${dir}/missing/deno` });
      assert.equal(noDeno.code, 1);
      assert.equal(
        noDeno.stderr,
        `aegisbpf: error: AEGISBPF_DENO=${dir}/missing/deno is not an executable file\n`,
      );

      // The launcher's process ignores SIGUSR1: Deno's inspector never opens (tests/host/api_flood_test.ts).
      const follow = new Deno.Command("unshare", {
        args: ["--net", "--", `${root}/usr/bin/aegisbpf`, "events", "--follow"],
        env: {
          PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
          DENO_DIR: emptyDenoDir,
          AEGISBPF_STATE_DIR: `${dir}/state`,
          AEGISBPF_CONFIG_DIR: `${dir}/etc`,
        },
        cwd: "/",
        stdout: "null",
        stderr: "piped",
      }).spawn();
      try {
        await new Promise((resolve) => setTimeout(resolve, 1500)); // past the runtime's 500 ms grace
        assert.ok(signalIgnored(follow.pid, SIGUSR1), "the packaged process ignores SIGUSR1");
        Deno.kill(follow.pid, "SIGUSR1");
        await new Promise((resolve) => setTimeout(resolve, 1000));
        assert.deepEqual(listeningTcpPorts(follow.pid), [], "no inspector listening");
        const state = await Deno.readTextFile(`/proc/${follow.pid}/status`);
        assert.match(state, /^State:\s+[RS]/m, "still following events");
      } finally {
        follow.kill("SIGKILL");
        await follow.output();
      }

      // md5sums lists every shipped file, and running the package changed none of them.
      const check = await run("md5sum", ["--check", "--quiet", `${control}/md5sums`], { cwd: root });
      assert.equal(check.code, 0, check.stdout + check.stderr);
      const shipped = (await Deno.readTextFile(`${control}/md5sums`)).trimEnd().split("\n").length;
      const found = await run("find", [root, "-type", "f"]);
      assert.equal(found.stdout.trimEnd().split("\n").length, shipped, "files appeared in the package tree");
    });
  },
);

Deno.test("build-deb.sh --binary ships that binary as /usr/bin/aegisbpf and no source tree", async () => {
  await withTempDir("aegisbpf-deb-", async (dir) => {
    // A stand-in for the compiled binary: the script runs it for the shell completions.
    const binary = `${dir}/aegisbpf`;
    await Deno.writeTextFile(binary, '#!/bin/sh\necho "# completions for $2"\n', { mode: 0o755 });
    const built = await run(BUILD, ["--binary", binary, "--out", `${dir}/out`]);
    assert.equal(built.code, 0, built.stderr);
    const deb = `${dir}/out/${DEB_NAME}`;
    const files = await contents(deb);
    assertCommon(files);
    assert.equal([...files.keys()].some((path) => path.startsWith("usr/lib/aegisbpf")), false);
    assert.equal(await field(deb, "Depends"), "libbpf1, libc6");
    assert.match(await field(deb, "Description"), /single binary of `deno task compile`/);
    const root = `${dir}/root`;
    assert.equal((await run("dpkg-deb", ["-x", deb, root])).code, 0);
    assert.equal(await Deno.readTextFile(`${root}/usr/bin/aegisbpf`), await Deno.readTextFile(binary));
    assert.equal(
      await Deno.readTextFile(`${root}/usr/share/zsh/vendor-completions/_aegisbpf`),
      "# completions for zsh\n",
    );
    const man = await run("sh", ["-c", 'gzip -dc "$0"', `${root}/usr/share/man/man1/aegisbpf.1.gz`]);
    assert.equal(man.stdout, await Deno.readTextFile(`${REPO}docs/aegisbpf.1`), "the installed man page");
  });
});

/** The single binary, where `deno task compile` could make it (CI compiles only with DENORT_BIN set). */
const COMPILED = `${REPO}dist/aegisbpf`;
const compiled = (() => {
  try {
    return Deno.statSync(COMPILED).isFile;
  } catch {
    return false;
  }
})();

// Registered only where there is a binary to ship; the --binary test above covers the script everywhere.
if (compiled) {
  Deno.test("build-deb.sh ships dist/aegisbpf by default, and the packaged binary runs", async () => {
    await withTempDir("aegisbpf-deb-", async (dir) => {
      const built = await run(BUILD, ["--out", dir]);
      assert.equal(built.code, 0, built.stderr);
      const deb = `${dir}/${DEB_NAME}`;
      assert.match(await field(deb, "Description"), /single binary of `deno task compile`/);
      assert.equal((await run("dpkg-deb", ["-x", deb, `${dir}/root`])).code, 0);
      const version = await run(`${dir}/root/usr/bin/aegisbpf`, ["version"], { cwd: "/" });
      assert.equal(version.code, 0, version.stderr);
      assert.match(version.stdout, new RegExp(`^aegisbpf +${VERSION.replaceAll(".", "\\.")}$`, "m"));
    });
  });
}

/** dpkg acting on a private root (its own database), running the maintainer scripts with DPKG_ROOT set. */
function dpkgIn(root: string, ...args: string[]) {
  return run("dpkg", [
    `--root=${root}`,
    "--force-script-chrootless",
    "--force-not-root",
    "--force-depends",
    "--log=/dev/null",
    ...args,
  ]);
}

async function mode(path: string): Promise<number | undefined> {
  try {
    return (await Deno.stat(path)).mode! & 0o7777;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
}

Deno.test("dpkg installs, upgrades, removes and purges the package in a private root", async () => {
  await withTempDir("aegisbpf-dpkg-", async (dir) => {
    const binary = `${dir}/aegisbpf`;
    await Deno.writeTextFile(binary, "#!/bin/sh\necho stub\n", { mode: 0o755 });
    assert.equal((await run(BUILD, ["--binary", binary, "--out", dir])).code, 0);
    const deb = `${dir}/${DEB_NAME}`;
    const root = `${dir}/root`;
    for (const sub of ["info", "updates", "triggers"]) {
      await Deno.mkdir(`${root}/var/lib/dpkg/${sub}`, { recursive: true });
    }
    for (const file of ["status", "available"]) await Deno.writeTextFile(`${root}/var/lib/dpkg/${file}`, "");

    const install = await dpkgIn(root, "-i", deb);
    assert.equal(install.code, 0, install.stderr);
    assert.match(install.stdout, /installed, not started/);
    assert.equal(await mode(`${root}/etc/aegisbpf`), 0o700);
    assert.equal(await mode(`${root}/var/lib/aegisbpf`), 0o700);
    assert.equal(await mode(`${root}/usr/bin/aegisbpf`), 0o755);
    const status = await run("dpkg", [`--root=${root}`, "-s", "aegisbpf"]);
    assert.match(status.stdout, /^Status: install ok installed$/m);

    // The admin's settings and files survive an upgrade (a conffile) and a remove; a purge takes them.
    const defaults = `${root}/etc/default/aegisbpf`;
    await Deno.writeTextFile(defaults, 'AEGISBPF_RUN_ARGS="--enforce"\n', { append: true });
    await Deno.writeTextFile(`${root}/etc/aegisbpf/policy.yaml`, "kind: Policy\n");
    // Directories an older version (or a manual run) left 0755 are made private by the upgrade.
    for (const path of ["var/lib/aegisbpf", "etc/aegisbpf", "etc/aegisbpf/keys"]) {
      await Deno.mkdir(`${root}/${path}`, { recursive: true });
      await Deno.chmod(`${root}/${path}`, 0o755);
    }
    const upgrade = await dpkgIn(root, "-i", deb);
    assert.equal(upgrade.code, 0, upgrade.stderr);
    for (const path of ["var/lib/aegisbpf", "etc/aegisbpf", "etc/aegisbpf/keys"]) {
      assert.equal(await mode(`${root}/${path}`), 0o700, path);
    }
    assert.doesNotMatch(upgrade.stdout, /installed, not started/);
    assert.match(await Deno.readTextFile(defaults), /AEGISBPF_RUN_ARGS="--enforce"\n$/);

    const remove = await dpkgIn(root, "-r", "aegisbpf");
    assert.equal(remove.code, 0, remove.stderr);
    assert.equal(await mode(`${root}/usr/bin/aegisbpf`), undefined);
    assert.equal(await mode(`${root}/usr/lib/systemd/system/aegisbpf.service`), undefined);
    assert.match(await Deno.readTextFile(defaults), /--enforce/);
    assert.equal(await Deno.readTextFile(`${root}/etc/aegisbpf/policy.yaml`), "kind: Policy\n");

    const purge = await dpkgIn(root, "-P", "aegisbpf");
    assert.equal(purge.code, 0, purge.stderr);
    for (const path of ["etc/default/aegisbpf", "etc/aegisbpf", "var/lib/aegisbpf"]) {
      assert.equal(await mode(`${root}/${path}`), undefined, path);
    }
  });
});

Deno.test("build-deb.sh refuses a bad argument or a missing binary with one line", async () => {
  const unknown = await run(BUILD, ["--bogus"]);
  assert.equal(unknown.code, 1);
  assert.equal(unknown.stderr, "build-deb: error: unknown argument: --bogus (see --help)\n");
  const missing = await run(BUILD, ["--binary", "/nonexistent/aegisbpf"]);
  assert.equal(missing.code, 1);
  assert.equal(missing.stderr, "build-deb: error: /nonexistent/aegisbpf: not an executable file\n");
});

Deno.test("the maintainer scripts are valid sh and never enable or start a unit", async () => {
  const verbs = new Set<string>();
  for (const script of ["postinst", "prerm", "postrm"]) {
    const path = `${REPO}packaging/deb/${script}`;
    const syntax = await run("sh", ["-n", path]);
    assert.equal(syntax.code, 0, `${script}: ${syntax.stderr}`);
    const lines = (await Deno.readTextFile(path)).split("\n");
    for (const line of lines.filter((line) => !/^\s*#|\becho\b/.test(line))) {
      const calls = line.matchAll(
        /(?:^|;|\bthen|&&|\|\|)\s*(?:systemctl|deb-systemd-invoke|deb-systemd-helper)\s+(?:--\S+\s+)*(\S+)/g,
      );
      for (const call of calls) verbs.add(call[1]!);
    }
  }
  // daemon-reload; stop on removal; update-state and purge record and remove the admin's enable links;
  // try-restart: an upgrade restarts only an agent already running (the new one adopts the pins).
  assert.deepEqual([...verbs].sort(), ["daemon-reload", "purge", "stop", "try-restart", "update-state"]);
});
