"""Errors raised by the sweep readers."""


class SweepError(ValueError):
    """A sweep file that cannot be read: names the file and what is wrong with it."""

    def __init__(self, path, reason):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):
        return type(self), (self.path, self.reason)
