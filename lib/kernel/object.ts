import { OpenBpfObject } from "../../ffi/mod.ts";

/** The programs of bpf/aegis.bpf.c. */
export const PROGRAMS = {
  fileOpen: "aegis_file_open",
  exec: "aegis_bprm_check",
  fileOpenAudit: "aegis_tp_openat",
  fileOpenLegacyAudit: "aegis_tp_open",
  fileOpenat2Audit: "aegis_tp_openat2",
  execAudit: "aegis_tp_exec",
  // file guard (bpf/file_guard.bpf.h)
  memfdExec: "aegis_memfd_exec",
  mmapFile: "aegis_mmap_file",
  fileMprotect: "aegis_file_mprotect",
  fileReceive: "aegis_file_receive",
  inodeRename: "aegis_inode_rename",
  scopeGuard: "aegis_scope_guard",
  // ptrace guard (bpf/process_guard.bpf.h)
  ptraceAccess: "aegis_ptrace_access",
  ptraceTraceme: "aegis_ptrace_traceme",
  // identity guard (bpf/process_guard.bpf.h): the LSM hook, and its report where BPF-LSM does not load
  taskPrctl: "aegis_task_prctl",
  prctlAudit: "aegis_tp_prctl",
  // a denied file is not changeable either (bpf/file_change.bpf.h; rename: inodeRename)
  inodeSetattr: "aegis_inode_setattr",
  inodeUnlink: "aegis_inode_unlink",
  inodeLink: "aegis_inode_link",
  inodeSetxattr: "aegis_inode_setxattr",
  inodeRemovexattr: "aegis_inode_removexattr",
  // files.protect: a protected directory's entries (bpf/file_protect.bpf.h; the rest share the hooks above)
  inodeCreate: "aegis_inode_create",
  inodeMkdir: "aegis_inode_mkdir",
  inodeSymlink: "aegis_inode_symlink",
  inodeMknod: "aegis_inode_mknod",
  inodeRmdir: "aegis_inode_rmdir",
  // POSIX ACL changes on 6.2 and later (bpf/file_change.bpf.h): loaded where the kernel has the hooks
  inodeSetAcl: "aegis_inode_set_acl",
  inodeRemoveAcl: "aegis_inode_remove_acl",
  sbMount: "aegis_sb_mount",
  moveMount: "aegis_move_mount",
  connect4: "aegis_connect4",
  connect6: "aegis_connect6",
  sendmsg4: "aegis_sendmsg4",
  sendmsg6: "aegis_sendmsg6",
  packetEgress: "aegis_skb_egress",
  // DNS answers learned in the kernel (bpf/dns_learn.bpf.h)
  dnsAnswers: "aegis_skb_dns",
  setsockopt: "aegis_setsockopt",
  packetSocket: "aegis_socket_create",
  packetSocketAudit: "aegis_tp_socket",
  sctpConnect: "aegis_sctp_bind_connect",
  sctpSocketConnect: "aegis_socket_connect",
  sweepTcp: "aegis_sweep_tcp",
  sweepUdp: "aegis_sweep_udp",
  listTcp: "aegis_list_tcp",
  listUdp: "aegis_list_udp",
  bind4: "aegis_bind4",
  bind6: "aegis_bind6",
  // SCTP binds where BPF-LSM loads (bpf/bind_guard.bpf.h)
  socketBind: "aegis_socket_bind",
  sctpBindx: "aegis_sctp_bindx",
  ingress: "aegis_xdp",
  flushRates: "aegis_flush_rates",
  // forwarded packets (bpf/forward_guard.bpf.h)
  forward: "aegis_forward",
} as const;
export type ProgramName = typeof PROGRAMS[keyof typeof PROGRAMS];

// Read as a file next to the sources so that `deno compile --include bpf/build/aegis.bpf.o` embeds it.
const OBJECT_URL = new URL("../../bpf/build/aegis.bpf.o", import.meta.url);

let image: Uint8Array<ArrayBuffer> | undefined;

/** The compiled BPF object, or an Error telling how to build it. */
export function aegisObjectImage(): Uint8Array<ArrayBuffer> {
  if (!image) {
    try {
      image = Deno.readFileSync(OBJECT_URL);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) {
        throw new Error(`BPF object not built: ${OBJECT_URL.pathname} is missing (run deno task build:bpf)`);
      }
      throw error;
    }
  }
  return image;
}

/**
 * Opens the aegisbpf object set to load only `programs`. With `pinDir`, every map is pinned there, and
 * maps already pinned there are reused: that is how a new process adopts the live state.
 */
export function openAegisObject(
  programs: readonly ProgramName[],
  pinDir?: string,
  image: Uint8Array<ArrayBuffer> = aegisObjectImage(),
): OpenBpfObject {
  const open = OpenBpfObject.fromBytes(image);
  try {
    open.loadOnly(programs);
    if (pinDir) {
      for (const map of open.mapNames()) {
        // Internal maps (.rodata, .bss) belong to the programs of one load; they are not shared state.
        if (!map.includes(".")) open.setPinPath(map, `${pinDir}/${map}`);
      }
    }
    return open;
  } catch (error) {
    open.close();
    throw error;
  }
}

/** Opens the aegisbpf object and loads the named programs (every map is created, none pinned). */
export function loadPrograms(programs: readonly ProgramName[]) {
  return openAegisObject(programs).load();
}
