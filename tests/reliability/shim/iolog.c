/*
 * iolog: an LD_PRELOAD shim that records, and can fail, the file operations SQLite and
 * pubsub perform on one database, for the power-loss and I/O-error suites.
 *
 * Files are "tracked" when their path starts with IOLOG_PREFIX (the database path, so the
 * database, -wal, -shm and -journal files); the directory IOLOG_DIR is tracked for syncs
 * only. Paths are compared as given, so callers pass absolute paths.
 *
 * Recording (IOLOG_LOG=path, appended to, so several processes can share one log): every
 * mutating operation on a tracked file is appended, in order, to the log as a record
 *
 *     u8 op, u8[3] zero, i32 path_len, i64 offset, i64 length, path bytes, data bytes
 *
 * with op one of C (created by open), W (write at offset, data follows), T (truncate to
 * offset), S (fsync or fdatasync; the directory too), U (unlink). Writes to fd 1 are logged
 * as A records (path empty, the bytes follow): the worker's acknowledgements, placed in the
 * same order as the I/O that preceded them.
 *
 * Failing (IOLOG_FAIL_AT=N): the N-th eligible operation (1-based, counting writes when
 * IOLOG_FAIL_KINDS contains 'w' and syncs when it contains 's') and the IOLOG_FAIL_COUNT-1
 * eligible operations after it (-1: all of them) fail with errno IOLOG_FAIL_ERRNO (EIO by
 * default) without touching the file.
 *
 * Slowing (IOLOG_SYNC_DELAY_US=N): every fsync on a tracked file waits N microseconds first,
 * like a slow disk (the other threads' operations go on meanwhile).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#define MAX_FD 4096

static char *tracked[MAX_FD]; /* fd -> path of a tracked file or the directory */
static int is_dir[MAX_FD];
static const char *prefix;
static size_t prefix_len;
static const char *dir;
static int log_fd = -1;
static long fail_at, fail_count = 1, eligible;
static int fail_errno = EIO, fail_writes, fail_syncs;
static long sync_delay_us;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static int (*real_open)(const char *, int, ...);
static int (*real_open64)(const char *, int, ...);
static int (*real_openat)(int, const char *, int, ...);
static int (*real_openat64)(int, const char *, int, ...);
static int (*real_close)(int);
static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_pwrite64)(int, const void *, size_t, off_t);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_ftruncate)(int, off_t);
static int (*real_ftruncate64)(int, off_t);
static int (*real_unlink)(const char *);

static void init(void) __attribute__((constructor));
static void init(void) {
    real_open = dlsym(RTLD_NEXT, "open");
    real_open64 = dlsym(RTLD_NEXT, "open64");
    real_openat = dlsym(RTLD_NEXT, "openat");
    real_openat64 = dlsym(RTLD_NEXT, "openat64");
    real_close = dlsym(RTLD_NEXT, "close");
    real_write = dlsym(RTLD_NEXT, "write");
    real_pwrite = dlsym(RTLD_NEXT, "pwrite");
    real_pwrite64 = dlsym(RTLD_NEXT, "pwrite64");
    real_fsync = dlsym(RTLD_NEXT, "fsync");
    real_fdatasync = dlsym(RTLD_NEXT, "fdatasync");
    real_ftruncate = dlsym(RTLD_NEXT, "ftruncate");
    real_ftruncate64 = dlsym(RTLD_NEXT, "ftruncate64");
    real_unlink = dlsym(RTLD_NEXT, "unlink");
    prefix = getenv("IOLOG_PREFIX");
    prefix_len = prefix ? strlen(prefix) : 0;
    dir = getenv("IOLOG_DIR");
    const char *log = getenv("IOLOG_LOG");
    if (log && prefix)
        log_fd = real_open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    const char *s;
    if ((s = getenv("IOLOG_FAIL_AT"))) fail_at = atol(s);
    if ((s = getenv("IOLOG_FAIL_COUNT"))) fail_count = atol(s);
    if ((s = getenv("IOLOG_FAIL_ERRNO"))) fail_errno = atoi(s);
    if ((s = getenv("IOLOG_SYNC_DELAY_US"))) sync_delay_us = atol(s);
    s = getenv("IOLOG_FAIL_KINDS");
    if (!s) s = "ws";
    fail_writes = strchr(s, 'w') != NULL;
    fail_syncs = strchr(s, 's') != NULL;
}

static int matches(const char *path) {
    return prefix && path && strncmp(path, prefix, prefix_len) == 0;
}

static int is_the_dir(const char *path) {
    if (!dir || !path) return 0;
    size_t n = strlen(dir);
    return strncmp(path, dir, n) == 0 && (path[n] == 0 || (path[n] == '/' && path[n + 1] == 0));
}

static void put(const void *p, size_t n) {
    const char *c = p;
    while (n > 0) {
        ssize_t w = real_write(log_fd, c, n);
        if (w <= 0) {
            if (w < 0 && errno == EINTR) continue;
            _exit(99);
        }
        c += w;
        n -= (size_t)w;
    }
}

/* Append one record; the caller holds the lock. */
static void record(char op, const char *path, int64_t offset, const void *data, int64_t len) {
    if (log_fd < 0) return;
    int32_t plen = path ? (int32_t)strlen(path) : 0;
    unsigned char head[24] = {0};
    head[0] = (unsigned char)op;
    memcpy(head + 4, &plen, 4);
    memcpy(head + 8, &offset, 8);
    memcpy(head + 16, &len, 8);
    /* One buffer per record keeps records whole even if the process dies mid-way. */
    size_t total = sizeof head + (size_t)plen + (data ? (size_t)len : 0);
    char *buf = malloc(total);
    if (!buf) _exit(98);
    memcpy(buf, head, sizeof head);
    if (plen) memcpy(buf + sizeof head, path, (size_t)plen);
    if (data && len) memcpy(buf + sizeof head + plen, data, (size_t)len);
    put(buf, total);
    free(buf);
}

/* True when this eligible operation must fail; the caller holds the lock. */
static int should_fail(int is_write) {
    if (fail_at <= 0 || (is_write ? !fail_writes : !fail_syncs)) return 0;
    eligible++;
    if (eligible < fail_at) return 0;
    return fail_count < 0 || eligible < fail_at + fail_count;
}

static void remember(int fd, const char *path, int flags, int existed) {
    if (fd < 0 || fd >= MAX_FD) return;
    if (matches(path)) {
        pthread_mutex_lock(&lock);
        free(tracked[fd]);
        tracked[fd] = strdup(path);
        is_dir[fd] = 0;
        if ((flags & O_CREAT) && !existed) record('C', path, 0, NULL, 0);
        pthread_mutex_unlock(&lock);
    } else if (is_the_dir(path)) {
        pthread_mutex_lock(&lock);
        free(tracked[fd]);
        tracked[fd] = strdup(dir);
        is_dir[fd] = 1;
        pthread_mutex_unlock(&lock);
    }
}

static int existed_before(int dirfd, const char *path, int flags) {
    return (flags & O_CREAT) && matches(path) ? faccessat(dirfd, path, F_OK, 0) == 0 : 1;
}

#define OPEN_BODY(call, dirfd)                                  \
    mode_t mode = 0;                                            \
    if (flags & (O_CREAT | O_TMPFILE)) {                        \
        va_list ap;                                             \
        va_start(ap, flags);                                    \
        mode = va_arg(ap, mode_t);                              \
        va_end(ap);                                             \
    }                                                           \
    int existed = existed_before(dirfd, path, flags);           \
    int fd = call;                                              \
    remember(fd, path, flags, existed);                         \
    return fd;

int open(const char *path, int flags, ...) { OPEN_BODY(real_open(path, flags, mode), AT_FDCWD) }
int open64(const char *path, int flags, ...) {
    OPEN_BODY(real_open64(path, flags, mode), AT_FDCWD)
}
int openat(int dfd, const char *path, int flags, ...) {
    OPEN_BODY(real_openat(dfd, path, flags, mode), dfd)
}
int openat64(int dfd, const char *path, int flags, ...) {
    OPEN_BODY(real_openat64(dfd, path, flags, mode), dfd)
}
int __open_2(const char *path, int flags) { return open(path, flags); }
int __open64_2(const char *path, int flags) { return open64(path, flags); }

int close(int fd) {
    if (fd >= 0 && fd < MAX_FD && tracked[fd]) {
        pthread_mutex_lock(&lock);
        free(tracked[fd]);
        tracked[fd] = NULL;
        pthread_mutex_unlock(&lock);
    }
    return real_close(fd);
}

static ssize_t do_pwrite(ssize_t (*fn)(int, const void *, size_t, off_t), int fd,
                         const void *buf, size_t n, off_t off) {
    if (fd < 0 || fd >= MAX_FD || !tracked[fd] || is_dir[fd]) return fn(fd, buf, n, off);
    pthread_mutex_lock(&lock);
    if (should_fail(1)) {
        pthread_mutex_unlock(&lock);
        errno = fail_errno;
        return -1;
    }
    ssize_t w = fn(fd, buf, n, off);
    if (w > 0) record('W', tracked[fd], off, buf, w);
    pthread_mutex_unlock(&lock);
    return w;
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
    return do_pwrite(real_pwrite, fd, buf, n, off);
}
ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off) {
    return do_pwrite(real_pwrite64, fd, buf, n, off);
}

ssize_t write(int fd, const void *buf, size_t n) {
    if (fd == 1 && log_fd >= 0) {
        ssize_t w = real_write(fd, buf, n);
        if (w > 0) {
            pthread_mutex_lock(&lock);
            record('A', NULL, 0, buf, w);
            pthread_mutex_unlock(&lock);
        }
        return w;
    }
    if (fd < 0 || fd >= MAX_FD || !tracked[fd] || is_dir[fd]) return real_write(fd, buf, n);
    off_t off = lseek(fd, 0, SEEK_CUR);
    pthread_mutex_lock(&lock);
    if (should_fail(1)) {
        pthread_mutex_unlock(&lock);
        errno = fail_errno;
        return -1;
    }
    ssize_t w = real_write(fd, buf, n);
    if (w > 0) record('W', tracked[fd], off, buf, w);
    pthread_mutex_unlock(&lock);
    return w;
}

static int do_sync(int (*fn)(int), int fd) {
    if (fd < 0 || fd >= MAX_FD || !tracked[fd]) return fn(fd);
    if (sync_delay_us > 0) usleep((useconds_t)sync_delay_us);
    pthread_mutex_lock(&lock);
    if (should_fail(0)) {
        pthread_mutex_unlock(&lock);
        errno = fail_errno;
        return -1;
    }
    int r = fn(fd);
    if (r == 0) record('S', tracked[fd], 0, NULL, 0);
    pthread_mutex_unlock(&lock);
    return r;
}

int fsync(int fd) { return do_sync(real_fsync, fd); }
int fdatasync(int fd) { return do_sync(real_fdatasync, fd); }

static int do_truncate(int (*fn)(int, off_t), int fd, off_t len) {
    if (fd < 0 || fd >= MAX_FD || !tracked[fd] || is_dir[fd]) return fn(fd, len);
    pthread_mutex_lock(&lock);
    int r = fn(fd, len);
    if (r == 0) record('T', tracked[fd], len, NULL, 0);
    pthread_mutex_unlock(&lock);
    return r;
}

int ftruncate(int fd, off_t len) { return do_truncate(real_ftruncate, fd, len); }
int ftruncate64(int fd, off_t len) { return do_truncate(real_ftruncate64, fd, len); }

int unlink(const char *path) {
    if (!matches(path)) return real_unlink(path);
    pthread_mutex_lock(&lock);
    int r = real_unlink(path);
    if (r == 0) record('U', path, 0, NULL, 0);
    pthread_mutex_unlock(&lock);
    return r;
}
