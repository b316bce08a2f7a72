/* The fuzzing harnesses (see fuzz.c). */
#ifndef STG_FUZZ_H
#define STG_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int fuzz_checkpoint(const uint8_t *data, size_t size);
int fuzz_idx(const uint8_t *data, size_t size);
int fuzz_graph(const uint8_t *data, size_t size);
int fuzz_safetensors(const uint8_t *data, size_t size);
/* Where the harnesses write their files: /dev/shm when it exists (saves
 * fsync, and a disk's fsync would bound the executions per second), else /tmp. */
const char *fuzz_dir(void);

#endif
