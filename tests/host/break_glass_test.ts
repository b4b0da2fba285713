import assert from "node:assert/strict";
import { breakGlassOff, breakGlassOn, breakGlassStatus } from "../../lib/ops/break_glass.ts";
import { markerPath } from "../../lib/state/break_glass_marker.ts";
import { rootTest } from "../support/privileged.ts";
import { listen, ruleSet, withPlane } from "../support/plane.ts";
import { ipv4Rule } from "../support/slice.ts";

const DENIED = "127.0.0.2";
const DENY_LOOPBACK2 = ruleSet({
  mode: "enforce",
  rules: [
    { id: "default", area: "ingress", action: "deny" },
    { id: "loopback2", area: "egress", action: "deny" },
  ],
  egress: [ipv4Rule(`${DENIED}/32`, 1)],
});

/** Runs `fn` with a plane enforcing DENY_LOOPBACK2 whose process is then closed (no agent holds it). */
async function withoutAgent(
  fn: (context: {
    paths: { configDir: string; bpffs: string };
    connect: () => Promise<string>;
  }) => Promise<void>,
): Promise<void> {
  const configDir = Deno.makeTempDirSync({ prefix: "aegisbpf-test-config-" });
  const server = listen();
  try {
    await withPlane({ areas: ["egress"] }, async ({ plane, cgroup, bpffs }) => {
      await plane.apply(DENY_LOOPBACK2);
      const paths = { configDir, bpffs: bpffs.path };
      await fn({ paths, connect: () => cgroup.connect(DENIED, server.port) });
    });
  } finally {
    await server.stop();
    Deno.removeSync(configDir, { recursive: true });
  }
}

rootTest(
  "[root] break-glass on turns enforce into audit at once through the pins, and off restores it",
  async () => {
    await withoutAgent(async ({ paths, connect }) => {
      assert.equal(await connect(), "EPERM", "enforcing before");
      const { marker, kernel } = breakGlassOn(paths, { reason: "INC-1 lock-out" });
      assert.deepEqual(kernel, { on: true });
      assert.equal(marker.reason, "INC-1 lock-out");
      assert.equal(await connect(), "connected", "audit while break-glass is on");
      const status = breakGlassStatus(paths);
      assert.deepEqual(status.kernel, { on: true });
      assert.equal(status.marker?.reason, "INC-1 lock-out");
      const off = breakGlassOff(paths);
      assert.equal(off.removedMarker, true);
      assert.equal(await connect(), "EPERM", "enforcing again");
      assert.throws(() => Deno.statSync(markerPath(paths.configDir)), Deno.errors.NotFound);
    });
  },
);

rootTest("[root] break-glass with a TTL ends by itself in the kernel, with no agent running", async () => {
  await withoutAgent(async ({ paths, connect }) => {
    const { kernel } = breakGlassOn(paths, { reason: "deploy window", ttlMs: 1500 });
    assert.ok(kernel?.on && kernel.untilBootNs !== undefined, "a deadline in the kernel word");
    assert.equal(await connect(), "connected", "audit during the TTL");
    await new Promise((resolve) => setTimeout(resolve, 1800));
    assert.equal(await connect(), "EPERM", "enforcing once the TTL has passed");
    const status = breakGlassStatus(paths);
    assert.deepEqual(status.kernel, { on: false });
    assert.equal(status.marker, undefined, "the marker has expired too");
    assert.ok(status.expiredMarker, "and says so");
  });
});

rootTest("[root] break-glass refuses an empty reason and writes nothing", async () => {
  await withoutAgent(async ({ paths, connect }) => {
    assert.throws(() => breakGlassOn(paths, { reason: "  " }), /--reason must say why/);
    assert.equal(await connect(), "EPERM");
    assert.throws(() => Deno.statSync(markerPath(paths.configDir)), Deno.errors.NotFound);
  });
});
