"""Errors raised by the sweep readers."""
from ...errors import UserError, special_file


class SweepError(UserError, ValueError):
    """A sweep file that cannot be read: names the file and what is wrong with it."""

    def __init__(self, path, reason):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):
        return type(self), (self.path, self.reason)


def refuse_special(path):
    """SweepError naming `path` when it is a FIFO, socket or device: reading one could block forever."""
    problem = special_file(path)
    if problem:
        raise SweepError(path, f'it is {problem}')
