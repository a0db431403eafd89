/* The C ABI between resty/ffi.lua and the Go library. resty/ffi.lua repeats
 * these declarations in its ffi.cdef: change both together.
 *
 * The hot path never enters the Go runtime from the nginx thread: Lua calls
 * the plain C functions of ring.c, which move records through two rings in
 * memory shared with Go. Only rare operations (init, open, stats, shutdown)
 * are exported Go functions. */
#ifndef RFFI_H
#define RFFI_H

#include <stddef.h>
#include <stdint.h>

/* Kinds of submission records. */
#define RFFI_CALL      0  /* a call whose result Lua waits for */
#define RFFI_SUBMIT    1  /* a call whose result is dropped (fire-and-forget) */
#define RFFI_CANCEL    2  /* cancel the call with this ticket */
#define RFFI_CLOSE     3  /* close the object with this handle */

/* Submit outcomes below zero. */
#define RFFI_BUSY      -1 /* max_in_flight calls are running */
#define RFFI_CLOSING   -2 /* the runtime is shutting down */
#define RFFI_TOO_LARGE -4 /* the argument frame exceeds max_payload */
#define RFFI_NO_MEMORY -6

/* One submission. data (malloc'd by rffi_push) holds the operation name
 * followed by the MessagePack argument frame. The Go pump copies it out
 * before it advances sq_head; ring.c frees it once sq_head has passed.
 * Copies of up to RFFI_BLOCK bytes are blocks of that size, which ring.c
 * keeps on a free list (up to RFFI_SPARE_BLOCKS of them) instead of
 * giving them back to malloc. */
#define RFFI_BLOCK        256
#define RFFI_SPARE_BLOCKS 256
typedef struct {
    uint64_t ticket;
    uint64_t object;
    int32_t  kind;
    int32_t  timeout_ms;
    uint32_t op_len;
    uint32_t pad;
    char    *data;
    size_t   len;
} rffi_task_t;

/* One finished call (ticket > 0) or one log record (ticket == 0).
 * data is a pinned Go buffer, readable by Lua from rffi_pop_completions
 * until rffi_done_completions moves cq_head past it; Go then unpins and
 * reuses it. */
typedef struct {
    uint64_t ticket;
    int32_t  status;   /* 0 ok, 1 error, 2 log record */
    int32_t  level;    /* nginx log level of a log record */
    char    *data;     /* MessagePack value; [message, detail] for errors; text for logs */
    size_t   len;
} rffi_completion_t;

/* Memory shared by Lua (one thread: the nginx worker) and Go (many). Each
 * ring has one side that writes head and one that writes tail; the cache
 * line padding keeps the two sides from sharing lines they both write. */
typedef struct {
    /* submission ring: Lua produces (tail), the Go pump consumes (head) */
    uint64_t sq_tail;
    char     pad0[56];
    uint64_t sq_head;
    int32_t  pump_parked;   /* 1 while the pump sleeps on wake_fd */
    int32_t  wake_fd;       /* eventfd the pump sleeps on */
    char     pad1[48];
    /* completion ring: Go produces (tail, under a Go mutex), Lua consumes */
    uint64_t cq_tail;
    int32_t  armed;         /* 1 when Lua sleeps and wants a doorbell ring */
    int32_t  pad2;
    char     pad3[48];
    uint64_t cq_head;
    uint64_t cq_taken;      /* Lua only: popped, not yet done */
    uint64_t sq_freed;      /* Lua only: submission copies freed up to here */
    void    *spare_blocks;  /* Lua only: free list of RFFI_BLOCK-byte copies */
    uint32_t spare_count;
    uint32_t pad5;
    char     pad4[24];
    /* shared counters and limits */
    int64_t  in_flight;     /* calls accepted and not finished */
    int64_t  max_in_flight;
    int64_t  max_payload;
    int32_t  closing;
    uint32_t sq_mask;       /* capacity - 1 (a power of two) */
    uint32_t cq_mask;
    int32_t  pad6;
    rffi_task_t       *sq;
    rffi_completion_t *cq;
} rffi_shared_t;

/* Called by Lua (no Go involved). rffi_push returns 0 when the record is
 * queued, 1 when it is queued and this push woke the sleeping pump (one
 * eventfd write), or a negative outcome. */
int64_t rffi_push(rffi_shared_t *s, int32_t kind, uint64_t ticket, uint64_t object,
                  const char *op, size_t op_len, const char *args, size_t args_len,
                  int32_t timeout_ms);
int     rffi_pop_completions(rffi_shared_t *s, rffi_completion_t *out, int max);
/* Releases what the last rffi_pop_completions returned. Returns 1 when more
 * completions wait, 0 when the ring is empty and the doorbell is armed. */
int     rffi_done_completions(rffi_shared_t *s);

/* LuaJIT's sampling profiler with Go threads in the process (sigprof.c):
 * resty.ffi calls these around jit.profile.start. */
void    rffi_sigprof_before_start(void);
int     rffi_sigprof_after_start(void);

#endif
