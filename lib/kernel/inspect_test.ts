import assert from "node:assert/strict";
import { missingLinks, type PinnedLink } from "./inspect.ts";

const link = (name: string, attached = true): PinnedLink => ({
  name,
  type: "cgroup",
  programId: 1,
  attached,
});
const TRACEPOINTS = ["aegis_tp_openat", "aegis_tp_open", "aegis_tp_openat2"].map((name) => link(name));

Deno.test("missingLinks() accepts BPF-LSM or the whole tracepoint fallback for file, and needs every egress hook", () => {
  // The scope guard is attached only while the policy has a scope: not needed here.
  const fileLsm = [
    "aegis_file_open",
    "aegis_file_receive",
    "aegis_inode_setattr",
    "aegis_inode_unlink",
    "aegis_inode_link",
    "aegis_inode_setxattr",
    "aegis_inode_removexattr",
    "aegis_inode_create",
    "aegis_inode_mkdir",
    "aegis_inode_symlink",
    "aegis_inode_mknod",
    "aegis_inode_rmdir",
    "aegis_sb_mount",
    "aegis_move_mount",
    "aegis_inode_rename",
  ];
  assert.deepEqual(
    missingLinks(["file"], [], [...fileLsm, "aegis_task_prctl"].map((name) => link(name))),
    [],
  );
  assert.deepEqual(
    missingLinks(["file"], [], fileLsm.map((name) => link(name))),
    ["aegis_task_prctl"],
    "the identity guard (trusted writers are programs)",
  );
  assert.deepEqual(
    missingLinks(["file"], [], [link("aegis_file_open"), link("aegis_task_prctl")]),
    fileLsm.slice(1),
    "BPF-LSM without the file guard is partial",
  );
  assert.deepEqual(missingLinks(["file"], [], [...TRACEPOINTS, link("aegis_tp_prctl")]), []);
  assert.deepEqual(
    missingLinks(["file"], [], [...TRACEPOINTS.slice(1), link("aegis_tp_prctl")]),
    ["aegis_tp_openat"],
    "a partial fallback",
  );
  assert.deepEqual(missingLinks(["file", "exec"], [], []), [
    ...fileLsm,
    "aegis_task_prctl",
    "aegis_bprm_check",
    "aegis_memfd_exec",
    "aegis_mmap_file",
    "aegis_file_mprotect",
    "aegis_inode_rename",
  ]);
  const egress = [
    "aegis_connect4",
    "aegis_connect6",
    "aegis_sendmsg4",
    "aegis_skb_egress",
    "aegis_setsockopt",
    "aegis_skb_dns",
    "aegis_tp_socket",
    "aegis_tp_prctl",
  ];
  assert.deepEqual(missingLinks(["egress"], [], egress.map((name) => link(name))), ["aegis_sendmsg6"]);
  const cgroupOnly = [
    "aegis_connect4",
    "aegis_connect6",
    "aegis_sendmsg4",
    "aegis_sendmsg6",
    "aegis_skb_egress",
    "aegis_setsockopt",
    "aegis_skb_dns",
  ];
  assert.deepEqual(
    missingLinks(["egress"], [], cgroupOnly.map((name) => link(name))),
    ["aegis_socket_create", "aegis_sctp_bind_connect", "aegis_socket_connect", "aegis_task_prctl"],
    "the AF_PACKET hook and the identity guard, by BPF-LSM or their tracepoints",
  );
  assert.deepEqual(
    missingLinks(
      ["egress"],
      [],
      [...egress.slice(0, -1), "aegis_sendmsg6", "aegis_task_prctl"].map((name) => link(name)),
    ),
    [],
    "the identity guard by BPF-LSM",
  );
});

Deno.test("missingLinks() counts a detached link as missing, and needs one XDP link per interface", () => {
  assert.deepEqual(missingLinks(["bind"], [], [link("aegis_bind4"), link("aegis_bind6", false)]), [
    "aegis_bind6",
    "aegis_task_prctl",
  ]);
  assert.deepEqual(
    missingLinks(["bind"], [], [link("aegis_bind4"), link("aegis_bind6"), link("aegis_tp_prctl")]),
    [],
    "the identity guard's report where BPF-LSM does not load",
  );
  assert.deepEqual(missingLinks(["ingress"], ["eth0", "eth1"], [link("aegis_xdp@eth0")]), ["aegis_xdp@eth1"]);
  assert.deepEqual(missingLinks(["ingress"], [], []), [], "no interface, nothing needed");
});
