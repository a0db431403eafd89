// LuaJIT's sampling profiler (jit.p, jit.profile) arms ITIMER_PROF and
// installs a SIGPROF handler without SA_ONSTACK. The timer counts the CPU
// time of every thread of the process, and the kernel gives the signal to
// the thread that was running when it expired: with Go in the process,
// often a Go thread, which Go keeps SIGPROF unblocked on. The handler
// then runs on a goroutine's small stack and the worker dies (measured:
// SIGSEGV or "traceback did not unwind completely" within seconds).
//
// resty.ffi wraps jit.profile.start: before it, rffi_sigprof_before_start
// makes SIGPROF ignored if nothing handles it, so LuaJIT's stop restores
// SIG_IGN and a signal still in flight to a Go thread is harmless; after
// it, rffi_sigprof_after_start puts a handler of ours, on the signal
// stack, in front of LuaJIT's: on the thread that started the profiler
// (the nginx worker's, where the Lua VM runs) it calls LuaJIT's handler;
// on any other thread it drops the sample. The Lua profile stays fair: the
// samples it keeps are those taken while the Lua thread was running.
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

void rffi_sigprof_before_start(void);
int rffi_sigprof_after_start(void);

static struct sigaction profiler_action; // LuaJIT's, called on lua_tid
static volatile pid_t lua_tid;

static void forward_sigprof(int sig, siginfo_t *info, void *ucontext)
{
    int saved_errno = errno;
    if ((pid_t)syscall(SYS_gettid) == lua_tid) {
        if (profiler_action.sa_flags & SA_SIGINFO) {
            profiler_action.sa_sigaction(sig, info, ucontext);
        } else if (profiler_action.sa_handler != SIG_IGN
                   && profiler_action.sa_handler != SIG_DFL) {
            profiler_action.sa_handler(sig);
        }
    }
    errno = saved_errno;
}

void rffi_sigprof_before_start(void)
{
    struct sigaction current;
    if (sigaction(SIGPROF, NULL, &current) == 0 && !(current.sa_flags & SA_SIGINFO)
        && current.sa_handler == SIG_DFL) {
        struct sigaction ignore;
        memset(&ignore, 0, sizeof ignore);
        ignore.sa_handler = SIG_IGN;
        sigaction(SIGPROF, &ignore, NULL);
    }
}

// Returns 1 when the guard is in place, 0 when there was no handler to
// guard (the profiler did not start), -1 on a failed sigaction.
int rffi_sigprof_after_start(void)
{
    struct sigaction current, guard;
    if (sigaction(SIGPROF, NULL, &current) != 0) {
        return -1;
    }
    if ((current.sa_flags & SA_SIGINFO) && current.sa_sigaction == forward_sigprof) {
        return 1; // already guarded
    }
    if (!(current.sa_flags & SA_SIGINFO)
        && (current.sa_handler == SIG_IGN || current.sa_handler == SIG_DFL)) {
        return 0;
    }
    // Block SIGPROF while swapping, so no signal sees half a record.
    sigset_t prof, old;
    sigemptyset(&prof);
    sigaddset(&prof, SIGPROF);
    pthread_sigmask(SIG_BLOCK, &prof, &old);
    profiler_action = current;
    lua_tid = (pid_t)syscall(SYS_gettid);
    memset(&guard, 0, sizeof guard);
    guard.sa_sigaction = forward_sigprof;
    guard.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
    sigfillset(&guard.sa_mask);
    int rc = sigaction(SIGPROF, &guard, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc == 0 ? 1 : -1;
}
