"""Errors a user can fix: a config, a data folder, a checkpoint, the environment a run starts in.

The tools report them in one line naming the file and the problem (engine/cli.py); any other exception is
a bug and keeps its traceback. Each subclass also derives from the built-in type its callers catch."""
import os
import stat


class UserError(Exception):
    """Input the user can fix; the message names the file (or key, or flag) and the problem."""


class RunError(UserError, RuntimeError):
    """A run that cannot start or go on as configured (too many unusable sweeps, nothing usable listed,
    checkpoints it cannot resume from, a launcher without its environment)."""


def special_file(path) -> str:
    """What `path` is when it is a FIFO, a socket or a device ('' for a regular file, a directory or a missing
    path, which opening refuses at once with its own error). Reading a FIFO waits for a writer, and a device
    may never end: callers refuse these, naming the path."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return ''
    for is_kind, kind in ((stat.S_ISFIFO, 'a FIFO (named pipe)'), (stat.S_ISSOCK, 'a socket'),
                          (stat.S_ISCHR, 'a character device'), (stat.S_ISBLK, 'a block device')):
        if is_kind(mode):
            return f'{kind}, not a regular file (reading it could wait forever)'
    return ''
