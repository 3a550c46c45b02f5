"""How every tools/*.py entry point ends: `run_main(main)`.

- A user error (errors.UserError: config, data, checkpoint; OSError: a file the system refuses, a full
  disk) ends with one line `<tool>: error: <message>` and exit status 1. With --debug the traceback is
  printed as well; the run's log file (the 'also_pcdet' logger's file handlers) gets it either way.
- Any other exception is a bug: its traceback is printed as Python prints it.
- SIGTERM stops the tool like Ctrl-C (KeyboardInterrupt unwinds the run, loader workers are shut down):
  exit status 143 (130 for Ctrl-C), one line, no traceback.
- The return value of `main` is the exit status when it is an int, else 0."""
import logging
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

from ..errors import UserError

DEBUG_FLAG = '--debug'
USER_ERROR_STATUS = 1
LOGGER = 'also_pcdet'  # run_setup.create_logger's logger


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread."""


def add_debug_flag(parser):
    parser.add_argument(DEBUG_FLAG, action='store_true',
                        help='on a config, data or checkpoint error print the traceback too, not only the message '
                             '(put it before --set)')


def is_user_error(err: BaseException) -> bool:
    return isinstance(err, (UserError, OSError))


def one_line(err: BaseException) -> str:
    """The message of `err`; for an error a DataLoader raised again from its worker (whose message carries the
    worker's traceback) the worker's own last line."""
    text = str(err).strip()
    if 'Original Traceback' in text:
        text = text.splitlines()[-1].split(': ', 1)[-1]
    return text


def raise_terminated(signum, frame):
    raise Terminated()


@contextmanager
def deferred_signals(signums=(signal.SIGTERM, signal.SIGINT)):
    """Hold SIGTERM and Ctrl-C until the block ends, then act on the first that came as its handler would have:
    work that must not be cut in half (a checkpoint being written) finishes first. Outside the main thread,
    where Python runs no signal handler, the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = {signum: signal.signal(signum, lambda number, frame: received.append(number)) for signum in signums}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if received:
        handler = previous[received[0]]
        if callable(handler):
            handler(received[0], None)
        elif handler == signal.SIG_DFL:
            signal.raise_signal(received[0])


def _log_to_files(message: str, err: BaseException):
    """`message` and the traceback of `err` into the run's log file(s), not to the console."""
    logger = logging.getLogger(LOGGER)
    record = logger.makeRecord(logger.name, logging.ERROR, __file__, 0, message, None,
                               (type(err), err, err.__traceback__))
    for handler in logger.handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def run_main(main, argv=None):
    """Run `main(argv)` (default: the command line) and exit as the module docstring says."""
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = DEBUG_FLAG in (argv[:argv.index('--set')] if '--set' in argv else argv)
    tool = Path(sys.argv[0]).name
    signal.signal(signal.SIGTERM, raise_terminated)
    try:
        status = main(argv)
    except KeyboardInterrupt as err:
        how = 'SIGTERM' if isinstance(err, Terminated) else 'Ctrl-C'
        _log_to_files(f'stopped by {how}', err)
        print(f'{tool}: stopped by {how}', file=sys.stderr)
        sys.exit(143 if isinstance(err, Terminated) else 130)
    except Exception as err:
        if not is_user_error(err):
            raise
        message = one_line(err)
        _log_to_files(message, err)
        if debug:
            raise
        print(f'{tool}: error: {message}', file=sys.stderr)
        sys.exit(USER_ERROR_STATUS)
    sys.exit(status if isinstance(status, int) and not isinstance(status, bool) else 0)
