"""The course needs no network: the test run refuses every non-loopback connection.

The root ``conftest.py`` installs the guard of ``tests/netguard/sitecustomize.py`` in this process
and, through ``PYTHONPATH``, in every Python process the tests start. To make sure no test here
ever sends a packet to another machine, even if the guard were broken, the guard's reference to
the real ``connect`` is replaced by a tripwire before each refused attempt: a connection that got
past the guard would hit the tripwire, not the network.
"""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
import textwrap
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

PUBLIC_V4 = ("93.184.216.34", 80)
PUBLIC_V6 = ("2606:2800:220:1:248:1893:25c8:1946", 80)
GUARD_MESSAGE = "network access is disabled during the tests"
NETGUARD_DIR = Path(__file__).resolve().parent / "netguard"


def _guard_module():
    module = sys.modules[socket.socket.connect.__module__]
    assert hasattr(module, "NetworkDisabledError"), "the network guard is not installed"
    return module


class Tripwire(AssertionError):
    pass


def _tripwire(*args, **kwargs):
    raise Tripwire(f"a call got past the network guard: {args!r}")


@pytest.fixture
def guard(monkeypatch):
    module = _guard_module()
    for name in ("connect", "connect_ex", "sendto", "gethostbyname", "gethostbyname_ex"):
        monkeypatch.setitem(module._ORIGINAL, name, _tripwire)
    real_getaddrinfo = module._ORIGINAL["getaddrinfo"]

    def numeric_only(host, port, family=0, type=0, proto=0, flags=0):
        # a numeric address is parsed locally; AI_NUMERICHOST forbids any DNS query
        return real_getaddrinfo(host, port, family, type, proto, flags | socket.AI_NUMERICHOST)

    monkeypatch.setitem(module._ORIGINAL, "getaddrinfo", numeric_only)
    return module


def test_guard_is_active_and_inherited_by_child_processes():
    assert getattr(socket.socket.connect, "m6rec_netguard", False)
    assert os.environ["M6REC_NO_NETWORK"] == "1"
    assert str(NETGUARD_DIR) in os.environ["PYTHONPATH"].split(os.pathsep)
    assert os.environ.get("M6REC_SMOKE")  # smoke mode unless the caller chose a mode


@pytest.mark.parametrize(
    "host, local",
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        ("localhost", True),
        ("93.184.216.34", False),
        ("10.0.0.1", False),
        ("192.168.1.1", False),
        ("::ffff:8.8.8.8", False),
        ("files.grouplens.org", False),
    ],
)
def test_which_hosts_count_as_local(host, local):
    assert _guard_module().is_local_host(host) is local


def test_public_connect_is_refused_in_process(guard):
    with pytest.raises(OSError, match=GUARD_MESSAGE) as info:
        socket.create_connection(PUBLIC_V4, timeout=2)
    assert "93.184.216.34" in str(info.value)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        with pytest.raises(OSError, match=GUARD_MESSAGE):
            sock.connect_ex(PUBLIC_V4)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        with pytest.raises(OSError, match=GUARD_MESSAGE):
            sock.sendto(b"x", ("8.8.8.8", 53))


def test_public_ipv6_connect_is_refused(guard):
    try:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    except OSError:
        pytest.skip("no IPv6 sockets on this machine")
    with sock:
        with pytest.raises(OSError, match=GUARD_MESSAGE):
            sock.connect(PUBLIC_V6)


def test_name_lookups_and_urllib_are_refused(guard):
    with pytest.raises(OSError, match=GUARD_MESSAGE):
        socket.getaddrinfo("files.grouplens.org", 443)
    with pytest.raises(OSError, match=GUARD_MESSAGE):
        socket.gethostbyname("files.grouplens.org")
    with pytest.raises(urllib.error.URLError, match=GUARD_MESSAGE):
        urllib.request.urlopen("http://93.184.216.34/", timeout=2)


def _echo_server(family=socket.AF_INET, host="127.0.0.1"):
    server = socket.socket(family, socket.SOCK_STREAM)
    server.bind((host, 0))
    server.listen(1)
    server.settimeout(10)

    def serve():
        try:
            conn, _ = server.accept()
            with conn:
                conn.sendall(conn.recv(64).upper())
        except OSError:
            pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return server, thread


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_loopback_connections_work(host):
    server, thread = _echo_server()
    with server:
        port = server.getsockname()[1]
        with socket.create_connection((host, port), timeout=5) as client:
            client.sendall(b"ping")
            assert client.recv(64) == b"PING"
        thread.join(5)


def test_ipv6_loopback_works():
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        server, thread = _echo_server(socket.AF_INET6, "::1")
    except OSError:
        pytest.skip("IPv6 loopback is not configured here")
    with server:
        with socket.create_connection(("::1", server.getsockname()[1]), timeout=5) as client:
            client.sendall(b"six")
            assert client.recv(64) == b"SIX"
        thread.join(5)


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="no Unix sockets")
def test_unix_sockets_work(tmp_path):
    path = str(tmp_path / "s")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(path)
        server.listen(1)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(path)
            conn, _ = server.accept()
            with conn:
                client.sendall(b"unix")
                assert conn.recv(64) == b"unix"


CHILD = textwrap.dedent(
    """
    import socket, sys
    guard = sys.modules[socket.socket.connect.__module__]
    print("GUARD_MODULE", guard.__name__)
    real_connect = guard._ORIGINAL["connect"]

    def tripwire(*args, **kwargs):
        raise SystemExit("TRIPWIRE: a connection got past the guard")

    guard._ORIGINAL["connect"] = tripwire
    try:
        socket.create_connection(("93.184.216.34", 80), timeout=2)
    except OSError as exc:
        print("REFUSED", exc)
    guard._ORIGINAL["connect"] = real_connect
    with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5) as client:
        client.sendall(b"child")
        print("LOOPBACK", client.recv(64).decode())
    """
)


def test_child_python_inherits_the_guard(tmp_path):
    server, thread = _echo_server()
    with server:
        port = server.getsockname()[1]
        script = tmp_path / "child.py"
        script.write_text(CHILD)
        done = subprocess.run(
            [sys.executable, str(script), str(port)],
            env=os.environ.copy(),
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )
        thread.join(5)
    assert done.returncode == 0, done.stderr
    assert "GUARD_MODULE sitecustomize" in done.stdout
    refused = f"REFUSED [Errno {errno.ECONNREFUSED}] {GUARD_MESSAGE}: tried to connect to"
    assert f"{refused} ('93.184.216.34', 80)" in done.stdout
    assert "LOOPBACK CHILD" in done.stdout


def test_jupyter_kernels_inherit_the_guard(tmp_path):
    """nbval and nbclient start kernels with this environment: they run with the guard too."""
    from nbclient import NotebookClient
    from nbformat.v4 import new_code_cell, new_notebook

    nb = new_notebook(cells=[new_code_cell(
        "import os, socket, sys\n"
        "guard = sys.modules[socket.socket.connect.__module__]\n"
        "assert guard.__name__ == 'sitecustomize', guard\n"
        "guard._ORIGINAL['connect'] = None  # tripwire: a call past the guard fails\n"
        "try:\n"
        "    socket.create_connection(('93.184.216.34', 80), timeout=2)\n"
        "except OSError as exc:\n"
        "    print('REFUSED', exc)\n"
        "print('SMOKE', os.environ.get('M6REC_SMOKE'))"
    )])  # fmt: skip
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}  # fmt: skip
    NotebookClient(nb, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()  # fmt: skip
    text = "".join(o.get("text", "") for o in nb.cells[0].outputs)
    assert f"REFUSED [Errno {errno.ECONNREFUSED}] {GUARD_MESSAGE}" in text
    assert f"SMOKE {os.environ['M6REC_SMOKE']}" in text
