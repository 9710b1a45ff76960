#include "diaryctl.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "log.h"

static int ctl_help(int argc, char **argv);

static const struct ctl_command commands[] = {
    {"topics", ctl_topics, "topics describe|apply [--dry-run] [--alter] [--json]",
     "check the cluster's topics against topics/*.yaml; create missing ones"},
    {"migrate", ctl_migrate, "migrate [--dry-run] [--dir DIR] [--url URL]",
     "apply the versioned, checksummed migrations in schema/migrations"},
    {"replay", ctl_replay,
     "replay --url DB [--group G] [--from-*] [--follow] [--jobs N] [--dry-run]",
     "apply a range of diary.events into a database with the workers' apply code"},
    {"verify", ctl_verify, "verify [--limit N] [--json] URL_A URL_B",
     "compare two databases per table and per user; exit 0 only when equal"},
    {"lag", ctl_lag, "lag [--group G] [--json]",
     "per partition: log end, what the database applied, the lag"},
    {"tail", ctl_tail, "tail [--changes|--dlq] [--user ID] [--from-beginning] [-e]",
     "follow the write log or the change stream, readable"},
    {"audit", ctl_audit, "audit --user ID [--from T] [--to T] [--json]",
     "a user's writes from the log: time, type, request id, client address"},
    {"import-legacy", ctl_import_legacy, "import-legacy [--dry-run] [--json] DIR",
     "bring the old application's JSON files into the log as events"},
    {"dlq", ctl_dlq, "dlq list|show P:O|redrive (P:O|--event ID|--all)",
     "inspect dead letters; send chosen ones back to diary.events"},
    {"config", ctl_config, "config", "print every setting, its default and meaning (Markdown)"},
    {"help", ctl_help, "help", "this list"},
};

static int ctl_help(int argc, char **argv)
{
    printf("usage: diaryctl COMMAND [options]\n\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        printf("  %-48s %s\n", commands[i].usage, commands[i].summary);
    return CTL_OK;
}

int ctl_config(int argc, char **argv)
{
    config_write_markdown(stdout);
    return CTL_OK;
}

int main(int argc, char **argv)
{
    if (sodium_init() < 0) {
        fprintf(stderr, "diaryctl: libsodium failed to initialise\n");
        return CTL_FAIL;
    }
    log_init("diaryctl", log_level_parse(config_str("DIARY_LOG_LEVEL")));
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
        return ctl_help(argc, argv);
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "diaryctl: unknown command \"%s\" (diaryctl help lists them)\n", argv[1]);
    return CTL_USAGE;
}
