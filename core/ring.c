// The Lua-facing half of the rings (see rffi.h). These functions run on
// the nginx worker's thread and never block: a full ring or too many calls
// in flight is an immediate error, and the only system call is one eventfd
// write when the Go pump is asleep.
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "rffi.h"

// Submission copies: a call's copy lives from rffi_push until the pump has
// copied it out, a few microseconds. Small ones are RFFI_BLOCK-byte blocks
// kept on a free list, so the common call costs no malloc and no free;
// only Lua's thread touches the list. A block is linked through its first
// bytes while spare.

// copy_size is the allocation behind a copy of len bytes (one byte more,
// so that an empty copy is not a zero-size allocation).
static size_t copy_size(size_t len)
{
    return len + 1 <= RFFI_BLOCK ? RFFI_BLOCK : len + 1;
}

static char *alloc_copy(rffi_shared_t *s, size_t len)
{
    if (copy_size(len) == RFFI_BLOCK && s->spare_blocks != NULL) {
        char *block = s->spare_blocks;
        memcpy(&s->spare_blocks, block, sizeof(void *));
        s->spare_count--;
        return block;
    }
    return malloc(copy_size(len));
}

static void free_copy(rffi_shared_t *s, char *data, size_t len)
{
    if (data == NULL) {
        return;
    }
    if (copy_size(len) == RFFI_BLOCK && s->spare_count < RFFI_SPARE_BLOCKS) {
        memcpy(data, &s->spare_blocks, sizeof(void *));
        s->spare_blocks = data;
        s->spare_count++;
        return;
    }
    free(data);
}

// free_taken releases the submission copies the Go pump has already copied
// out (everything before sq_head). Only Lua's thread calls it.
static void free_taken(rffi_shared_t *s)
{
    uint64_t head = __atomic_load_n(&s->sq_head, __ATOMIC_ACQUIRE);
    for (uint64_t i = s->sq_freed; i != head; i++) {
        rffi_task_t *t = &s->sq[i & s->sq_mask];
        free_copy(s, t->data, t->len);
        t->data = NULL;
    }
    s->sq_freed = head;
}

static void wake_pump(rffi_shared_t *s)
{
    uint64_t one = 1;
    ssize_t rc = write(s->wake_fd, &one, sizeof one);
    (void) rc; // EAGAIN means the counter is already non-zero: awake anyway
}

static int64_t push_record(rffi_shared_t *s, int32_t kind, uint64_t ticket, uint64_t object,
                           char *data, size_t len, uint32_t op_len, int32_t timeout_ms)
{
    uint64_t tail = s->sq_tail;
    uint64_t head = __atomic_load_n(&s->sq_head, __ATOMIC_ACQUIRE);
    if (tail - head > s->sq_mask) {
        return RFFI_BUSY;
    }
    free_taken(s);
    rffi_task_t *t = &s->sq[tail & s->sq_mask];
    t->ticket = ticket;
    t->object = object;
    t->kind = kind;
    t->timeout_ms = timeout_ms;
    t->op_len = op_len;
    t->data = data;
    t->len = len;
    // Publish, then look at the pump: seq_cst on both sides makes sure
    // that either the pump sees the record or we see it parked.
    __atomic_store_n(&s->sq_tail, tail + 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&s->pump_parked, __ATOMIC_SEQ_CST)
        && __atomic_exchange_n(&s->pump_parked, 0, __ATOMIC_SEQ_CST)) {
        // At once, not at the end of the event-loop round: the pump's
        // threads run under SCHED_BATCH (lua/resty/ffi.lua), so waking
        // them does not preempt this thread, and they can start on the
        // round's first calls while this thread pushes the others.
        wake_pump(s);
        return 1;
    }
    return 0;
}

int64_t rffi_push(rffi_shared_t *s, int32_t kind, uint64_t ticket, uint64_t object,
                  const char *op, size_t op_len, const char *args, size_t args_len,
                  int32_t timeout_ms)
{
    if (kind == RFFI_CANCEL || kind == RFFI_CLOSE) {
        return push_record(s, kind, ticket, object, NULL, 0, 0, 0);
    }
    if (__atomic_load_n(&s->closing, __ATOMIC_ACQUIRE)) {
        return RFFI_CLOSING;
    }
    if ((int64_t) args_len > s->max_payload) {
        // rejected before anything is allocated for it
        return RFFI_TOO_LARGE;
    }
    if (__atomic_add_fetch(&s->in_flight, 1, __ATOMIC_ACQ_REL) > s->max_in_flight) {
        __atomic_sub_fetch(&s->in_flight, 1, __ATOMIC_ACQ_REL);
        return RFFI_BUSY;
    }
    char *data = alloc_copy(s, op_len + args_len);
    if (data == NULL) {
        __atomic_sub_fetch(&s->in_flight, 1, __ATOMIC_ACQ_REL);
        return RFFI_NO_MEMORY;
    }
    memcpy(data, op, op_len);
    if (args_len > 0) {
        memcpy(data + op_len, args, args_len);
    }
    int64_t rc = push_record(s, kind, ticket, object, data, op_len + args_len, (uint32_t) op_len, timeout_ms);
    if (rc < 0) {
        free_copy(s, data, op_len + args_len);
        __atomic_sub_fetch(&s->in_flight, 1, __ATOMIC_ACQ_REL);
    }
    return rc;
}

int rffi_pop_completions(rffi_shared_t *s, rffi_completion_t *out, int max)
{
    free_taken(s);
    uint64_t head = s->cq_head;
    uint64_t tail = __atomic_load_n(&s->cq_tail, __ATOMIC_ACQUIRE);
    int n = 0;
    while (head + n != tail && n < max) {
        out[n] = s->cq[(head + n) & s->cq_mask];
        n++;
    }
    s->cq_taken = head + n;
    return n;
}

int rffi_done_completions(rffi_shared_t *s)
{
    uint64_t head = s->cq_head;
    uint64_t taken = s->cq_taken;
    int64_t calls = 0;
    for (uint64_t i = head; i != taken; i++) {
        calls += s->cq[i & s->cq_mask].ticket != 0;
    }
    // Go may reuse the buffers up to here from now on.
    __atomic_store_n(&s->cq_head, taken, __ATOMIC_RELEASE);
    // A call stays in flight until Lua has its result: that bounds the
    // completions waiting in the ring by max_in_flight.
    if (calls > 0) {
        __atomic_sub_fetch(&s->in_flight, calls, __ATOMIC_ACQ_REL);
    }
    if (__atomic_load_n(&s->cq_tail, __ATOMIC_ACQUIRE) != taken) {
        return 1;
    }
    // Empty: ask for a ring, then look once more, so a completion
    // published between the two loads is never left unannounced.
    __atomic_store_n(&s->armed, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&s->cq_tail, __ATOMIC_SEQ_CST) == taken) {
        return 0;
    }
    __atomic_store_n(&s->armed, 0, __ATOMIC_SEQ_CST);
    return 1;
}
