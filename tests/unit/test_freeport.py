import socket

from onair import freeport


def test_a_free_port_is_below_the_ephemeral_and_node_port_ranges_and_bindable():
    ephemeral_start = int(freeport.EPHEMERAL_RANGE.read_text().split()[0])
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        for _ in range(50):
            port = freeport.free_port(kind)
            assert freeport.LOWEST <= port < min(ephemeral_start, freeport.NODE_PORT_RANGE_START)
            with socket.socket(socket.AF_INET, kind) as s:
                s.bind(("127.0.0.1", port))


def test_a_port_in_use_or_taken_is_never_returned():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", freeport.free_port()))
        listener.listen()
        busy = listener.getsockname()[1]
        taken = {freeport.free_port() for _ in range(20)}
        for _ in range(200):
            port = freeport.free_port(taken=taken)
            assert port != busy and port not in taken
