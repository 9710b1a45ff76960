/* libFuzzer target: evt_parse (the jscan scanner plus jansson for data) against the
 * jansson-tree parser it replaced (evt_parse_ref.h). Any difference in verdict, message kind,
 * fields or data aborts. Not part of `make test`; build and run it by hand (clang only):
 *
 *   clang -g -O1 -std=c17 -D_GNU_SOURCE -Ishared -fsanitize=fuzzer,address,undefined \
 *       tests/fuzz/fuzz_envelope.c shared/envelope.c shared/jscan.c shared/jsonw.c \
 *       shared/log.c shared/uuid.c -ljansson -lsodium -lm -lpthread -o /tmp/fuzz_envelope
 *   mkdir -p /tmp/fuzz_envelope_corpus
 *   /tmp/fuzz_envelope -max_total_time=60 -max_len=2048 /tmp/fuzz_envelope_corpus
 *
 * With an empty corpus directory the target seeds itself (LLVMFuzzerInitialize writes a few
 * envelopes into it when it finds none). */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "evt_parse_ref.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static const char *const seeds[] = {
    "{\"specversion\":\"1.0\",\"id\":\"0192f0a4-6b1e-7c3a-9a4e-3b2f1c0d9e8f\",\"source\":"
    "\"ingest/127.0.0.1:8080\",\"type\":\"diary.entry.set.v1\",\"subject\":"
    "\"7a1c0000-0000-4000-8000-000000000001\",\"time\":\"2026-11-24T16:00:00.123Z\","
    "\"datacontenttype\":\"application/json\",\"requestid\":\"4f3c2b1a0d9e8f7a6b5c4d3e2f1a0b9c\","
    "\"clientaddr\":\"127.0.0.1\",\"ifmatch\":3,\"requesthash\":\"9f86d081884c7d65\","
    "\"data\":{\"entry_id\":\"6e2f8b31-4c5d-8e6f-a071-0000000000e1\",\"date\":\"2026-11-24\","
    "\"meal_type\":\"lunch\",\"amount\":150.5}}",
    "{ \"data\" : { \"a\" : [ 1 , -2.5e3 , true , false , null , { } ] } , \"specversion\" : "
    "\"1.0\" , \"id\" : \"0192f0a4-6b1e-7c3a-9a4e-3b2f1c0d9e8f\" , \"type\" : \"diary.x\" , "
    "\"subject\" : \"7a1c0000-0000-4000-8000-000000000001\" , \"source\" : \"s\\u00e9\\ud83d"
    "\\ude00\\n\" , \"time\" : \"t\" , \"x\" : { \"y\" : [ \"z\" ] } }\n",
    "[{\"a\":1,\"b\":2}]",
};

/* Seeds an empty corpus directory (the first directory argument) with the envelopes above. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    for (int i = 1; i < *argc; i++) {
        const char *dir = (*argv)[i];
        DIR *d;
        struct dirent *de;
        int files = 0;

        if (dir[0] == '-' || !(d = opendir(dir)))
            continue;
        while ((de = readdir(d)))
            files += de->d_name[0] != '.';
        closedir(d);
        for (size_t k = 0; !files && k < sizeof(seeds) / sizeof(seeds[0]); k++) {
            char path[4096];
            FILE *f;

            snprintf(path, sizeof(path), "%s/seed-%zu", dir, k);
            if ((f = fopen(path, "wb"))) {
                fwrite(seeds[k], 1, strlen(seeds[k]), f);
                fclose(f);
            }
        }
        break;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char why[2048];

    if (!ref_compare((const char *)data, size, why, sizeof(why))) {
        fprintf(stderr, "evt_parse and the reference differ: %s\n", why);
        abort();
    }
    return 0;
}
