// The attacker of tests/host/safe_write_test.ts, run as an unprivileged user who owns DIR: replaces every
// temporary file of writeFileAtomic (`.NAME.tmp-*`) in DIR with a symlink to TARGET, as fast as it can,
// until SIGTERM; then prints how many it replaced.
//
//   symlink_swapper DIR TARGET

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t stopping;

static void on_term(int sig) {
  (void)sig;
  stopping = 1;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: symlink_swapper DIR TARGET\n");
    return 2;
  }
  const char *dir = argv[1];
  const char *target = argv[2];
  signal(SIGTERM, on_term);
  unsigned long swapped = 0, made = 0;
  char link[4096], victim[4096];
  while (!stopping) {
    DIR *listing = opendir(dir);
    if (listing == NULL) {
      perror("opendir");
      return 1;
    }
    for (struct dirent *entry; (entry = readdir(listing)) != NULL;) {
      if (entry->d_name[0] != '.' || strstr(entry->d_name, ".tmp-") == NULL || entry->d_type == DT_LNK) continue;
      snprintf(link, sizeof link, "%s/.swap-%lu", dir, made++);
      snprintf(victim, sizeof victim, "%s/%s", dir, entry->d_name);
      if (symlink(target, link) != 0) continue;
      if (rename(link, victim) == 0) swapped++;  // rename(2): the swap is atomic
      else unlink(link);
    }
    closedir(listing);
  }
  printf("%lu\n", swapped);
  return 0;
}
