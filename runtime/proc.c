/* proc.c: child processes, signals and the few system calls Lua needs.
 *
 * Children are started with posix_spawn from an argv array: file names are
 * never pasted into a shell line.  Only the user's own command strings
 * (--pipe-cmd, --script-new ...) are run through "sh -c", by the Lua side,
 * with file names passed as positional arguments. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pushcap.h"

extern char **environ;

/* The process owns its signal state; this is the one global it needs. */
static volatile sig_atomic_t pending_signal;

static void on_signal(int sig)
{
	pending_signal = sig;
}

void pc_signals_install(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;  /* no SA_RESTART: a blocking read must return */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

int pc_signal_pending(void) { return pending_signal; }

static void on_child(int sig) { (void)sig; }

void pc_sigchld_wakes(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	/* nanosleep returns EINTR on a handled signal even with SA_RESTART,
	 * which keeps reads and writes going as before */
	sa.sa_handler = on_child;
	sa.sa_flags = SA_NOCLDSTOP | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGCHLD, &sa, NULL);
}

static volatile sig_atomic_t pending_hup;

static void on_hup(int sig)
{
	(void)sig;
	pending_hup = 1;
}

void pc_hup_install(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_hup;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGHUP, &sa, NULL);
}

int pc_hup_take(void)
{
	if (!pending_hup)
		return 0;
	pending_hup = 0;
	return 1;
}

static int spawn(const char *const *argv, int in, int out, int err, int group)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&attr);
	/* children get the default SIGPIPE/SIGINT behaviour back */
	sigset_t def;
	sigemptyset(&def);
	sigaddset(&def, SIGPIPE);
	sigaddset(&def, SIGINT);
	sigaddset(&def, SIGTERM);
	sigaddset(&def, SIGHUP);
	posix_spawnattr_setsigdefault(&attr, &def);
	short flags = POSIX_SPAWN_SETSIGDEF;
	if (group) {
		posix_spawnattr_setpgroup(&attr, 0);
		flags |= POSIX_SPAWN_SETPGROUP;
	}
	posix_spawnattr_setflags(&attr, flags);
	if (in >= 0)
		posix_spawn_file_actions_adddup2(&fa, in, 0);
	if (out >= 0)
		posix_spawn_file_actions_adddup2(&fa, out, 1);
	if (err >= 0)
		posix_spawn_file_actions_adddup2(&fa, err, 2);
	pid_t pid;
	int rc = posix_spawnp(&pid, argv[0], &fa, &attr, (char *const *)argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	return rc ? -rc : (int)pid;
}

int pc_spawn(const char *const *argv, int in, int out, int err)
{
	return spawn(argv, in, out, err, 0);
}

int pc_spawn_group(const char *const *argv, int in, int out, int err)
{
	return spawn(argv, in, out, err, 1);
}

int pc_wait(int pid, int *status, int nohang)
{
	for (;;) {
		pid_t r = waitpid(pid, status, nohang ? WNOHANG : 0);
		if (r == pid)
			return 1;
		if (r == 0)
			return 0;
		if (errno != EINTR)
			return -errno;
	}
}

int pc_exit_code(int status)
{
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return 255;
}

int pc_pipe(int *fds)
{
	return pipe2(fds, O_CLOEXEC) ? -errno : 0;
}

int pc_open_write(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	return fd < 0 ? -errno : fd;
}

int pc_open_append(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	return fd < 0 ? -errno : fd;
}

int pc_open_read(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

int pc_close(int fd) { return close(fd) ? -errno : 0; }
int pc_dup2(int oldfd, int newfd) { return dup2(oldfd, newfd) < 0 ? -errno : 0; }
int pc_rename(const char *from, const char *to) { return rename(from, to) ? -errno : 0; }
int pc_unlink(const char *path) { return unlink(path) ? -errno : 0; }
int pc_chown(const char *path, int uid, int gid) { return chown(path, uid, gid) ? -errno : 0; }
int pc_symlink(const char *target, const char *linkpath)
{
	char tmp[4096];
	if (snprintf(tmp, sizeof tmp, "%s.tmp%d", linkpath, (int)getpid()) >= (int)sizeof tmp)
		return -ENAMETOOLONG;
	unlink(tmp);
	if (symlink(target, tmp))
		return -errno;
	if (rename(tmp, linkpath)) {
		int e = errno;
		unlink(tmp);
		return -e;
	}
	return 0;
}

void pc_nap_ns(int64_t ns)
{
	struct timespec ts = { (time_t)(ns / 1000000000), (long)(ns % 1000000000) };
	nanosleep(&ts, NULL);
}

int pc_kill(int pid, int sig) { return kill(pid, sig) ? -errno : 0; }

int pc_getpid(void) { return (int)getpid(); }
int pc_getuid(void) { return (int)getuid(); }
int pc_getgid(void) { return (int)getgid(); }
int pc_unsetenv(const char *name) { return unsetenv(name) ? -errno : 0; }
int pc_setenv(const char *name, const char *value) { return setenv(name, value, 1) ? -errno : 0; }

int64_t pc_mtime_ns(const char *path)
{
	struct stat st;
	if (stat(path, &st))
		return -errno;
	return (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
}
const char *pc_strerror(int errnum) { return strerror(errnum < 0 ? -errnum : errnum); }

int pc_mkdirs(const char *path, int mode)
{
	char tmp[4096];
	size_t len = strlen(path);
	if (len == 0 || len >= sizeof tmp)
		return -ENAMETOOLONG;
	memcpy(tmp, path, len + 1);
	for (char *p = tmp + 1; ; p++) {
		if (*p == '/' || *p == 0) {
			char c = *p;
			*p = 0;
			if (mkdir(tmp, (mode_t)mode) && errno != EEXIST)
				return -errno;
			*p = c;
			if (!c)
				break;
		}
	}
	struct stat st;
	if (stat(path, &st))
		return -errno;
	return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

long pc_listdir(const char *path, char *buf, size_t len)
{
	DIR *d = opendir(path);
	if (!d)
		return -errno;
	size_t need = 0;
	struct dirent *e;
	errno = 0;
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		size_t n = strlen(e->d_name);
		if (need + n + 1 <= len) {
			memcpy(buf + need, e->d_name, n);
			buf[need + n] = 0;
		}
		need += n + 1;
	}
	int err = errno;
	closedir(d);
	return err ? -err : (long)need;
}

int pc_lock(const char *path, int inherit, int *holder)
{
	*holder = 0;
	int fd = open(path, O_RDWR | O_CREAT | (inherit ? 0 : O_CLOEXEC), 0644);
	if (fd < 0)
		return -errno;
	if (flock(fd, LOCK_EX | LOCK_NB)) {
		int err = errno;
		char b[32] = { 0 };
		if (pread(fd, b, sizeof b - 1, 0) > 0)
			*holder = atoi(b);
		close(fd);
		return -err;
	}
	char b[32];
	int n = snprintf(b, sizeof b, "%d\n", (int)getpid());
	if (ftruncate(fd, 0) || pwrite(fd, b, (size_t)n, 0) != n) {
		int err = errno;
		close(fd);
		return -err;
	}
	return fd;
}

int pc_open_new(const char *path, int mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, (mode_t)mode);
	if (fd < 0)
		return -errno;
	/* exactly mode, whatever the umask */
	if (fchmod(fd, (mode_t)mode)) {
		int err = errno;
		close(fd);
		unlink(path);
		return -err;
	}
	return fd;
}

int pc_write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int pc_file_owner(const char *path, int *mode, int *uid, int *gid)
{
	struct stat st;
	if (stat(path, &st))
		return -errno;
	*mode = (int)(st.st_mode & 07777);
	*uid = (int)st.st_uid;
	*gid = (int)st.st_gid;
	return 0;
}

int pc_realpath(const char *path, char *out, size_t len)
{
	char *r = realpath(path, NULL);
	if (!r)
		return -errno;
	size_t n = strlen(r);
	if (n >= len) {
		free(r);
		return -ENAMETOOLONG;
	}
	memcpy(out, r, n + 1);
	free(r);
	return 0;
}

int pc_is_executable(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

int pc_fsync_path(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = fsync(fd) ? -errno : 0;
	close(fd);
	return rc;
}

int pc_exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

static int numeric(const char *s)
{
	if (!*s)
		return 0;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return 0;
	return 1;
}

int pc_lookup_owner(const char *spec, int *uid, int *gid, char *err, size_t errlen)
{
	char user[256], group[256] = "";
	const char *sep = strpbrk(spec, ":.");
	size_t ulen = sep ? (size_t)(sep - spec) : strlen(spec);
	if (ulen == 0 || ulen >= sizeof user || (sep && strlen(sep + 1) >= sizeof group)) {
		snprintf(err, errlen, "bad owner '%s': expected user, user.group, user:group or uid:gid", spec);
		return -EINVAL;
	}
	memcpy(user, spec, ulen);
	user[ulen] = 0;
	if (sep)
		strcpy(group, sep + 1);
	*gid = -1;
	if (numeric(user)) {
		*uid = atoi(user);
	} else {
		struct passwd *pw = getpwnam(user);
		if (!pw) {
			snprintf(err, errlen, "unknown user '%s'", user);
			return -ENOENT;
		}
		*uid = (int)pw->pw_uid;
		*gid = (int)pw->pw_gid;
	}
	if (group[0]) {
		if (numeric(group)) {
			*gid = atoi(group);
		} else {
			struct group *gr = getgrnam(group);
			if (!gr) {
				snprintf(err, errlen, "unknown group '%s'", group);
				return -ENOENT;
			}
			*gid = (int)gr->gr_gid;
		}
	}
	return 0;
}

int pc_set_cpus(const int *cpus, int n)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	for (int i = 0; i < n; i++) {
		if (cpus[i] < 0 || cpus[i] >= CPU_SETSIZE)
			return -EINVAL;
		CPU_SET(cpus[i], &set);
	}
	return sched_setaffinity(0, sizeof set, &set) ? -errno : 0;
}

static int64_t clock_ns(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t pc_now_ns(void) { return clock_ns(CLOCK_REALTIME); }
int64_t pc_mono_ns(void) { return clock_ns(CLOCK_MONOTONIC); }

int64_t pc_tz_offset(int64_t epoch_sec)
{
	time_t t = (time_t)epoch_sec;
	struct tm tm;
	localtime_r(&t, &tm);
	return tm.tm_gmtoff;
}

const char *pc_tz_name(int64_t epoch_sec)
{
	time_t t = (time_t)epoch_sec;
	struct tm tm;
	localtime_r(&t, &tm);
	return tm.tm_zone ? tm.tm_zone : "";
}

int pc_sleep_ns(int64_t ns)
{
	struct timespec ts = { (time_t)(ns / 1000000000), (long)(ns % 1000000000) };
	if (pending_signal)
		return -EINTR;
	return nanosleep(&ts, NULL) ? -errno : 0;
}
