// SPDX-License-Identifier: MIT
/*
 * proctap-launch: the gate between "proctap run" and the traced command.
 *
 *   proctap-launch --cgroup DIR [--netns PATH [--resolv-conf FILE]] [--uid N --gid N] --gate-fd FD -- CMD [ARGS...]
 *
 * Joins the cgroup, enters the network namespace (run --isolate; with --resolv-conf FILE also a private
 * mount namespace where FILE is bound over /etc/resolv.conf, as `ip netns exec` does), drops privileges, then blocks until proctap has attached every hook and writes one
 * byte to FD. Only then does it exec CMD, so the command is traced from its first instruction. EOF on
 * FD means proctap gave up: exit 125 without running anything. exec failure: exit 127, as shells do.
 *
 *   proctap-launch --reap DIR --watch-fd FD
 *
 * The reaper: in a session of its own (terminal signals do not reach it), it waits for EOF on FD, which
 * comes when proctap exits however it exits. If the cgroup DIR is still there then (proctap was killed
 * before its own teardown), it kills everything in it and removes it: no traced process outlives proctap.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <unistd.h>

static void die(int code, const char *what, const char *arg)
{
	fprintf(stderr, "proctap: %s%s%s: %s\n", what, arg ? " " : "", arg ? arg : "", strerror(errno));
	exit(code);
}

static void join_cgroup(const char *dir)
{
	char path[4096];
	int fd;

	snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, "0", 1) != 1)
		die(125, "cannot join cgroup", dir);
	close(fd);
}

static void enter_netns(const char *netns, const char *resolv_conf)
{
	int fd = open(netns, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || setns(fd, CLONE_NEWNET))
		die(125, "cannot enter network namespace", netns);
	close(fd);
	if (!resolv_conf)
		return;
	if (unshare(CLONE_NEWNS))
		die(125, "cannot create a mount namespace", NULL);
	/* Our mounts must not propagate back to the host. */
	if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL))
		die(125, "cannot make / a slave mount", NULL);
	if (mount(resolv_conf, "/etc/resolv.conf", NULL, MS_BIND, NULL))
		die(125, "cannot bind over /etc/resolv.conf:", resolv_conf);
}

static void drop_privileges(uid_t uid, gid_t gid)
{
	struct passwd *pw = getpwuid(uid);

	if (pw) {
		if (initgroups(pw->pw_name, gid))
			die(125, "cannot set supplementary groups for", pw->pw_name);
		setenv("HOME", pw->pw_dir, 1);
		setenv("USER", pw->pw_name, 1);
		setenv("LOGNAME", pw->pw_name, 1);
	} else if (setgroups(0, NULL)) {
		die(125, "cannot clear supplementary groups", NULL);
	}
	if (setgid(gid) || setuid(uid))
		die(125, "cannot drop privileges", NULL);
	/* A failed drop is fatal: make sure root cannot be regained. */
	if (uid != 0 && (setuid(0) == 0 || getuid() != uid || geteuid() != uid))
		die(125, "privilege drop did not stick", NULL);
}

static int reap(const char *dir, int watch)
{
	char path[4096], events[256], byte;
	ssize_t n;
	int fd, i;

	setsid();
	signal(SIGINT, SIG_IGN);
	signal(SIGTERM, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	do
		n = read(watch, &byte, 1);
	while (n > 0 || (n < 0 && errno == EINTR));
	snprintf(path, sizeof(path), "%s/cgroup.kill", dir);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return 0; /* proctap removed it itself */
	if (write(fd, "1", 1) != 1) {
		/* no cgroup.kill (before 5.14): nothing else to do from here */
	}
	close(fd);
	snprintf(path, sizeof(path), "%s/cgroup.events", dir);
	for (i = 0; i < 200; i++) { /* up to 2 s for the killed processes to go */
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			break;
		n = read(fd, events, sizeof(events) - 1);
		close(fd);
		events[n > 0 ? n : 0] = 0;
		if (strstr(events, "populated 0"))
			break;
		usleep(10000);
	}
	rmdir(dir);
	return 0;
}

int main(int argc, char **argv)
{
	const char *cgroup = NULL, *netns = NULL, *resolv_conf = NULL;
	long uid = -1, gid = -1;
	int gate = -1, i;
	char byte;
	ssize_t n;

	if (argc == 5 && !strcmp(argv[1], "--reap") && !strcmp(argv[3], "--watch-fd"))
		return reap(argv[2], (int)strtol(argv[4], NULL, 10));
	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--") && i + 1 < argc) {
			i++;
			break;
		} else if (!strcmp(argv[i], "--cgroup") && i + 1 < argc) {
			cgroup = argv[++i];
		} else if (!strcmp(argv[i], "--netns") && i + 1 < argc) {
			netns = argv[++i];
		} else if (!strcmp(argv[i], "--resolv-conf") && i + 1 < argc) {
			resolv_conf = argv[++i];
		} else if (!strcmp(argv[i], "--uid") && i + 1 < argc) {
			uid = strtol(argv[++i], NULL, 10);
		} else if (!strcmp(argv[i], "--gid") && i + 1 < argc) {
			gid = strtol(argv[++i], NULL, 10);
		} else if (!strcmp(argv[i], "--gate-fd") && i + 1 < argc) {
			gate = (int)strtol(argv[++i], NULL, 10);
		} else {
			fprintf(stderr, "proctap-launch: usage: --cgroup DIR [--netns PATH [--resolv-conf FILE]] [--uid N --gid N] --gate-fd FD -- CMD [ARGS]\n");
			return 125;
		}
	}
	if (i >= argc || gate < 0) {
		fprintf(stderr, "proctap-launch: missing command or --gate-fd\n");
		return 125;
	}
	if (cgroup)
		join_cgroup(cgroup);
	if (netns)
		enter_netns(netns, resolv_conf);
	if (uid >= 0)
		drop_privileges((uid_t)uid, gid >= 0 ? (gid_t)gid : (gid_t)uid);
	/* Set after the credential change, which clears it: if proctap dies, the command does not run on untraced. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	do
		n = read(gate, &byte, 1);
	while (n < 0 && errno == EINTR);
	if (n != 1)
		return 125;
	close(gate);
	execvp(argv[i], &argv[i]);
	fprintf(stderr, "proctap: cannot run '%s': %s\n", argv[i], strerror(errno));
	return 127;
}
