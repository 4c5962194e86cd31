"""Network guard for the test run: refuse every outbound connection that is not loopback.

Python imports a module called ``sitecustomize`` at start-up if one is on ``sys.path``. The root
``conftest.py`` puts this folder on ``PYTHONPATH`` and sets ``M6REC_NO_NETWORK=1``, so the pytest
process and every Python process it starts (the Jupyter kernels of nbval and nbclient, subprocesses)
run with the guard. It proves the course needs no network: anything that tries to reach another
machine fails at once with a clear error, before a single packet leaves.

What is refused (for IPv4/IPv6 sockets only; Unix sockets are always allowed):
- ``socket.connect`` / ``connect_ex`` (and so ``socket.create_connection``, ``urllib``, ``ssl``,
  ``asyncio``) to an address outside 127.0.0.0/8 and ::1;
- ``sendto`` (UDP) to such an address;
- name look-ups (``getaddrinfo``, ``gethostbyname``) of any host name other than ``localhost`` and
  this machine's own name, since a look-up is itself network traffic (DNS).

If another ``sitecustomize`` exists further down ``sys.path`` it is still run, so the guard does
not hide the interpreter's own start-up hook.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket

ENV_VAR = "M6REC_NO_NETWORK"
LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}

_ORIGINAL = {
    "connect": socket.socket.connect,
    "connect_ex": socket.socket.connect_ex,
    "sendto": socket.socket.sendto,
    "getaddrinfo": socket.getaddrinfo,
    "gethostbyname": socket.gethostbyname,
    "gethostbyname_ex": socket.gethostbyname_ex,
}


class NetworkDisabledError(ConnectionRefusedError):
    """Raised instead of opening a connection to another machine during the tests."""

    def __init__(self, target: object) -> None:
        super().__init__(
            errno.ECONNREFUSED,
            f"network access is disabled during the tests: tried to connect to {target} "
            f"(only loopback is allowed while {ENV_VAR}=1)",
        )


def _own_hostname() -> str:
    try:
        return socket.gethostname().lower()
    except OSError:  # pragma: no cover - no hostname at all
        return ""


def is_local_host(host: object) -> bool:
    """True for a loopback IP address, ``localhost`` or this machine's own host name."""
    if host is None:
        return True  # getaddrinfo(None, port): the wildcard/loopback address, no look-up
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    host = str(host).strip().strip("[]")
    if host == "" or host.lower() in LOCAL_NAMES or host.lower() == _own_hostname():
        return True
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False  # some other host name
    if ip.is_loopback:
        return True
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool(mapped is not None and mapped.is_loopback)


def _is_numeric_host(host: object) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    try:
        ipaddress.ip_address(str(host).strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    return True


def _check_address(sock: socket.socket, address: object) -> None:
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return  # AF_UNIX and friends never leave the machine
    host = address[0] if isinstance(address, tuple) and address else address
    if not is_local_host(host):
        raise NetworkDisabledError(address)


def _connect(self, address):
    _check_address(self, address)
    return _ORIGINAL["connect"](self, address)


def _connect_ex(self, address):
    _check_address(self, address)
    return _ORIGINAL["connect_ex"](self, address)


def _sendto(self, data, *args):
    _check_address(self, args[-1])
    return _ORIGINAL["sendto"](self, data, *args)


def _getaddrinfo(host, *args, **kwargs):
    if not (is_local_host(host) or _is_numeric_host(host)):
        raise NetworkDisabledError(f"{host} (name look-up)")
    return _ORIGINAL["getaddrinfo"](host, *args, **kwargs)


def _gethostbyname(host):
    if not (is_local_host(host) or _is_numeric_host(host)):
        raise NetworkDisabledError(f"{host} (name look-up)")
    return _ORIGINAL["gethostbyname"](host)


def _gethostbyname_ex(host):
    if not (is_local_host(host) or _is_numeric_host(host)):
        raise NetworkDisabledError(f"{host} (name look-up)")
    return _ORIGINAL["gethostbyname_ex"](host)


for _f in (_connect, _connect_ex, _sendto, _getaddrinfo, _gethostbyname, _gethostbyname_ex):
    _f.m6rec_netguard = True


def is_installed() -> bool:
    """True when the guard is active in this process."""
    return getattr(socket.socket.connect, "m6rec_netguard", False)


def install() -> None:
    """Activate the guard in this process (idempotent)."""
    if is_installed():
        return
    socket.socket.connect = _connect
    socket.socket.connect_ex = _connect_ex
    socket.socket.sendto = _sendto
    socket.getaddrinfo = _getaddrinfo
    socket.gethostbyname = _gethostbyname
    socket.gethostbyname_ex = _gethostbyname_ex


def uninstall() -> None:
    """Restore the original socket functions."""
    socket.socket.connect = _ORIGINAL["connect"]
    socket.socket.connect_ex = _ORIGINAL["connect_ex"]
    socket.socket.sendto = _ORIGINAL["sendto"]
    socket.getaddrinfo = _ORIGINAL["getaddrinfo"]
    socket.gethostbyname = _ORIGINAL["gethostbyname"]
    socket.gethostbyname_ex = _ORIGINAL["gethostbyname_ex"]


def _run_next_sitecustomize() -> None:
    """Run the ``sitecustomize`` this file shadows, if there is one further down ``sys.path``."""
    import importlib.machinery
    import importlib.util
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None or spec.origin == os.path.abspath(__file__):
        return
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # pragma: no cover - mirror site.py: warn, do not crash start-up
        print(f"Error in the shadowed sitecustomize {spec.origin}: {exc!r}", file=sys.stderr)


if __name__ == "sitecustomize":
    _run_next_sitecustomize()
    if os.environ.get(ENV_VAR, "").strip() == "1":
        install()
