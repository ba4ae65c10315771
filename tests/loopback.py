"""Real servers on loopback for the cases where a backend must not hang: a web server (HTTP, answers only when
asked), a silent TCP server (accepts, never writes), and a proxy that answers every connection with an HTTP
error at once. Each runs in a daemon thread of the test process; ``address`` is 'tcp://127.0.0.1:PORT'."""

import contextlib
import http.server
import socket
import threading


@contextlib.contextmanager
def web_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"tcp://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def raw_server(reply: bytes | None):
    """A TCP server that sends ``reply`` on each connection (None: nothing) and holds it open until closed."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held, stop = [], threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            held.append(conn)
            if reply:
                conn.sendall(reply)

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"tcp://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        listener.close()
        for conn in held:
            conn.close()


PROXY_REPLY = (b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"proxy\"\r\n"
               b"Content-Length: 0\r\n\r\n")


@contextlib.contextmanager
def servers():
    """{'http': address, 'silent': address, 'proxy': address}: the three, started and stopped together."""
    with web_server() as http_address, raw_server(None) as silent, raw_server(PROXY_REPLY) as proxy:
        yield {"http": http_address, "silent": silent, "proxy": proxy}
