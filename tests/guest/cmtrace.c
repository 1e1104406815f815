/*
 * cmtrace: an LD_PRELOAD shim that logs a process's RDMA CM calls and events (and its
 * sem_wait/sem_post/pthread_cancel) to /tmp/cmtrace.log, one line each with the time and
 * thread id. Written to see what libiscsi 1.19's iSER client does around a connect (see
 * docs/iser-libiscsi.md, ProutReserve.AccessEARO); a debugging aid, not run by CI.
 *
 *   gcc -O1 -shared -fPIC -o /tmp/cmtrace.so tests/guest/cmtrace.c -ldl -lrdmacm
 *   RTGT_GUEST_PRELOAD=/tmp/cmtrace.so RTGT_GUEST_CU=suite:SCSI.ProutReserve \
 *       bash tests/guest/run.sh --scenario iser -v
 *
 * (the iSER scenario's cu-suite mode preloads it into iscsi-test-cu and prints the log).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <rdma/rdma_cma.h>

static void say(const char *fmt, ...)
{
	char b[512];
	struct timespec t;
	clock_gettime(CLOCK_REALTIME, &t);
	int n = snprintf(b, sizeof b, "%ld.%06ld tid=%ld ", (long)t.tv_sec, t.tv_nsec / 1000, (long)syscall(SYS_gettid));
	va_list ap;
	va_start(ap, fmt);
	n += vsnprintf(b + n, sizeof b - n, fmt, ap);
	va_end(ap);
	b[n++] = '\n';
	int fd = open("/tmp/cmtrace.log", O_WRONLY | O_APPEND | O_CREAT, 0644);
	if (fd >= 0) { write(fd, b, n); close(fd); }
}
#define REAL(name) static __typeof__(name) *real; if (!real) real = dlsym(RTLD_NEXT, #name)

static unsigned qpn(struct rdma_cm_id *id) { return id && id->qp ? id->qp->qp_num : 0; }

int rdma_get_cm_event(struct rdma_event_channel *ch, struct rdma_cm_event **ev)
{
	REAL(rdma_get_cm_event);
	say("get_cm_event wait ch=%p fd=%d", (void *)ch, ch ? ch->fd : -1);
	int r = real(ch, ev);
	if (r == 0)
		say("get_cm_event ch=%p id=%p ctx=%p qpn=%u event=%d(%s) status=%d", (void *)ch, (void *)(*ev)->id,
		    (*ev)->id ? (*ev)->id->context : NULL, qpn((*ev)->id), (*ev)->event, rdma_event_str((*ev)->event), (*ev)->status);
	else
		say("get_cm_event ch=%p r=%d", (void *)ch, r);
	return r;
}
int rdma_create_id(struct rdma_event_channel *ch, struct rdma_cm_id **id, void *ctx, enum rdma_port_space ps)
{
	REAL(rdma_create_id);
	int r = real(ch, id, ctx, ps);
	say("create_id ch=%p id=%p ctx=%p r=%d", (void *)ch, (void *)*id, ctx, r);
	return r;
}
int rdma_connect(struct rdma_cm_id *id, struct rdma_conn_param *p)
{
	REAL(rdma_connect);
	int r = real(id, p);
	say("connect id=%p qpn=%u r=%d", (void *)id, qpn(id), r);
	return r;
}
int rdma_disconnect(struct rdma_cm_id *id)
{
	REAL(rdma_disconnect);
	say("disconnect id=%p qpn=%u", (void *)id, qpn(id));
	int r = real(id);
	say("disconnect id=%p r=%d", (void *)id, r);
	return r;
}
int rdma_destroy_id(struct rdma_cm_id *id)
{
	REAL(rdma_destroy_id);
	say("destroy_id id=%p", (void *)id);
	int r = real(id);
	say("destroy_id id=%p done r=%d", (void *)id, r);
	return r;
}
int pthread_cancel(pthread_t t)
{
	REAL(pthread_cancel);
	say("pthread_cancel %lu", (unsigned long)t);
	return real(t);
}
int sem_post(sem_t *s)
{
	REAL(sem_post);
	say("sem_post %p", (void *)s);
	return real(s);
}
int sem_wait(sem_t *s)
{
	REAL(sem_wait);
	say("sem_wait %p", (void *)s);
	int r = real(s);
	say("sem_wait %p done", (void *)s);
	return r;
}
