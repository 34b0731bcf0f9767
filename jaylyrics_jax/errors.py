"""The one exception type users see for bad input.

Every message names the problem and the fix. The command-line entry points
print it without a traceback and exit non-zero.
"""


class JaylyricsError(Exception):
  """A problem with the user's input, files or flags, with its fix."""
