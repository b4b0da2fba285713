import assert from "node:assert/strict";
import { InputError } from "../errors.ts";
import {
  checkCgroupPath,
  checkReason,
  checkTicket,
  DEFAULT_MAX_TTL_MS,
  formatMs,
  parseAllow,
  parseMaxTtl,
  parseTtl,
} from "./exception_input.ts";

Deno.test("parseAllow() reads exec, file and egress matches, IPv6 with a port in brackets", () => {
  assert.deepEqual(parseAllow("exec:/usr/bin/curl"), { kind: "exec", path: "/usr/bin/curl" });
  assert.deepEqual(parseAllow("file:/etc/app/key"), { kind: "file", path: "/etc/app/key" });
  const v4 = parseAllow("egress:10.1.2.3/8:443");
  assert.ok(v4.kind === "egress");
  assert.deepEqual([...v4.cidr.addr], [10, 0, 0, 0], "host bits cleared");
  assert.equal(v4.cidr.prefixLength, 8);
  assert.equal(v4.port, 443);
  const host = parseAllow("egress:203.0.113.7");
  assert.ok(host.kind === "egress" && host.port === 0 && host.cidr.prefixLength === 32);
  const v6 = parseAllow("egress:[2001:db8::/32]:8443");
  assert.ok(v6.kind === "egress" && v6.cidr.family === 6 && v6.port === 8443);
  const v6any = parseAllow("egress:2001:db8::1");
  assert.ok(v6any.kind === "egress" && v6any.cidr.prefixLength === 128 && v6any.port === 0);
});

Deno.test("parseAllow() refuses what it cannot read, naming --allow", () => {
  for (
    const text of [
      "curl",
      "ssh:host",
      "exec:relative",
      "file:",
      "egress:10.0.0.0/33",
      "egress:1.2.3.4:0",
      "egress:1.2.3.4:65536",
      "egress:[::1]:x",
      "exec:/bin/\u0007bell",
    ]
  ) {
    assert.throws(
      () => parseAllow(text),
      (error: Error) => error instanceof InputError && /^--allow/.test(error.message),
      text,
    );
  }
});

Deno.test("parseTtl() takes seconds to the maximum, refusing zero, negative and longer", () => {
  assert.equal(parseTtl("2s", DEFAULT_MAX_TTL_MS), 2000);
  assert.equal(parseTtl("7d", DEFAULT_MAX_TTL_MS), DEFAULT_MAX_TTL_MS);
  assert.throws(() => parseTtl("0s", DEFAULT_MAX_TTL_MS), /--ttl must be longer than zero/);
  assert.throws(() => parseTtl("-1h", DEFAULT_MAX_TTL_MS), /--ttl "-1h" is not a duration/);
  assert.throws(
    () => parseTtl("7d1s", DEFAULT_MAX_TTL_MS),
    /--ttl 7d1s is longer than an exception may live here \(7d/,
  );
  assert.throws(
    () => parseMaxTtl("91d", "/etc/aegisbpf/config.yaml"),
    /exceptionMaxTtl 91d is longer than 90d/,
  );
  assert.equal(formatMs(36 * 3_600_000), "36h");
});

Deno.test("checkReason(), checkTicket() and checkCgroupPath() bound and clean their text", () => {
  assert.equal(checkReason("  INC-1 migration "), "INC-1 migration");
  assert.throws(() => checkReason(undefined), /--reason is required/);
  assert.throws(() => checkReason(" \t"), /--reason is required/);
  assert.throws(() => checkReason("x".repeat(201)), /--reason is longer than 200/);
  assert.throws(() => checkReason("ok\nforged line"), /--reason holds a control character/);
  assert.throws(() => checkReason("bidi \u009b"), /control character/);
  assert.equal(checkTicket(undefined), undefined);
  assert.equal(checkTicket("CHG-1"), "CHG-1");
  assert.throws(() => checkTicket(" "), /--ticket is empty/);
  assert.throws(() => checkTicket("x".repeat(65)), /--ticket is longer than 64/);
  assert.equal(checkCgroupPath("/system.slice/web.service/"), "system.slice/web.service");
  assert.throws(() => checkCgroupPath("system.slice/../x"), /--in/);
  assert.throws(() => checkCgroupPath("/"), /--in/);
});
