import assert from "node:assert/strict";
import { BpfError, extractVerifierLog, libbpfSummary, SysError, unwrap, unwrapSys } from "./error.ts";
import { errnoName, errnoValue } from "./errno.ts";
import { failedProgram } from "./object.ts";

const VERIFIER_FAILURE = [
  "libbpf: prog 'unchecked_packet_read': BPF program load failed: Permission denied\n",
  "libbpf: prog 'unchecked_packet_read': -- BEGIN PROG LOAD LOG --\n",
  "0: R1=ctx() R10=fp0\n",
  "1: (61) r0 = *(u32 *)(r1 +0)\n",
  "invalid access to packet, off=0 size=4, R1(id=0,off=0,r=0)\n",
  "-- END PROG LOAD LOG --\n",
  "libbpf: prog 'unchecked_packet_read': failed to load: -13\n",
  "libbpf: failed to load object 'verifier_reject'\n",
].join("");

Deno.test("extractVerifierLog() returns the text between libbpf's markers", () => {
  assert.equal(
    extractVerifierLog(VERIFIER_FAILURE),
    "0: R1=ctx() R10=fp0\n1: (61) r0 = *(u32 *)(r1 +0)\ninvalid access to packet, off=0 size=4, R1(id=0,off=0,r=0)",
  );
});

Deno.test("extractVerifierLog() returns undefined when libbpf printed no log", () => {
  assert.equal(extractVerifierLog("libbpf: failed to load object 'x'\n"), undefined);
  assert.equal(
    extractVerifierLog("libbpf: prog 'p': -- BEGIN PROG LOAD LOG --\n-- END PROG LOAD LOG --\n"),
    undefined,
  );
});

Deno.test("libbpfSummary() keeps libbpf's own lines and leaves the verifier log out", () => {
  assert.equal(
    libbpfSummary(VERIFIER_FAILURE),
    "prog 'unchecked_packet_read': BPF program load failed: Permission denied; " +
      "prog 'unchecked_packet_read': failed to load: -13; failed to load object 'verifier_reject'",
  );
});

Deno.test("BpfError names the operation, subject, errno and verifier log", () => {
  const error = new BpfError("bpf_object__load", -13, {
    subject: "unchecked_packet_read",
    libbpfLog: VERIFIER_FAILURE,
  });
  assert.equal(error.errno, 13);
  assert.equal(error.errnoName, "EACCES");
  assert.equal(error.operation, "bpf_object__load");
  assert.match(error.message, /^bpf_object__load \(unchecked_packet_read\) failed: EACCES: prog/);
  assert.match(error.message, /\nverifier log:\n0: R1=ctx\(\)/);
  assert.ok(error instanceof Error);
});

Deno.test("BpfError without a libbpf log is one line", () => {
  const error = new BpfError("bpf_obj_get", 2, { subject: "/sys/fs/bpf/aegisbpf/config" });
  assert.equal(error.message, "bpf_obj_get (/sys/fs/bpf/aegisbpf/config) failed: ENOENT");
  assert.equal(error.verifierLog, undefined);
});

Deno.test("unwrap() passes non-negative codes and throws BpfError for -errno", () => {
  assert.equal(unwrap(5, "bpf_program__fd"), 5);
  assert.throws(
    () => unwrap(-1, "bpf_link__pin"),
    (error: unknown) => error instanceof BpfError && error.errnoName === "EPERM",
  );
});

Deno.test("errnoName() maps known codes, libbpf codes and unknown ones", () => {
  assert.equal(errnoName(1), "EPERM");
  assert.equal(errnoName(-22), "EINVAL");
  assert.equal(errnoName(4007), "LIBBPF_ERRNO__LOAD");
  assert.equal(errnoName(999), "errno 999");
  assert.equal(errnoValue("E2BIG"), 7);
  assert.equal(errnoValue("NOPE"), undefined);
});

Deno.test("failedProgram() finds the program libbpf names in a load failure", () => {
  assert.equal(failedProgram(VERIFIER_FAILURE), "unchecked_packet_read");
  assert.equal(failedProgram("libbpf: failed to load object 'x'\n"), undefined);
});

Deno.test("SysError names the system call, path and errno, and is not a BpfError", () => {
  const error = new SysError("flock", 11, "/sys/fs/bpf/aegisbpf");
  assert.equal(error.message, "flock (/sys/fs/bpf/aegisbpf) failed: EAGAIN");
  assert.equal(error.syscall, "flock");
  assert.equal(error.path, "/sys/fs/bpf/aegisbpf");
  assert.equal(error.errno, 11);
  assert.equal(error.errnoName, "EAGAIN");
  assert.equal(error.name, "SysError");
  assert.ok(error instanceof Error);
  assert.ok(!(error instanceof BpfError));
  assert.equal(new SysError("close", -9).message, "close failed: EBADF");
});

Deno.test("unwrapSys() passes a system call's non-negative results through", () => {
  assert.equal(unwrapSys(0, "flock"), 0);
  assert.equal(unwrapSys(7, "open", "/x"), 7);
});

Deno.test("unwrap() makes libbpf failures BpfErrors that carry libbpf's log", () => {
  assert.throws(
    () => unwrap(-13, "bpf_object__load", { subject: "p", libbpfLog: VERIFIER_FAILURE }),
    (error: unknown) =>
      error instanceof BpfError && !(error instanceof SysError) && error.errnoName === "EACCES" &&
      /invalid access to packet/.test(error.verifierLog ?? ""),
  );
});
