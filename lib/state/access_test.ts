import assert from "node:assert/strict";
import { join } from "node:path";
import { RefusedError } from "../errors.ts";
import { accessFinding, accessOf, makePrivateDir, refuseUnsafeAccess } from "./access.ts";

const dir = (uid: number, mode: number) => ({ uid, mode: 0o40000 | mode, isDirectory: true });
const file = (uid: number, mode: number) => ({ uid, mode: 0o100000 | mode, isDirectory: false });

Deno.test("accessFinding() fails a directory others may write or another user owns", () => {
  const world = accessFinding("/s", dir(0, 0o777), 0, "directory");
  assert.equal(world.status, "fail");
  assert.equal(world.remediation, "chmod 0700 /s");
  assert.match(world.detail, /^\/s is world-writable \(mode 0777\)/);
  const group = accessFinding("/s", dir(0, 0o770), 0, "directory");
  assert.equal(group.status, "fail");
  assert.match(group.detail, /group-writable \(mode 0770\)/);
  const foreign = accessFinding("/s", dir(65534, 0o700), 0, "directory");
  assert.equal(foreign.status, "fail");
  assert.match(foreign.detail, /owned by uid 65534/);
  assert.equal(foreign.remediation, "chown 0 /s && chmod 0700 /s");
  assert.equal(accessFinding("/s", file(0, 0o600), 0, "directory").status, "fail", "not a directory");
});

Deno.test("accessFinding() warns on a directory others may read or enter, passes 0700", () => {
  for (const mode of [0o755, 0o750, 0o711, 0o701]) {
    const finding = accessFinding("/s", dir(0, mode), 0, "directory");
    assert.equal(finding.status, "warn", mode.toString(8));
    assert.equal(finding.remediation, "chmod 0700 /s");
  }
  assert.equal(accessFinding("/s", dir(0, 0o700), 0, "directory").status, "ok");
  assert.equal(accessFinding("/s", dir(1000, 0o700), 1000, "directory").status, "ok", "the user running it");
});

Deno.test("accessFinding() fails a key others may write, and not one they may only read", () => {
  const shared = accessFinding("/k/a.pub", file(0, 0o666), 0, "key");
  assert.equal(shared.status, "fail");
  assert.equal(shared.remediation, "chmod 0600 /k/a.pub");
  assert.equal(accessFinding("/k/a.pub", file(0, 0o620), 0, "key").status, "fail");
  assert.equal(accessFinding("/k/a.pub", file(65534, 0o600), 0, "key").status, "fail");
  assert.equal(accessFinding("/k/a.pub", file(0, 0o644), 0, "key").status, "ok", "a public key is public");
  assert.equal(accessFinding("/k/a.pub", dir(0, 0o700), 0, "key").status, "fail", "not a file");
});

Deno.test("makePrivateDir() makes 0700 directories, parents too, and leaves an existing one alone", async () => {
  const root = await Deno.makeTempDir({ prefix: "aegisbpf-access-" });
  try {
    makePrivateDir(join(root, "a", "b"));
    assert.equal(Deno.statSync(join(root, "a")).mode! & 0o777, 0o700);
    assert.equal(Deno.statSync(join(root, "a", "b")).mode! & 0o777, 0o700);
    Deno.mkdirSync(join(root, "c"), { mode: 0o755 });
    makePrivateDir(join(root, "c"));
    assert.equal(Deno.statSync(join(root, "c")).mode! & 0o777, 0o755);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("refuseUnsafeAccess() refuses a 0777 directory naming it and the fix, returns a warning for 0755", async () => {
  const root = await Deno.makeTempDir({ prefix: "aegisbpf-access-" });
  try {
    assert.equal(refuseUnsafeAccess(join(root, "absent"), "to run"), undefined);
    Deno.chmodSync(root, 0o777);
    assert.throws(() => refuseUnsafeAccess(root, "to run with the state directory"), (error: unknown) => {
      assert.ok(error instanceof RefusedError);
      assert.equal(
        error.message,
        `Refused to run with the state directory: ${root} is world-writable (mode 0777): other users can ` +
          `change what aegisbpf trusts; fix it with: chmod 0700 ${root}`,
      );
      return true;
    });
    Deno.chmodSync(root, 0o755);
    assert.equal(refuseUnsafeAccess(root, "to run")?.status, "warn");
    Deno.chmodSync(root, 0o700);
    assert.equal(refuseUnsafeAccess(root, "to run"), undefined);
    assert.equal(accessOf(root, "directory")?.status, "ok");
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
