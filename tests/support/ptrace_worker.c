// The two sides of the ptrace injection of the VM's ptrace test (tests/vm/inside/ptrace_test.ts), each
// joining a cgroup as root and then running as uid 65534:
//   ptrace_worker victim CGROUP
//     prints "ready PID ADDR" (ADDR: its path buffer, holding /dev/null), then for each line on stdin opens
//     the path in the buffer, prints "opened PATH: CONTENT" or "errno NAME PATH", and puts /dev/null back.
//   ptrace_worker attack poke|vm_writev|mem|environ CGROUP PID ADDR PATH
//     writes PATH into the victim's buffer by PTRACE_POKEDATA, process_vm_writev or /proc/PID/mem (environ:
//     reads /proc/PID/environ instead); prints "ok METHOD" or "errno NAME (STEP)".
//   ptrace_worker traceme CGROUP OTHER
//     forks a child that moves itself to OTHER and asks its parent (in CGROUP) to trace it;
//     prints "ok traceme" or "errno NAME (traceme)".
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#define NOBODY 65534
#define INITIAL "/dev/null"

static char path[256] = INITIAL;

static int fail(const char *step) {
  printf("errno %s (%s)\n", strerrorname_np(errno), step);
  return 1;
}

// Moves the caller into CGROUP (a cgroup v2 directory), as root.
static int join(const char *cgroup) {
  char file[512];
  snprintf(file, sizeof(file), "%s/cgroup.procs", cgroup);
  FILE *procs = fopen(file, "w");
  if (!procs || fprintf(procs, "%d\n", getpid()) < 0 || fclose(procs) != 0) return fail("join");
  return 0;
}

// Becomes uid and gid 65534 for good, still dumpable (a change of ids clears it) so that the same uid may
// trace it as Debian's default ptrace_scope 0 allows.
static int drop(void) {
  if (setgroups(0, NULL) || setresgid(NOBODY, NOBODY, NOBODY) || setresuid(NOBODY, NOBODY, NOBODY)) {
    return fail("drop");
  }
  if (prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)) return fail("dumpable");
  return 0;
}

static int victim(const char *cgroup) {
  if (join(cgroup) || drop()) return 1;
  printf("ready %d %lx\n", getpid(), (unsigned long)path);
  fflush(stdout);
  char line[64];
  while (fgets(line, sizeof(line), stdin)) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
      printf("errno %s %s\n", strerrorname_np(errno), path);
    } else {
      char content[64] = "";
      ssize_t n = read(fd, content, sizeof(content) - 1);
      content[n > 0 ? n : 0] = 0;
      content[strcspn(content, "\n")] = 0;
      close(fd);
      printf("opened %s: %s\n", path, content);
    }
    fflush(stdout);
    strcpy(path, INITIAL);
  }
  return 0;
}

static int poke(pid_t pid, unsigned long addr, const char *text, size_t size) {
  if (ptrace(PTRACE_ATTACH, pid, 0, 0)) return fail("attach");
  if (waitpid(pid, NULL, __WALL) < 0) return fail("waitpid");
  for (size_t at = 0; at < size; at += sizeof(long)) {
    long word;
    memcpy(&word, text + at, sizeof(word));
    if (ptrace(PTRACE_POKEDATA, pid, addr + at, word)) return fail("pokedata");
  }
  if (ptrace(PTRACE_DETACH, pid, 0, 0)) return fail("detach");
  return 0;
}

static int attack(const char *method, const char *cgroup, pid_t pid, unsigned long addr, const char *target) {
  if (join(cgroup) || drop()) return 1;
  char text[sizeof(path)] = {0};
  size_t size = strlen(target) + 1;
  if (size > sizeof(text)) return fail("path too long");
  memcpy(text, target, size);
  size = (size + sizeof(long) - 1) / sizeof(long) * sizeof(long);
  if (strcmp(method, "poke") == 0) {
    if (poke(pid, addr, text, size)) return 1;
  } else if (strcmp(method, "vm_writev") == 0) {
    struct iovec local = {text, size}, remote = {(void *)addr, size};
    if (process_vm_writev(pid, &local, 1, &remote, 1, 0) != (ssize_t)size) return fail("process_vm_writev");
  } else if (strcmp(method, "mem") == 0) {
    char mem[64];
    snprintf(mem, sizeof(mem), "/proc/%d/mem", pid);
    int fd = open(mem, O_RDWR);
    if (fd < 0) return fail("open");
    if (pwrite(fd, text, size, (off_t)addr) != (ssize_t)size) return fail("pwrite");
    close(fd);
  } else if (strcmp(method, "environ") == 0) {
    // Read access (PTRACE_MODE_READ), as ps and top have: left alone by the guard.
    char environ_path[64], buffer[256];
    snprintf(environ_path, sizeof(environ_path), "/proc/%d/environ", pid);
    int fd = open(environ_path, O_RDONLY);
    if (fd < 0) return fail("open");
    if (read(fd, buffer, sizeof(buffer)) < 0) return fail("read");
    close(fd);
  } else {
    fprintf(stderr, "unknown method %s\n", method);
    return 2;
  }
  printf("ok %s\n", method);
  return 0;
}

static int traceme(const char *cgroup, const char *other) {
  if (join(cgroup)) return 1;
  int dropped[2];
  if (pipe(dropped)) return fail("pipe");
  fflush(stdout);
  pid_t child = fork();
  if (child < 0) return fail("fork");
  if (child == 0) {
    char byte;
    close(dropped[1]);
    if (join(other) || drop()) _exit(1);
    // Asks only once the parent is uid 65534 too, so that the event shows the tracer as it will trace.
    if (read(dropped[0], &byte, 1) != 1) _exit(fail("wait for the parent"));
    if (ptrace(PTRACE_TRACEME, 0, 0, 0)) _exit(fail("traceme"));
    printf("ok traceme\n");
    _exit(0);
  }
  close(dropped[0]);
  if (drop() || write(dropped[1], "x", 1) != 1) return 1;
  int status;
  if (waitpid(child, &status, 0) < 0) return fail("waitpid");
  return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc == 3 && strcmp(argv[1], "victim") == 0) return victim(argv[2]);
  if (argc == 7 && strcmp(argv[1], "attack") == 0) {
    return attack(argv[2], argv[3], atoi(argv[4]), strtoul(argv[5], NULL, 16), argv[6]);
  }
  if (argc == 4 && strcmp(argv[1], "traceme") == 0) return traceme(argv[2], argv[3]);
  fprintf(stderr, "usage: ptrace_worker victim CGROUP | attack METHOD CGROUP PID ADDR PATH | traceme CGROUP OTHER\n");
  return 2;
}
