"""Deleting one finished recording session from the volume: its parts, then its sidecar.

Used by the recorder's ``DELETE /recordings/<session>`` (when the recorder runs) and by
``onair agent recorder --delete-session`` (the one-shot pod the operator starts when none does),
so both delete exactly the same files. The sidecar goes last: a deletion cut short leaves a
sidecar that still lists the session, so the Recording object stays and the deletion is retried;
never parts without a sidecar, which a restarted recorder would "recover" as a new session.
Deleting a session that is not there any more deletes nothing and succeeds (retries are safe).
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from .naming import list_parts, livestream_slug, sidecar_name


TERMINATION_LOG = "/dev/termination-log"


class NotASessionOf(ValueError):
    """The name is not a session of this livestream."""


def check_session(livestream: str, session: str) -> None:
    if not re.fullmatch(rf"{re.escape(livestream_slug(livestream))}_\d{{8}}T\d{{6}}Z", session):
        raise NotASessionOf(f"{session!r} is not a recording session of {livestream} "
                            f"(expected {livestream_slug(livestream)}_<YYYYmmddTHHMMSSZ>)")


def delete_session(output_dir: Path, livestream: str, session: str) -> list[str]:
    """Delete ``session``'s files in ``output_dir``; the names deleted (none when it was gone).

    Raises ``NotASessionOf`` for a name of another livestream, ``OSError`` when a file cannot be
    deleted (what was deleted before stays deleted; the sidecar stays while any part does)."""
    check_session(livestream, session)
    deleted: list[str] = []
    for part in list_parts(output_dir, livestream):
        if part.prefix == session:
            _unlink(output_dir / part.name, deleted)
    _unlink(output_dir / f".{sidecar_name(session)}.tmp", deleted)
    _unlink(output_dir / sidecar_name(session), deleted)
    return deleted


def _unlink(path: Path, deleted: list[str]) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise OSError(exc.errno, f"cannot delete {path.name}: {exc.strerror}") from None
    deleted.append(path.name)


def main(argv: list[str]) -> int:
    """``onair agent recorder --delete-session SESSION --livestream NS/NAME [--output-dir DIR]``."""
    parser = argparse.ArgumentParser(prog="onair agent recorder --delete-session")
    parser.add_argument("--delete-session", required=True, metavar="SESSION")
    parser.add_argument("--livestream", required=True, metavar="NAMESPACE/NAME")
    parser.add_argument("--output-dir", default="/recordings", type=Path)
    args = parser.parse_args(argv)
    if not args.output_dir.is_dir():
        print(f"recordings volume {args.output_dir} is not mounted (no such directory)", file=sys.stderr)
        return 1
    try:
        deleted = delete_session(args.output_dir, args.livestream, args.delete_session)
    except (NotASessionOf, OSError) as exc:
        print(f"cannot delete recording {args.delete_session}: {exc}", file=sys.stderr)
        return 1
    said = f"deleted recording {args.delete_session}: " + (", ".join(deleted) or "no file was left")
    print(said)
    _tell_kubelet(said)
    return 0


def _tell_kubelet(message: str) -> None:
    """In a pod, the kubelet hands the termination log to the pod's status, where the operator
    reads what was deleted; elsewhere there is no such file and nothing is written."""
    path = Path(TERMINATION_LOG)
    if path.exists():
        try:
            path.write_text(message[:4000])
        except OSError:
            pass
