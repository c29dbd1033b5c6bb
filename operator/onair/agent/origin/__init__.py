"""The origin role: stores the transcoder's output, owns the DVR, serves players. See server.py."""


def main(argv: list[str]) -> int:
    from .server import main as serve

    return serve(argv)
