"""The one exception type users see: a clear message naming the input and the problem."""


class LingcoderError(ValueError):
    """Bad input (a file, a config key, a checkpoint, a request). The CLI prints it without a traceback."""
