/* diaryctl: the operator tool. Each subcommand is one row of the table in diaryctl.c and
 * one function with this signature; argv[0] is the subcommand's name. */
#ifndef DIARYCTL_H
#define DIARYCTL_H

struct ctl_command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *usage;
    const char *summary;
};

/* Exit codes: 0 success, 1 the work failed or found a difference, 2 bad usage. */
enum { CTL_OK = 0, CTL_FAIL = 1, CTL_USAGE = 2 };

int ctl_migrate(int argc, char **argv);
int ctl_config(int argc, char **argv);
int ctl_verify(int argc, char **argv);
int ctl_lag(int argc, char **argv);
int ctl_tail(int argc, char **argv);
int ctl_audit(int argc, char **argv);
int ctl_import_legacy(int argc, char **argv);
int ctl_dlq(int argc, char **argv);
int ctl_topics(int argc, char **argv);
int ctl_replay(int argc, char **argv);

#endif
