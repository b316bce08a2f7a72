/*
 * libFuzzer harness for the IDX reader (tools/idx.c): every input, plain or
 * gzip, is written to a file and read.  A read either fails with a message
 * that names the file or returns data whose size matches its dims; a crash,
 * a leak or a sanitizer report is a finding.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz.h"

#include "idx.h"

static char path[64];

static void remove_file(void) { unlink(path); }

int fuzz_idx(const uint8_t *data, size_t size)
{
    if (!path[0]) {
        snprintf(path, sizeof path, "%s/fuzz_idx.%ld", fuzz_dir(), (long)getpid());
        atexit(remove_file);
    }
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0)
        abort();
    idx_data d = {0};
    char msg[512] = "";
    if (idx_read(path, &d, msg, sizeof msg) != 0) {
        if (!strstr(msg, path))
            abort(); /* every message names the file */
        return 0;
    }
    int64_t count = 1;
    for (int i = 0; i < d.ndim; i++)
        count *= d.dims[i];
    if (d.ndim < 1 || d.ndim > 4 || count != d.count || !d.data)
        abort();
    idx_free(&d);
    return 0;
}
