/* SPDX-License-Identifier: MIT */
/* The CLI commands, one file each (attacher/cmd_<name>.c).  Each returns the
 * process exit code (enum ma_exit) and prints its own error via ma_errmsg(). */
#ifndef MA_COMMANDS_H
#define MA_COMMANDS_H

int ma_cmd_info(int argc, char **argv);
int ma_cmd_stacks(int argc, char **argv);
int ma_cmd_attach(int argc, char **argv);
/* attach, optionally printing every thread's stack first (`memattach PID`) */
int ma_cmd_attach_opts(int argc, char **argv, int show_stacks);
int ma_cmd_detach(int argc, char **argv);
int ma_cmd_report(int argc, char **argv);
int ma_cmd_heap(int argc, char **argv);
/* Developer command: print the offsets of a binary or process */
int ma_cmd_offsets(int argc, char **argv);
int ma_cmd_ps(int argc, char **argv);

#endif
