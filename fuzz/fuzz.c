/*
 * One libFuzzer binary for stgrad's harnesses, since they share the whole
 * library (one instrumented build instead of three): STG_FUZZ=checkpoint,
 * idx, graph or safetensors chooses the harness.
 *
 *   STG_FUZZ=idx ./fuzz/stg-fuzz -max_total_time=60 CORPUS_DIR
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz.h"

const char *fuzz_dir(void)
{
    return access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
}

static int (*harness)(const uint8_t *, size_t);

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    const char *which = getenv("STG_FUZZ");
    static const struct {
        const char *name;
        int (*fn)(const uint8_t *, size_t);
    } all[] = {{"checkpoint", fuzz_checkpoint}, {"idx", fuzz_idx}, {"graph", fuzz_graph},
               {"safetensors", fuzz_safetensors}};
    for (size_t i = 0; which && i < sizeof all / sizeof all[0]; i++)
        if (!strcmp(which, all[i].name))
            harness = all[i].fn;
    if (!harness) {
        fprintf(stderr, "stg-fuzz: set STG_FUZZ to checkpoint, idx, graph or safetensors\n");
        exit(2);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return harness(data, size);
}
