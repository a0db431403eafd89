/* The C ABI between resty/ffi.lua and the Go library. resty/ffi.lua repeats
 * these declarations in its ffi.cdef; change both together. */
#ifndef RFFI_H
#define RFFI_H

#include <stddef.h>
#include <stdint.h>

/* Memory written by Lua: it counts the buffers it frees. */
typedef struct {
    uint64_t buffers_freed;
} rffi_shared_t;

/* One finished call (ticket > 0) or one log record (ticket == 0).
 * data comes from malloc() in Go and belongs to whoever drained it: Lua
 * decodes it, then free()s it and bumps rffi_shared_t.buffers_freed. */
typedef struct {
    uint64_t ticket;
    int32_t  status;   /* 0 ok, 1 error, 2 log record */
    int32_t  level;    /* nginx log level of a log record */
    char    *data;     /* MessagePack value; [message, detail] for errors; text for logs */
    size_t   len;
} rffi_completion_t;

#endif
