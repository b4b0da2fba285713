export { BpfError, SysError } from "./error.ts";
export { Directory, type DirectoryEntry, entryName, type EntryStat, type EntryType } from "./directory.ts";
export { errnoName, errnoValue } from "./errno.ts";
export { BpfLink, LINK_TYPE, type LinkInfo } from "./link.ts";
export { BpfMap } from "./map.ts";
export {
  BpfObject,
  BpfProgram,
  OpenBpfObject,
  PinnedProgram,
  readIterator,
  testRunProgram,
  testRunRepeated,
  writeElementsAtOnce,
} from "./object.ts";
export { FdMap, type MapDefinition } from "./fd_map.ts";
export { RingBuffer } from "./ring_buffer.ts";
export {
  becomeUser,
  bootTimeNs,
  closeFd,
  connectUdp,
  type DirectoryLock,
  ifIndex,
  ifName,
  inNetns,
  inodeGeneration,
  interfaceDriver,
  libbpfVersion,
  lockDirectory,
  lockDirectorySync,
  mountPseudoFs,
  openDirectory,
  pidfdOpen,
  pidfdSendSignal,
  releaseFreedMemory,
  statxMount,
  statxStamp,
  tryLockDirectory,
  unmountLazily,
} from "./sys.ts";
export { ignoreSignal } from "./signals.ts";
export { type PeerCredentials, UnixConnection, UnixListener } from "./unix_socket.ts";
export * from "./layout.ts";
export * from "./event.ts";
export * from "./constants.ts";
export {
  pinFd,
  pinnedProgramId,
  programId,
  tcAttachEgress,
  tcDetachEgress,
  tcEnsureClsact,
  type TcFilterPlace,
  tcQueryEgress,
} from "./tc.ts";
export { concatBytes } from "./bytes.ts";
