// At process exit (nginx's worker calls exit() once its event loop has
// nothing left), close every runtime so producers flush and pools close,
// even when the configuration has no exit_worker_by_lua. rffi_shutdown is
// idempotent: an explicit shutdown before makes this a no-op.
#include <stdlib.h>
#include "_cgo_export.h"

static int32_t exit_timeout_ms = 5000;

static void rffi_at_exit(void)
{
    char err[256];
    rffi_shutdown(exit_timeout_ms, err, sizeof err);
}

void rffi_register_at_exit(int32_t timeout_ms)
{
    static int registered;
    exit_timeout_ms = timeout_ms;
    if (!registered) {
        registered = 1;
        atexit(rffi_at_exit);
    }
}
