"""The exit codes of every command, one meaning each, so that a script can tell "there is
work to do" from "the service cannot be reached" from "the command was given wrongly".

docs/reference/cli.md lists them (generated from `EXIT_CODES`).
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    # The command ran and found something to act on: records not yet applied (`lag`),
    # partitions that need a decision (`positions`), events the service would reject.
    ATTENTION = 1
    # The command line or a setting is wrong: nothing was contacted, or what was asked for
    # does not exist (a partition number, a revision).
    USAGE = 2
    # Kafka or PostgreSQL cannot be reached or refuses this client (address, TLS, login,
    # ACL), or cannot take writes now (a read-only server or a hot standby).
    UNAVAILABLE = 3
    # Refused for safety, nothing changed: a schema this release cannot run on, partitions a
    # running consumer owns, a downgrade that drops data without --yes, a migration whose
    # compatibility declaration is wrong.
    REFUSED = 4
    # Anything else: a failure the command could not explain (its log line says more).
    FAILED = 5
    # Interrupted (Ctrl-C), as shells report SIGINT.
    INTERRUPTED = 130


EXIT_CODES: dict[ExitCode, str] = {
    ExitCode.OK: "done; nothing needs attention",
    ExitCode.ATTENTION: "done, and found work to do or a problem in the data: records not yet "
    "applied (`lag`), partitions that need a decision (`positions`)",
    ExitCode.USAGE: "bad usage or configuration: an unknown option, a missing or malformed "
    "setting, a partition or revision that does not exist",
    ExitCode.UNAVAILABLE: "cannot reach a service, or it refuses this client: Kafka or "
    "PostgreSQL down, wrong address, TLS, login or ACL refused, a read-only server",
    ExitCode.REFUSED: "refused for safety, nothing changed: an incompatible schema, partitions "
    "a running consumer owns, a downgrade that drops data without --yes",
    ExitCode.FAILED: "any other failure; the error line names it, and LOG_LEVEL=DEBUG logs its "
    "traceback",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C)",
}


class CommandError(Exception):
    """A command's own failure: the message is the `error:` line (problem; fix), `code` the
    exit code. The command line prints it as it prints every other failure."""

    def __init__(self, message: str, code: ExitCode) -> None:
        super().__init__(message)
        self.code = code
