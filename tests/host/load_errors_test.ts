import assert from "node:assert/strict";
import {
  BpfError,
  ifIndex,
  OpenBpfObject,
  openDirectory,
  SysError,
  tryLockDirectory,
} from "../../ffi/mod.ts";
import { loadPrograms, PROGRAMS } from "../../lib/kernel/object.ts";
import { rootTest } from "../support/privileged.ts";
import { inodeOf, writeRules } from "../support/slice.ts";

rootTest(
  "[root] a verifier rejection surfaces as BpfError with operation, errno name and verifier log",
  () => {
    const image = Deno.readFileSync(
      new URL("../../bpf/build/fixtures/verifier_reject.bpf.o", import.meta.url),
    );
    let caught: unknown;
    try {
      OpenBpfObject.fromBytes(image, "verifier_reject").load().close();
    } catch (error) {
      caught = error;
    }
    {
      assert.ok(caught instanceof BpfError, `expected a BpfError, got ${caught}`);
      assert.equal(caught.operation, "bpf_object__load");
      assert.equal(caught.errnoName, "EACCES");
      assert.match(caught.verifierLog ?? "", /invalid access to packet/);
      assert.match(caught.message, /bpf_object__load \(unchecked_packet_read\) failed: EACCES/);
      assert.match(caught.message, /verifier log:\n[\s\S]*invalid access to packet/);
    }
  },
);

// On this project's machines BPF-LSM is listed as active but BPF_PROG_LOAD of an LSM program fails with
// EPERM (see shared/KERNEL_TESTING.md): doctor has to explain exactly this error.
rootTest("[root] the LSM program either loads or fails with a BpfError that names the errno", () => {
  let object;
  try {
    object = loadPrograms([PROGRAMS.fileOpen]);
  } catch (caught) {
    assert.ok(caught instanceof BpfError, `expected BpfError, got ${caught}`);
    assert.equal(caught.operation, "bpf_object__load");
    assert.equal(caught.errnoName, "EPERM");
    assert.match(caught.message, /aegis_file_open/);
    assert.match(caught.message, /EPERM/);
    return;
  }
  // A kernel that loads it must then enforce with it.
  const dir = Deno.makeTempDirSync({ prefix: "aegisbpf-lsm-host-" });
  try {
    Deno.writeTextFileSync(`${dir}/secret`, "s");
    writeRules(object, { plan: { mode: "enforce" }, files: [inodeOf(`${dir}/secret`, 1)] });
    object.program(PROGRAMS.fileOpen).attach();
    assert.throws(() => Deno.readTextFileSync(`${dir}/secret`), /os error 1\b/);
  } finally {
    object.close();
    Deno.removeSync(dir, { recursive: true });
  }
});

rootTest("[root] a failed system call surfaces as SysError naming the call and path, not as BpfError", () => {
  const missing = `/tmp/aegisbpf-no-such-dir-${Deno.pid}`;
  const expectSys = (call: () => unknown, syscall: string, errnoName: string, path: string) =>
    assert.throws(call, (error: unknown) => {
      assert.ok(error instanceof SysError, `expected SysError, got ${error}`);
      assert.ok(!(error instanceof BpfError));
      assert.equal(error.syscall, syscall);
      assert.equal(error.errnoName, errnoName);
      assert.equal(error.path, path);
      return true;
    });
  expectSys(() => openDirectory(missing), "open", "ENOENT", missing);
  expectSys(() => tryLockDirectory(missing), "open", "ENOENT", missing);
  expectSys(() => openDirectory("/etc/hostname"), "open", "ENOTDIR", "/etc/hostname");
  expectSys(() => ifIndex("no-such-if0"), "if_nametoindex", "ENODEV", "no-such-if0");
});
