// Loading the library runs every package's initializer and the dynamic
// loader's relocation pass. Those touch most of the read-only segments
// (the relocation table, init code spread over the whole text, the
// function tables) once, and each touched page stays mapped in every
// worker, counted in its RSS, though the worker never reads it again.
// rffi_release_init_pages drops this object's mappings of its read-only
// segments after loading; the pages stay in the page cache, and the worker
// maps back, one fault at a time, only what it goes on to use.
#define _GNU_SOURCE
#include <link.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

size_t rffi_release_init_pages(void);

struct release_walk {
    uintptr_t self;  // an address inside this library
    size_t released; // bytes advised away
};

static int release_segments(struct dl_phdr_info *info, size_t size, void *arg)
{
    struct release_walk *walk = arg;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    int mine = 0;
    (void)size;

    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t start = info->dlpi_addr + ph->p_vaddr;
        if (ph->p_type == PT_LOAD && walk->self >= start
            && walk->self < start + ph->p_memsz) {
            mine = 1;
        }
    }
    if (!mine) {
        return 0;
    }
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        // Writable segments hold relocated and written data: dropping those
        // pages would lose it. Read-only ones are clean copies of the file.
        if (ph->p_type != PT_LOAD || (ph->p_flags & PF_W)) {
            continue;
        }
        uintptr_t start = info->dlpi_addr + ph->p_vaddr;
        uintptr_t end = start + ph->p_memsz;
        // Whole pages inside the segment only: a page shared with a
        // neighbouring segment is left alone.
        start = (start + page - 1) & ~(page - 1);
        end &= ~(page - 1);
        if (end > start && madvise((void *)start, end - start, MADV_DONTNEED) == 0) {
            walk->released += end - start;
        }
    }
    return 1;
}

size_t rffi_release_init_pages(void)
{
    struct release_walk walk = {(uintptr_t)&rffi_release_init_pages, 0};
    dl_iterate_phdr(release_segments, &walk);
    return walk.released;
}
