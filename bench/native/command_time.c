// Runs one command (stdin, stdout from /dev/null; stderr kept) and prints its wall time and the CPU time it
// and its children used: "WALL_NS USER_US SYS_US EXIT". The wall clock runs from fork to wait4, so none of
// the caller's own spawning is in it; the CPU times come from wait4's rusage, less sensitive than the wall
// clock to other work on a shared machine.
#include <fcntl.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: command_time PROGRAM [ARG...]\n");
		return 2;
	}
	struct timespec start, end;
	clock_gettime(CLOCK_MONOTONIC, &start);
	pid_t pid = fork();
	if (pid < 0) {
		perror("fork");
		return 1;
	}
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);
		if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0) _exit(127);
		execvp(argv[1], argv + 1);
		perror("exec");
		_exit(127);
	}
	int status;
	struct rusage usage;
	if (wait4(pid, &status, 0, &usage) < 0) {
		perror("wait4");
		return 1;
	}
	clock_gettime(CLOCK_MONOTONIC, &end);
	long long wall = (end.tv_sec - start.tv_sec) * 1000000000LL + (end.tv_nsec - start.tv_nsec);
	long long user = usage.ru_utime.tv_sec * 1000000LL + usage.ru_utime.tv_usec;
	long long sys = usage.ru_stime.tv_sec * 1000000LL + usage.ru_stime.tv_usec;
	int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	printf("%lld %lld %lld %d\n", wall, user, sys, code);
	return 0;
}
