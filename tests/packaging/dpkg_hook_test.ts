/**
 * The package's dpkg hook (packaging/deb/dpkg-hook, run through the file trigger of packaging/deb/triggers):
 * it signals (SIGUSR2) only the process that holds the agent lock, does nothing and succeeds when no agent
 * runs, and never fails a dpkg run, its own package's triggered postinst included.
 */
import assert from "node:assert/strict";
import { VERSION } from "../../lib/version.ts";
import { PACKAGING, REPO, run, withTempDir } from "./unit_file.ts";

const HOOK = `${PACKAGING}deb/dpkg-hook`;

/**
 * Runs the hook on `stateDir`, and says whether this process got a SIGUSR2 from it. The signal is delivered
 * before kill(1) returns, but its listener runs in a later turn of the event loop, which a loaded host can
 * delay: the wait ends when the listener ran, or after 3 s (a whole CI run once missed a 50 ms wait).
 */
async function hookSignals(stateDir: string, env: Record<string, string> = {}): Promise<boolean> {
  let got = false;
  const listener = () => (got = true);
  Deno.addSignalListener("SIGUSR2", listener);
  try {
    const result = await run(HOOK, [], {
      env: { PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin", AEGISBPF_STATE_DIR: stateDir, ...env },
    });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout + result.stderr, "");
    for (const deadline = Date.now() + 3000; !got && Date.now() < deadline;) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return got;
  } finally {
    Deno.removeSignalListener("SIGUSR2", listener);
  }
}

Deno.test("dpkg-hook signals the agent that holds the lock, and no one when none holds it", async () => {
  await withTempDir("aegisbpf-hook-", async (dir) => {
    // No state directory, no lock file: nothing to do.
    assert.equal(await hookSignals(`${dir}/missing`), false);
    const lock = `${dir}/agent.lock`;
    await Deno.writeTextFile(
      lock,
      JSON.stringify({ pid: Deno.pid, startedAt: new Date().toISOString() }) + "\n",
    );
    // A lock file left by an agent that died: its pid may be another process's now.
    assert.equal(await hookSignals(dir), false);
    using file = await Deno.open(lock, { read: true, write: true });
    await file.lock(true);
    assert.equal(await hookSignals(dir), true);
    // dpkg working on another root: not this host's agent.
    assert.equal(await hookSignals(dir, { DPKG_ROOT: `${dir}/other` }), false);
    // The state directory the units use, from /etc/default/aegisbpf's AEGISBPF_OPTS (read, never run).
    const defaults = `${dir}/default`;
    Deno.writeTextFileSync(defaults, `AEGISBPF_OPTS="--log-format json --state-dir ${dir}"\n`);
    assert.equal(await hookSignals("", { AEGISBPF_DEFAULTS: defaults }), true);
    Deno.writeTextFileSync(defaults, `AEGISBPF_OPTS="--state-dir ${dir}/elsewhere"\n`);
    assert.equal(await hookSignals("", { AEGISBPF_DEFAULTS: defaults }), false);
    // A pid that does not parse or no longer exists: nothing, and still success.
    await Deno.writeTextFile(lock, '{"pid":999999999}\n');
    assert.equal(await hookSignals(dir), false);
    await file.unlock();
  });
});

/** A package of nothing but `file` (a program), if given, built with dpkg-deb in `dir`. */
async function tinyDeb(dir: string, name: string, file?: string): Promise<string> {
  const tree = `${dir}/${name}`;
  await Deno.mkdir(`${tree}/DEBIAN`, { recursive: true });
  if (file !== undefined) {
    await Deno.mkdir(`${tree}/${file.slice(0, file.lastIndexOf("/"))}`, { recursive: true });
    await Deno.writeTextFile(`${tree}/${file}`, "#!/bin/sh\necho tiny\n", { mode: 0o755 });
  }
  await Deno.writeTextFile(
    `${tree}/DEBIAN/control`,
    `Package: ${name}\nVersion: 1\nArchitecture: amd64\nMaintainer: t <t@t.invalid>\nDescription: ${name}\n`,
  );
  // dpkg-deb refuses a control directory outside 0755-0775, which the process umask may have made it.
  await Deno.chmod(`${tree}/DEBIAN`, 0o755);
  const deb = `${dir}/${name}.deb`;
  const built = await run("dpkg-deb", ["--root-owner-group", "--build", tree, deb]);
  assert.equal(built.code, 0, built.stderr);
  return deb;
}

/** dpkg on a private root (its own database), maintainer scripts run with DPKG_ROOT set. */
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

Deno.test("a dpkg run that installs files under /usr triggers the package, and both stay installed", async () => {
  await withTempDir("aegisbpf-trigger-", async (dir) => {
    const binary = `${dir}/aegisbpf`;
    await Deno.writeTextFile(binary, "#!/bin/sh\necho stub\n", { mode: 0o755 });
    const built = await run(`${REPO}scripts/build-deb.sh`, ["--binary", binary, "--out", dir]);
    assert.equal(built.code, 0, built.stderr);
    const control = `${dir}/control`;
    assert.equal((await run("dpkg-deb", ["-e", `${dir}/aegisbpf_${VERSION}_amd64.deb`, control])).code, 0);
    assert.match(await Deno.readTextFile(`${control}/triggers`), /^interest-noawait \/usr$/m);

    const root = `${dir}/root`;
    for (const sub of ["info", "updates", "triggers"]) {
      await Deno.mkdir(`${root}/var/lib/dpkg/${sub}`, { recursive: true });
    }
    for (const file of ["status", "available"]) await Deno.writeTextFile(`${root}/var/lib/dpkg/${file}`, "");
    // dpkg processes a package's triggers only once its dependencies are met: stand-ins for them.
    for (const name of ["libbpf1", "libc6"]) {
      const deb = await tinyDeb(dir, name);
      assert.equal((await dpkgIn(root, "-i", deb)).code, 0);
    }
    const ours = await dpkgIn(root, "-i", `${dir}/aegisbpf_${VERSION}_amd64.deb`);
    assert.equal(ours.code, 0, ours.stderr);
    const theirs = await dpkgIn(root, "-i", await tinyDeb(dir, "tiny", "usr/bin/tiny"));
    assert.equal(theirs.code, 0, theirs.stderr);
    assert.match(theirs.stdout, /^Processing triggers for aegisbpf /m);
    assert.equal(theirs.stderr, "");
    const status = await run("dpkg", [`--root=${root}`, "-s", "aegisbpf", "tiny"]);
    // A trigger still pending or a failed triggered postinst would show as another status.
    assert.equal([...status.stdout.matchAll(/^Status: install ok installed$/gm)].length, 2, status.stdout);
    assert.doesNotMatch(status.stdout, /Triggers-(Pending|Awaited)/);
  });
});
