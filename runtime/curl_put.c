/* CURL output mode: uploads through libcurl in this process.
 *
 * pc_upload_start starts a thread that runs one transfer (perform).  Its
 * read callback takes the bytes either from a pipe (when a pipe command or
 * a re-send from a file feeds the upload: the split engine writes into an
 * fd exactly as it would into a curl process's stdin) or, directly, from
 * the pcap writer's own memory (pc_upload_writev: the writer waits until
 * libcurl has copied what it handed over; two copies fewer than a pipe).
 * When the transfer ends early (login refused, server gone, disk full) the
 * thread closes the pipe's read end, or ends the hand-over, at once: the
 * writer gets EPIPE (SIGPIPE is ignored by the host) and the split is sent
 * again later.
 *
 * Options are "name=value" lines (lua/pushcap/curlopts.lua makes them from
 * curl-style arguments; docs/targets.md lists them). */
#include "pushcap.h"

#define CURL_DISABLE_TYPECHECK  /* the calls go through the pointers in lc */
#include <curl/curl.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

struct pc_upload {
	pthread_t th;
	int rfd;                   /* the pipe's read end; -1 for a direct upload */
	CURL *h;
	CURLcode rc;
	long resp;
	char errbuf[CURL_ERROR_SIZE];
	/* direct: what the writer handed over and libcurl has not taken yet */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	const struct iovec *iov;
	int iovcnt;
	size_t off;                /* into iov[0] */
	int eof;                   /* pc_upload_finish: no more bytes */
	int ended;                 /* the transfer is over */
};

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc;

/* libcurl is opened on first use.  Linked in, it and the thirty libraries
 * it brings (TLS, Kerberos, LDAP...) cost every pushcap process 3-4 ms and
 * their constructors at start, and most processes (stream_cat, pcap_split,
 * a push to files, the supervisor) never upload anything. */
static struct {
	CURLcode (*global_init)(long);
	CURL *(*easy_init)(void);
	CURLcode (*easy_setopt)(CURL *, CURLoption, ...);
	CURLcode (*easy_getinfo)(CURL *, CURLINFO, ...);
	void (*easy_cleanup)(CURL *);
	const char *(*easy_strerror)(CURLcode);
	CURLSH *(*share_init)(void);
	CURLSHcode (*share_setopt)(CURLSH *, CURLSHoption, ...);
	struct curl_slist *(*slist_append)(struct curl_slist *, const char *);
	void (*slist_free_all)(struct curl_slist *);
	CURLM *(*multi_init)(void);
	CURLMcode (*multi_add_handle)(CURLM *, CURL *);
	CURLMcode (*multi_remove_handle)(CURLM *, CURL *);
	CURLMcode (*multi_perform)(CURLM *, int *);
	CURLMcode (*multi_poll)(CURLM *, struct curl_waitfd *, unsigned int, int, int *);
	CURLMsg *(*multi_info_read)(CURLM *, int *);
	CURLMcode (*multi_cleanup)(CURLM *);
} lc;
static char load_err[256];

#define curl_global_init lc.global_init
#define curl_easy_init lc.easy_init
#undef curl_easy_setopt /* curl.h may have made these macros */
#undef curl_easy_getinfo
#undef curl_share_setopt
#define curl_easy_setopt lc.easy_setopt
#define curl_easy_getinfo lc.easy_getinfo
#define curl_easy_cleanup lc.easy_cleanup
#define curl_easy_strerror lc.easy_strerror
#define curl_share_init lc.share_init
#define curl_share_setopt lc.share_setopt
#define curl_slist_append lc.slist_append
#define curl_slist_free_all lc.slist_free_all
#define curl_multi_init lc.multi_init
#define curl_multi_add_handle lc.multi_add_handle
#define curl_multi_remove_handle lc.multi_remove_handle
#define curl_multi_perform lc.multi_perform
#define curl_multi_poll lc.multi_poll
#define curl_multi_info_read lc.multi_info_read
#define curl_multi_cleanup lc.multi_cleanup

static int load_curl(void)
{
	void *so = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
	if (!so) {
		snprintf(load_err, sizeof load_err, "cannot load libcurl: %s", dlerror());
		return -1;
	}
	struct { void **to; const char *name; } syms[] = {
		{ (void **)&lc.global_init, "curl_global_init" },
		{ (void **)&lc.easy_init, "curl_easy_init" },
		{ (void **)&lc.easy_setopt, "curl_easy_setopt" },
		{ (void **)&lc.easy_getinfo, "curl_easy_getinfo" },
		{ (void **)&lc.easy_cleanup, "curl_easy_cleanup" },
		{ (void **)&lc.easy_strerror, "curl_easy_strerror" },
		{ (void **)&lc.share_init, "curl_share_init" },
		{ (void **)&lc.share_setopt, "curl_share_setopt" },
		{ (void **)&lc.slist_append, "curl_slist_append" },
		{ (void **)&lc.slist_free_all, "curl_slist_free_all" },
		{ (void **)&lc.multi_init, "curl_multi_init" },
		{ (void **)&lc.multi_add_handle, "curl_multi_add_handle" },
		{ (void **)&lc.multi_remove_handle, "curl_multi_remove_handle" },
		{ (void **)&lc.multi_perform, "curl_multi_perform" },
		{ (void **)&lc.multi_poll, "curl_multi_poll" },
		{ (void **)&lc.multi_info_read, "curl_multi_info_read" },
		{ (void **)&lc.multi_cleanup, "curl_multi_cleanup" },
	};
	for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
		*syms[i].to = dlsym(so, syms[i].name);
		if (!*syms[i].to) {
			snprintf(load_err, sizeof load_err, "libcurl has no %s", syms[i].name);
			return -1;
		}
	}
	return 0;
}

/* One connection cache for the process, shared by every handle: the rename
 * after an upload and the next split's upload reuse the logged-in control
 * connection (FTP) or session (SFTP) instead of logging in again.  A login
 * can cost more than a split's transfer (PAM password hashing, SSH key
 * exchange).  Handles run on the upload threads and the caller's thread, so
 * the share is locked. */
static CURLSH *share;
static pthread_mutex_t share_locks[CURL_LOCK_DATA_LAST];

static void share_lock(CURL *h, curl_lock_data data, curl_lock_access access, void *arg)
{
	(void)h, (void)access, (void)arg;
	pthread_mutex_lock(&share_locks[data]);
}

static void share_unlock(CURL *h, curl_lock_data data, void *arg)
{
	(void)h, (void)arg;
	pthread_mutex_unlock(&share_locks[data]);
}

static void global_init(void)
{
	if (load_curl()) {
		global_rc = CURLE_FAILED_INIT;
		return;
	}
	global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
	if (global_rc != CURLE_OK)
		return;
	for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_init(&share_locks[i], NULL);
	share = curl_share_init();
	if (!share)
		return;  /* no sharing: every handle logs in on its own */
	curl_share_setopt(share, CURLSHOPT_LOCKFUNC, share_lock);
	curl_share_setopt(share, CURLSHOPT_UNLOCKFUNC, share_unlock);
	curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
	curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
	curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
}

static int parse_long(const char *v, long *out)
{
	char *end;
	errno = 0;
	double d = strtod(v, &end);
	if (errno || end == v || *end || d < 0) return -1;
	*out = (long)d;
	return 0;
}

/* "100k", "2M", "1G" (curl's --limit-rate units) */
static int parse_rate(const char *v, curl_off_t *out)
{
	char *end;
	errno = 0;
	double d = strtod(v, &end);
	if (errno || end == v || d < 0) return -1;
	switch (*end) {
	case 0: break;
	case 'k': case 'K': d *= 1024; end++; break;
	case 'm': case 'M': d *= 1024 * 1024; end++; break;
	case 'g': case 'G': d *= 1024.0 * 1024 * 1024; end++; break;
	default: return -1;
	}
	if (*end) return -1;
	*out = (curl_off_t)d;
	return 0;
}

/* Applies one option; 0, or -1 with a message. */
static int apply_one(CURL *h, const char *name, const char *val, char *err, size_t errlen)
{
	long n;
	curl_off_t off;
	CURLcode rc = CURLE_OK;
	if (!strcmp(name, "user")) {
		rc = curl_easy_setopt(h, CURLOPT_USERPWD, val);
	} else if (!strcmp(name, "ssh_key")) {
		rc = curl_easy_setopt(h, CURLOPT_SSH_PRIVATE_KEYFILE, val);
	} else if (!strcmp(name, "ssh_pubkey")) {
		rc = curl_easy_setopt(h, CURLOPT_SSH_PUBLIC_KEYFILE, val);
	} else if (!strcmp(name, "key_passwd")) {
		rc = curl_easy_setopt(h, CURLOPT_KEYPASSWD, val);
	} else if (!strcmp(name, "cacert")) {
		rc = curl_easy_setopt(h, CURLOPT_CAINFO, val);
	} else if (!strcmp(name, "capath")) {
		rc = curl_easy_setopt(h, CURLOPT_CAPATH, val);
	} else if (!strcmp(name, "cert")) {
		rc = curl_easy_setopt(h, CURLOPT_SSLCERT, val);
	} else if (!strcmp(name, "ftp_create_dirs")) {
		rc = curl_easy_setopt(h, CURLOPT_FTP_CREATE_MISSING_DIRS,
				      (long)(strcmp(val, "0") ? CURLFTP_CREATE_DIR_RETRY : CURLFTP_CREATE_DIR_NONE));
	} else if (!strcmp(name, "insecure")) {
		long on = strcmp(val, "0") != 0;
		rc = curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, on ? 0L : 1L);
		if (!rc) rc = curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, on ? 0L : 2L);
		/* sftp: do not insist on a known_hosts entry either */
		if (!rc && on) curl_easy_setopt(h, CURLOPT_SSH_KNOWNHOSTS, NULL);
	} else if (!strcmp(name, "connect_timeout")) {
		if (parse_long(val, &n)) goto bad;
		rc = curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, n);
	} else if (!strcmp(name, "max_time")) {
		if (parse_long(val, &n)) goto bad;
		rc = curl_easy_setopt(h, CURLOPT_TIMEOUT, n);
	} else if (!strcmp(name, "low_speed_limit")) {
		if (parse_long(val, &n)) goto bad;
		rc = curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, n);
	} else if (!strcmp(name, "low_speed_time")) {
		if (parse_long(val, &n)) goto bad;
		rc = curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, n);
	} else if (!strcmp(name, "use_ssl")) {
		long lvl;
		if (!strcmp(val, "all") || !strcmp(val, "1")) lvl = CURLUSESSL_ALL;
		else if (!strcmp(val, "try")) lvl = CURLUSESSL_TRY;
		else if (!strcmp(val, "none") || !strcmp(val, "0")) lvl = CURLUSESSL_NONE;
		else goto bad;
		rc = curl_easy_setopt(h, CURLOPT_USE_SSL, lvl);
	} else if (!strcmp(name, "ftp_pasv")) {
		rc = curl_easy_setopt(h, CURLOPT_FTPPORT, NULL);
	} else if (!strcmp(name, "ftp_port")) {
		rc = curl_easy_setopt(h, CURLOPT_FTPPORT, val);
	} else if (!strcmp(name, "limit_rate")) {
		if (parse_rate(val, &off)) goto bad;
		rc = curl_easy_setopt(h, CURLOPT_MAX_SEND_SPEED_LARGE, off);
	} else if (!strcmp(name, "ipv4")) {
		rc = curl_easy_setopt(h, CURLOPT_IPRESOLVE, (long)CURL_IPRESOLVE_V4);
	} else if (!strcmp(name, "ipv6")) {
		rc = curl_easy_setopt(h, CURLOPT_IPRESOLVE, (long)CURL_IPRESOLVE_V6);
	} else {
		snprintf(err, errlen, "unknown curl option '%s'", name);
		return -1;
	}
	if (rc != CURLE_OK) {
		snprintf(err, errlen, "curl option %s: %s", name, curl_easy_strerror(rc));
		return -1;
	}
	return 0;
bad:
	snprintf(err, errlen, "curl option %s: bad value", name);
	return -1;
}

/* A fresh handle with the common settings and the user's options. */
static CURL *new_handle(const char *url, const char *options, char *errbuf, char *err, size_t errlen)
{
	pthread_once(&global_once, global_init);
	if (load_err[0]) {
		snprintf(err, errlen, "%s", load_err);
		return NULL;
	}
	if (global_rc != CURLE_OK) {
		snprintf(err, errlen, "curl_global_init: %s", curl_easy_strerror(global_rc));
		return NULL;
	}
	CURL *h = curl_easy_init();
	if (!h) {
		snprintf(err, errlen, "curl_easy_init failed");
		return NULL;
	}
	curl_easy_setopt(h, CURLOPT_URL, url);
	if (share)
		curl_easy_setopt(h, CURLOPT_SHARE, share);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_FAILONERROR, 1L);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	errbuf[0] = 0;
	const char *p = options ? options : "";
	while (*p) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		if (len > 0) {
			char line[4096];
			if (len >= sizeof line) {
				snprintf(err, errlen, "curl option line too long");
				goto fail;
			}
			memcpy(line, p, len);
			line[len] = 0;
			char *eq = strchr(line, '=');
			const char *val = "1";
			if (eq) {
				*eq = 0;
				val = eq + 1;
			}
			if (apply_one(h, line, val, err, errlen) < 0) goto fail;
		}
		p += len;
		if (*p == '\n') p++;
	}
	return h;
fail:
	curl_easy_cleanup(h);
	return NULL;
}

static void report(char *err, size_t errlen, CURLcode rc, const char *errbuf, long resp)
{
	const char *msg = errbuf[0] ? errbuf : curl_easy_strerror(rc);
	if (resp > 0)
		snprintf(err, errlen, "curl (%d) %s; server reply %ld", (int)rc, msg, resp);
	else
		snprintf(err, errlen, "curl (%d) %s", (int)rc, msg);
}

/* curl_easy_perform, with the waits kept short.  The easy loop waits up
 * to a second for whatever libcurl asks it to; libcurl 7.88 sets up an FTP
 * data connection (after EPSV) with nothing to wake that wait, so every
 * few uploads stood still for a second before connecting.  Here no wait
 * is longer than 10 ms; a transfer in progress wakes it at once anyway. */
static CURLcode perform(CURL *h)
{
	CURLM *m = curl_multi_init();
	if (!m)
		return CURLE_OUT_OF_MEMORY;
	if (curl_multi_add_handle(m, h) != CURLM_OK) {
		curl_multi_cleanup(m);
		return CURLE_FAILED_INIT;
	}
	CURLcode rc = CURLE_OK;
	int running = 1;
	while (running) {
		if (curl_multi_perform(m, &running) != CURLM_OK) {
			rc = CURLE_FAILED_INIT;
			break;
		}
		if (running && curl_multi_poll(m, NULL, 0, 10, NULL) != CURLM_OK) {
			rc = CURLE_FAILED_INIT;
			break;
		}
	}
	int left;
	CURLMsg *msg;
	while ((msg = curl_multi_info_read(m, &left)))
		if (msg->msg == CURLMSG_DONE && msg->easy_handle == h)
			rc = msg->data.result;
	curl_multi_remove_handle(m, h);
	curl_multi_cleanup(m);
	return rc;
}

static size_t read_direct(pc_upload *u, char *buf, size_t room)
{
	pthread_mutex_lock(&u->mu);
	while (!u->iovcnt && !u->eof)
		pthread_cond_wait(&u->cv, &u->mu);
	size_t got = 0;
	while (u->iovcnt && got < room) {
		size_t left = u->iov->iov_len - u->off;
		size_t k = left < room - got ? left : room - got;
		memcpy(buf + got, (const char *)u->iov->iov_base + u->off, k);
		got += k;
		u->off += k;
		if (u->off == u->iov->iov_len) {
			u->iov++;
			u->iovcnt--;
			u->off = 0;
		}
	}
	if (!u->iovcnt)
		pthread_cond_broadcast(&u->cv); /* the writer may go on */
	pthread_mutex_unlock(&u->mu);
	return got; /* 0: the end of the upload */
}

int pc_upload_writev(pc_upload *u, const struct iovec *iov, int n)
{
	int rc = 0;
	pthread_mutex_lock(&u->mu);
	if (u->ended) {
		rc = -EPIPE;
	} else {
		u->iov = iov;
		u->iovcnt = n;
		u->off = 0;
		pthread_cond_broadcast(&u->cv);
		while (u->iovcnt && !u->ended)
			pthread_cond_wait(&u->cv, &u->mu);
		if (u->iovcnt)
			rc = -EPIPE; /* the transfer ended before it took everything */
	}
	u->iov = NULL;
	u->iovcnt = 0;
	pthread_mutex_unlock(&u->mu);
	return rc;
}

static size_t read_cb(char *buf, size_t size, size_t nitems, void *arg)
{
	pc_upload *u = arg;
	if (u->rfd < 0)
		return read_direct(u, buf, size * nitems);
	for (;;) {
		ssize_t n = read(u->rfd, buf, size * nitems);
		if (n >= 0) return (size_t)n;
		if (errno == EINTR) continue;
		return CURL_READFUNC_ABORT;
	}
}

static void *upload_thread(void *arg)
{
	pc_upload *u = arg;
	u->rc = perform(u->h);
	curl_easy_getinfo(u->h, CURLINFO_RESPONSE_CODE, &u->resp);
	/* the writer sees EPIPE from now on instead of blocking forever */
	if (u->rfd >= 0) {
		close(u->rfd);
		u->rfd = -1;
	}
	pthread_mutex_lock(&u->mu);
	u->ended = 1;
	pthread_cond_broadcast(&u->cv);
	pthread_mutex_unlock(&u->mu);
	return NULL;
}

pc_upload *pc_upload_start(const char *url, const char *options, int *write_fd, char *err, size_t errlen)
{
	pc_upload *u = calloc(1, sizeof *u);
	if (!u) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	u->h = new_handle(url, options, u->errbuf, err, errlen);
	if (!u->h) {
		free(u);
		return NULL;
	}
	pthread_mutex_init(&u->mu, NULL);
	pthread_cond_init(&u->cv, NULL);
	int fds[2] = { -1, -1 };
	if (write_fd && pipe2(fds, O_CLOEXEC) < 0) {
		snprintf(err, errlen, "pipe: %s", strerror(errno));
		curl_easy_cleanup(u->h);
		pthread_cond_destroy(&u->cv);
		pthread_mutex_destroy(&u->mu);
		free(u);
		return NULL;
	}
	u->rfd = fds[0];
	/* Large pipe and upload buffers: with the 64 KiB defaults the writer
	 * and the upload thread hand over the data in small pieces, and the
	 * context switches cost more than the transfer on a fast link. */
	if (write_fd)
		fcntl(fds[1], F_SETPIPE_SZ, 1 << 20);
	curl_easy_setopt(u->h, CURLOPT_UPLOAD, 1L);
	curl_easy_setopt(u->h, CURLOPT_UPLOAD_BUFFERSIZE, 2L << 20);
	curl_easy_setopt(u->h, CURLOPT_READFUNCTION, read_cb);
	curl_easy_setopt(u->h, CURLOPT_READDATA, u);
	int rc = pthread_create(&u->th, NULL, upload_thread, u);
	if (rc) {
		snprintf(err, errlen, "pthread_create: %s", strerror(rc));
		if (write_fd) {
			close(fds[0]);
			close(fds[1]);
		}
		curl_easy_cleanup(u->h);
		pthread_cond_destroy(&u->cv);
		pthread_mutex_destroy(&u->mu);
		free(u);
		return NULL;
	}
	if (write_fd)
		*write_fd = fds[1];
	return u;
}

int pc_upload_finish(pc_upload *u, char *err, size_t errlen)
{
	if (!u) return 0;
	pthread_mutex_lock(&u->mu);
	u->eof = 1; /* a direct upload ends here (a piped one when its pipe closes) */
	pthread_cond_broadcast(&u->cv);
	pthread_mutex_unlock(&u->mu);
	pthread_join(u->th, NULL);
	int ret = 0;
	if (u->rc != CURLE_OK) {
		report(err, errlen, u->rc, u->errbuf, u->resp);
		ret = -1;
	}
	curl_easy_cleanup(u->h);
	pthread_cond_destroy(&u->cv);
	pthread_mutex_destroy(&u->mu);
	free(u);
	return ret;
}

/* The path part of a URL ("sftp://host:22/a/b/" -> "/a/b/"). */
static const char *url_path(const char *url)
{
	const char *p = strstr(url, "://");
	p = p ? p + 3 : url;
	p = strchr(p, '/');
	return p ? p : "/";
}

int pc_curl_rename(const char *dir_url, const char *from, const char *to, const char *options,
		   char *err, size_t errlen)
{
	char errbuf[CURL_ERROR_SIZE];
	CURL *h = new_handle(dir_url, options, errbuf, err, errlen);
	if (!h) return -1;
	struct curl_slist *cmds = NULL;
	char a[8192], b[8192];
	int sftp = !strncmp(dir_url, "sftp://", 7);
	if (sftp) {
		/* full paths; libcurl's sftp quote takes "..." around names */
		const char *dir = url_path(dir_url);
		snprintf(a, sizeof a, "rename \"%s%s\" \"%s%s\"", dir, from, dir, to);
		cmds = curl_slist_append(cmds, a);
		curl_easy_setopt(h, CURLOPT_QUOTE, cmds);
	} else {
		/* after the CWD into the URL's directory */
		snprintf(a, sizeof a, "RNFR %s", from);
		snprintf(b, sizeof b, "RNTO %s", to);
		cmds = curl_slist_append(cmds, a);
		cmds = curl_slist_append(cmds, b);
		curl_easy_setopt(h, CURLOPT_POSTQUOTE, cmds);
	}
	curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
	CURLcode rc = perform(h);
	long resp = 0;
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp);
	int ret = 0;
	if (rc != CURLE_OK) {
		report(err, errlen, rc, errbuf, resp);
		ret = -1;
	}
	curl_easy_cleanup(h);
	curl_slist_free_all(cmds);
	return ret;
}
