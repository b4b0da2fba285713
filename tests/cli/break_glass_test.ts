import assert from "node:assert/strict";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

async function aegisbpf(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", "--quiet", MAIN, ...args],
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return { code: out.code, stdout: text(out.stdout), stderr: text(out.stderr) };
}

/** Global flags pointing at empty temporary directories: nothing of aegisbpf is pinned there. */
function dirs(): { args: string[]; configDir: string; remove: () => void } {
  const root = Deno.makeTempDirSync({ prefix: "aegisbpf-cli-bg-" });
  const configDir = `${root}/config`;
  return {
    args: ["--bpffs", `${root}/bpffs`, "--config-dir", configDir, "--state-dir", `${root}/state`],
    configDir,
    remove: () => Deno.removeSync(root, { recursive: true }),
  };
}

Deno.test("break-glass on needs --reason, refuses a bad --ttl, and exits 2 for both", async () => {
  const d = dirs();
  try {
    const missing = await aegisbpf(["break-glass", "on", ...d.args]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /--reason/);
    const ttl = await aegisbpf(["break-glass", "on", "--reason", "x", "--ttl", "soon", ...d.args]);
    assert.equal(ttl.code, 2);
    assert.match(ttl.stderr, /^aegisbpf: error: --ttl "soon" is not a duration/);
    const empty = await aegisbpf(["break-glass", "on", "--reason", " ", ...d.args]);
    assert.equal(empty.code, 2);
    assert.throws(() => Deno.statSync(`${d.configDir}/break_glass`), Deno.errors.NotFound, "nothing written");
  } finally {
    d.remove();
  }
});

Deno.test("break-glass on, status and off keep the marker when nothing is pinned, and say so", async () => {
  const d = dirs();
  try {
    const on = await aegisbpf(["break-glass", "on", "--reason", "INC-7", "--ttl", "30m", ...d.args]);
    assert.equal(on.code, 0, on.stderr);
    assert.match(on.stdout, /^break-glass on until \d{4}-.*Z: marker written/);
    assert.match(on.stderr, /no aegisbpf programs are pinned/);
    const marker = JSON.parse(Deno.readTextFileSync(`${d.configDir}/break_glass`));
    assert.equal(marker.reason, "INC-7");
    const status = await aegisbpf(["break-glass", "status", "--json", ...d.args]);
    assert.equal(status.code, 0);
    const parsed = JSON.parse(status.stdout);
    assert.equal(parsed.active, false, "no kernel state");
    assert.equal(parsed.pinned, false);
    assert.equal(parsed.marker.reason, "INC-7");
    const off = await aegisbpf(["break-glass", "off", ...d.args]);
    assert.equal(off.code, 0);
    assert.match(off.stdout, /break-glass off: marker removed; nothing of aegisbpf is pinned/);
    assert.throws(() => Deno.statSync(`${d.configDir}/break_glass`), Deno.errors.NotFound);
  } finally {
    d.remove();
  }
});
