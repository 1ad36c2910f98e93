"""User-facing errors: one line that says what is wrong and how to fix it.

Anything raised as `LangadaptError` is printed by the CLI as a single `error: ...` line with a non-zero
exit code and no traceback; everything else is a bug and keeps its traceback.
"""


class LangadaptError(Exception):
    """A problem with the user's input (config, files, models) rather than a bug in langadapt."""

    exit_code = 1


class ConfigError(LangadaptError):
    """The run config is malformed: unknown key, wrong type, missing value, bad YAML."""

