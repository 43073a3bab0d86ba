"""A self-cleaning network-namespace lab for systemd-networkd integration tests.

Topology (all addresses are documentation ranges, nothing leaves the namespaces)::

    "instance" netns                          "vpc" netns
    (+ private mount ns, see below)
                                              br0  192.0.2.1/24, 2001:db8::1/64
    eth0 (MAC a) ---- veth ---- vpc-eth0 ---- |    dnsmasq: DHCPv4 (+ RA/DHCPv6),
    eth1 (MAC b) ---- veth ---- vpc-eth1 ---- |    static leases MAC -> address
                                              lo   198.51.100.10/32 (remote peer)
                                                   169.254.169.254/32 (IMDS mock)

The instance side runs the real ``/lib/systemd/systemd-networkd`` inside a private
mount namespace held open by a long-lived ``sleep`` process ("holder"):

* tmpfs on ``/run`` (with ``/run/systemd`` and ``/run/dbus``),
* an empty private dir bound over ``/etc/systemd/network`` and over
  ``/usr/lib/systemd/network`` (host config cannot leak in; tests may put a
  packaged-style fallback such as ``80-ec2.network`` there with :meth:`Lab.write`),
* an empty private file bound over ``/etc/systemd/networkd.conf``,
* ``/sys`` remounted read-only for the instance netns (networkd then does not wait
  for udev),
* a private ``dbus-daemon --system`` (no service activation) so ``networkctl`` works,
* a private UTS namespace (hostname ``lab-instance``), so a DHCP hostname that
  networkd applies can never rename the host.

networkd logs at debug level to ``<workdir>/networkd.log`` (:meth:`Lab.networkd_log`).

Every process is started by the lab, tracked and killed by PID on exit; both
namespaces are deleted even when the body of the ``with`` block raises.  A run that
was SIGKILLed leaves namespaces named ``<prefix>-<pid>-<n>-{vpc,inst}`` behind:
:func:`cleanup_stale` (called on every :class:`Lab` start) removes those whose PID is
dead.

Requires root and the Debian packages listed in :data:`DEBIAN_PACKAGES`.

Example::

    with Lab() as lab:
        lab.write("/run/systemd/network/70-eth0.network", "...")
        lab.add_eni("eth0", "02:00:00:00:00:10", ipv4="192.0.2.10")
        lab.wait_dhcp("eth0")
        lab.reload()
        print(lab.inst(["ip", "rule"]).stdout)
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Callable, TypeVar

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parents[2]
NETWORKD = "/lib/systemd/systemd-networkd"
IMDS_MOCK = REPO_ROOT / "tests" / "imds_mock.py"

#: Debian packages the lab needs on top of a minimal Debian 12 with systemd.
DEBIAN_PACKAGES = ("iproute2", "util-linux", "dnsmasq-base", "dbus", "systemd", "passwd")
REQUIRED_COMMANDS = (
    "ip",
    "nsenter",
    "unshare",
    "mount",
    "dnsmasq",
    "dbus-daemon",
    "networkctl",
    "busctl",
)

DEFAULT_PREFIX = "ec2lab"
VPC_GATEWAY = "192.0.2.1"
VPC_PREFIXLEN = 24
VPC_SUBNET = "192.0.2.0/24"
VPC_GATEWAY6 = "2001:db8::1"
VPC_SUBNET6 = "2001:db8::/64"
REMOTE_PEER = "198.51.100.10"
IMDS_ADDRESS = "169.254.169.254"
LEASE_TIME = "1h"
INSTANCE_HOSTNAME = "lab-instance"  # set in the instance's private UTS namespace

_counter = 0
_counter_lock = threading.Lock()


class LabError(RuntimeError):
    """The lab could not be set up, or a wait timed out."""


class LabCommandError(subprocess.CalledProcessError):
    """A command run in a namespace failed; ``str()`` includes its stderr."""

    def __str__(self) -> str:
        return f"{super().__str__()}\nstdout: {self.stdout}\nstderr: {self.stderr}"


def wait_for(
    predicate: Callable[[], T | None], timeout: float, what: str, interval: float = 0.1
) -> T:
    """Poll ``predicate`` until it returns something truthy; return that value.

    Raises :class:`LabError` after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise LabError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def missing_requirements() -> list[str]:
    """Reasons the lab cannot run here (empty when it can)."""
    reasons = []
    if os.geteuid() != 0:
        reasons.append("needs root")
    reasons += [f"command {c!r} not found" for c in REQUIRED_COMMANDS if not shutil.which(c)]
    if not os.path.exists(NETWORKD):
        reasons.append(f"{NETWORKD} not found")
    return reasons


def _run(
    argv: list[str], check: bool = True, timeout: float = 30, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
        **kwargs,
    )
    if check and proc.returncode != 0:
        raise LabCommandError(proc.returncode, argv, proc.stdout, proc.stderr)
    return proc


def _pid_alive(pid: int) -> bool:
    """True if ``pid`` runs (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def _kill_pid(pid: int, grace: float = 3.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds, one PID (not a child of ours)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and _pid_alive(pid):
            time.sleep(0.05)
        if _pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


def _kill_popen(proc: subprocess.Popen[Any], grace: float = 3.0) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)


def _netns_list() -> list[str]:
    out = _run(["ip", "-j", "netns", "list"], check=False).stdout.strip()
    if not out:
        return []
    return [str(entry["name"]) for entry in json.loads(out)]


def _destroy_netns(name: str) -> None:
    """Kill every process still inside netns ``name`` (by PID), then delete it."""
    for _ in range(3):
        pids = _run(["ip", "netns", "pids", name], check=False).stdout.split()
        if not pids:
            break
        for pid in pids:
            _kill_pid(int(pid), grace=1.0)
    _run(["ip", "netns", "delete", name], check=False)


def cleanup_stale(prefix: str = DEFAULT_PREFIX, include_live: bool = False) -> list[str]:
    """Delete namespaces (and their processes) left by earlier, killed lab runs.

    Only namespaces named ``<prefix>-<pid>-<n>-{vpc,inst}`` whose ``<pid>`` is no
    longer running are touched, so labs running in parallel are left alone (unless
    ``include_live``). Workdirs of dead runs (including logs kept after a failure) are
    removed too, unless ``NETLAB_KEEP=1``. Returns the deleted namespace names.
    """
    pattern = re.compile(rf"^{re.escape(prefix)}-(\d+)-\d+-(vpc|inst)$")
    removed = []
    for name in _netns_list():
        match = pattern.match(name)
        if not match:
            continue
        if not include_live and _pid_alive(int(match.group(1))):
            continue
        _destroy_netns(name)
        removed.append(name)
    if os.environ.get("NETLAB_KEEP") != "1":
        workdirs = re.compile(rf"^{re.escape(prefix)}-(\d+)-\d+-\w+$")
        for entry in Path(tempfile.gettempdir()).iterdir():
            match = workdirs.match(entry.name)
            if match and entry.is_dir() and not _pid_alive(int(match.group(1))):
                shutil.rmtree(entry, ignore_errors=True)
    return removed


def ensure_system_user(name: str) -> None:
    """Create a system user (no home, no login) unless it exists."""
    try:
        pwd.getpwnam(name)
    except KeyError:
        _run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                name,
            ]
        )


@dataclass
class Eni:
    """One simulated ENI: ``name`` in the instance netns, ``peer`` on the VPC bridge."""

    name: str
    mac: str
    ipv4: str
    ipv6: str | None
    peer: str


class AddressMonitor:
    """``ip [-ts] -o monitor address`` running in the instance netns, written to a file.

    Each line is one event; deletions start with ``Deleted`` (after the optional
    ``[timestamp]`` prefix).
    """

    _TS = re.compile(r"^\[[^\]]*\]\s*")

    def __init__(self, path: Path, proc: subprocess.Popen[Any]) -> None:
        self.path = path
        self.proc = proc

    def text(self) -> str:
        return self.path.read_text(errors="replace")

    def lines(self) -> list[str]:
        return self.text().splitlines()

    def _events(self, address: str | None, deleted: bool) -> list[str]:
        out = []
        for line in self.lines():
            event = self._TS.sub("", line)
            if event.startswith("Deleted") != deleted:
                continue
            if address is None or re.search(rf"\sinet6?\s{re.escape(address)}/", event):
                out.append(line)
        return out

    def deleted(self, address: str | None = None) -> list[str]:
        """``Deleted`` lines, optionally only those for ``address`` (no prefix length)."""
        return self._events(address, deleted=True)

    def added(self, address: str | None = None) -> list[str]:
        """New/updated-address lines, optionally only those for ``address``."""
        return self._events(address, deleted=False)

    def stop(self) -> None:
        _kill_popen(self.proc)

    def __enter__(self) -> AddressMonitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Lab:
    """Context manager owning a vpc netns + instance netns running systemd-networkd.

    Parameters:
        prefix: namespace name prefix (names are ``<prefix>-<pid>-<n>-vpc|inst``).
        start_networkd: start networkd in :meth:`start`; pass False to write
            ``networkd.conf`` drop-ins or ``.network`` files first, then call
            :meth:`start_networkd`.
        networkd_log_level: ``SYSTEMD_LOG_LEVEL`` for networkd.
        ipv6: also serve RA + DHCPv6 (2001:db8::/64) from dnsmasq.
        keep_workdir: keep ``workdir`` (logs, leases) after exit; by default it is
            kept only when the ``with`` body raised, or when ``NETLAB_KEEP=1``.
    """

    def __init__(
        self,
        prefix: str = DEFAULT_PREFIX,
        start_networkd: bool = True,
        networkd_log_level: str = "debug",
        ipv6: bool = True,
        keep_workdir: bool | None = None,
    ) -> None:
        global _counter
        with _counter_lock:
            n = _counter
            _counter += 1
        base = f"{prefix}-{os.getpid()}-{n}"
        self.prefix = prefix
        self.vpc_ns = f"{base}-vpc"
        self.inst_ns = f"{base}-inst"
        self.ipv6 = ipv6
        self.networkd_log_level = networkd_log_level
        self._start_networkd = start_networkd
        self.keep_workdir = (
            keep_workdir if keep_workdir is not None else os.environ.get("NETLAB_KEEP") == "1"
        )
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{base}-"))
        self.enis: dict[str, Eni] = {}
        self.holder: subprocess.Popen[Any] | None = None
        self.networkd: subprocess.Popen[Any] | None = None
        self.dnsmasq: subprocess.Popen[Any] | None = None
        self.imds: subprocess.Popen[Any] | None = None
        self._procs: list[tuple[str, subprocess.Popen[Any]]] = []
        self._n_monitors = 0
        self._old_sigterm: Any = None

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> Lab:
        if (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        ):
            self._old_sigterm = signal.signal(signal.SIGTERM, _raise_on_sigterm)
        try:
            self.start()
        except BaseException:
            self.close(keep=True)
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close(keep=self.keep_workdir or exc_type is not None)

    def start(self) -> None:
        problems = missing_requirements()
        if problems:
            raise LabError("cannot start the lab: " + ", ".join(problems))
        cleanup_stale(self.prefix)
        ensure_system_user("systemd-network")
        ensure_system_user("messagebus")
        for ns in (self.vpc_ns, self.inst_ns):
            _run(["ip", "netns", "add", ns])
        self._setup_vpc()
        self._start_dnsmasq()
        self._start_holder()
        self._start_dbus()
        if self._start_networkd:
            self.start_networkd()

    def close(self, keep: bool = False) -> None:
        """Kill everything by PID, delete both namespaces and (unless ``keep``) workdir."""
        errors: list[str] = []
        for label, proc in reversed(self._procs):
            try:
                _kill_popen(proc)
            except Exception as e:  # keep cleaning up
                errors.append(f"killing {label} ({proc.pid}): {e}")
        self._procs.clear()
        for ns in (self.inst_ns, self.vpc_ns):
            try:
                if ns in _netns_list():
                    _destroy_netns(ns)
            except Exception as e:
                errors.append(f"deleting netns {ns}: {e}")
        if self._old_sigterm is not None:
            signal.signal(signal.SIGTERM, self._old_sigterm)
            self._old_sigterm = None
        if keep:
            print(f"netlab: kept logs in {self.workdir}", file=sys.stderr)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)
        if errors:
            print("netlab: cleanup problems: " + "; ".join(errors), file=sys.stderr)

    # ------------------------------------------------------------------ processes

    def _spawn(
        self,
        label: str,
        argv: list[str],
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.Popen[Any]:
        """Start a tracked background process; stdout+stderr go to ``<label>.log``."""
        with open(self.workdir / f"{label}.log", "ab") as log:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )
        self._procs.append((label, proc))
        return proc

    def _stop(self, proc: subprocess.Popen[Any] | None) -> None:
        if proc is None:
            return
        _kill_popen(proc)
        self._procs = [(label, p) for label, p in self._procs if p is not proc]

    def inst_argv(self, cmd: list[str]) -> list[str]:
        """argv running ``cmd`` in the instance netns + its private mount namespace."""
        if self.holder is None:
            raise LabError("instance namespace holder is not running")
        return ["nsenter", "-t", str(self.holder.pid), "-m", "-n", "-u", "--", *cmd]

    def vpc_argv(self, cmd: list[str]) -> list[str]:
        return ["nsenter", f"--net=/run/netns/{self.vpc_ns}", "--", *cmd]

    def inst(
        self, cmd: list[str], check: bool = True, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` in the instance netns and mount namespace (text output)."""
        return _run(self.inst_argv(cmd), check=check, timeout=timeout)

    def vpc(
        self, cmd: list[str], check: bool = True, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` in the vpc netns (host mount namespace)."""
        return _run(self.vpc_argv(cmd), check=check, timeout=timeout)

    def spawn_inst(
        self, label: str, cmd: list[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[Any]:
        """Start a background process in the instance; killed on close. Log: <label>.log."""
        return self._spawn(label, self.inst_argv(cmd), env=env)

    def spawn_vpc(
        self, label: str, cmd: list[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[Any]:
        return self._spawn(label, self.vpc_argv(cmd), env=env)

    # ------------------------------------------------------------------ files

    def path(self, path: str) -> Path:
        """Host path of ``path`` as seen inside the instance mount namespace."""
        if self.holder is None:
            raise LabError("instance namespace holder is not running")
        return Path(f"/proc/{self.holder.pid}/root") / path.lstrip("/")

    def write(self, path: str, text: str) -> None:
        """Write a file inside the instance mount namespace (parents created)."""
        target = self.path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)

    def remove(self, path: str) -> None:
        target = self.path(path)
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)

    def log(self, label: str) -> str:
        p = self.workdir / f"{label}.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def networkd_log(self) -> str:
        return self.log("networkd")

    def config_warnings(self) -> list[str]:
        """networkd's complaints about config files (unknown keys, unparsable values).

        networkd logs them as ``/path/file.network:LINE: message``, e.g.
        ``70-eth0.network:5: Unknown key 'Foo' in section [Network], ignoring.``
        """
        pattern = re.compile(r"\s/\S+\.(?:network|netdev|link|conf):\d+: ")
        return [line for line in self.networkd_log().splitlines() if pattern.search(line)]

    # ------------------------------------------------------------------ vpc side

    def _setup_vpc(self) -> None:
        ip = ["ip", "-n", self.vpc_ns]
        _run([*ip, "link", "set", "lo", "up"])
        _run([*ip, "addr", "add", f"{REMOTE_PEER}/32", "dev", "lo"])
        _run([*ip, "addr", "add", f"{IMDS_ADDRESS}/32", "dev", "lo"])
        bridge = ["type", "bridge", "stp_state", "0", "forward_delay", "0", "mcast_snooping", "0"]
        # A fixed MAC: a bridge takes the lowest port MAC otherwise, and a hot-added port would
        # change the gateway's MAC under the instance's neighbour cache (IMDS unreachable).
        _run([*ip, "link", "add", "br0", "address", "02:00:00:00:01:01", *bridge])
        _run([*ip, "addr", "add", f"{VPC_GATEWAY}/{VPC_PREFIXLEN}", "dev", "br0"])
        if self.ipv6:
            _run([*ip, "addr", "add", f"{VPC_GATEWAY6}/64", "dev", "br0", "nodad"])
        _run([*ip, "link", "set", "br0", "up"])
        (self.workdir / "dnsmasq.hosts").write_text("")

    def _start_dnsmasq(self) -> None:
        argv = [
            "dnsmasq",
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--port=0",
            "--interface=br0",
            "--bind-interfaces",
            "--user=root",
            "--group=root",
            f"--pid-file={self.workdir / 'dnsmasq.pid'}",
            f"--dhcp-leasefile={self.workdir / 'dnsmasq.leases'}",
            f"--dhcp-hostsfile={self.workdir / 'dnsmasq.hosts'}",
            f"--dhcp-range=192.0.2.0,static,255.255.255.0,{LEASE_TIME}",
            "--dhcp-authoritative",
            "--log-dhcp",
            f"--log-facility={self.workdir / 'dnsmasq.log'}",
        ]
        if self.ipv6:
            argv += ["--enable-ra", f"--dhcp-range=2001:db8::,static,64,{LEASE_TIME}"]
        proc = self.dnsmasq = self._spawn("dnsmasq-stdout", self.vpc_argv(argv))
        wait_for(
            lambda: (self.workdir / "dnsmasq.pid").exists() or proc.poll() is not None,
            10,
            "dnsmasq to start",
        )
        if proc.poll() is not None:
            raise LabError("dnsmasq exited: " + self.log("dnsmasq-stdout") + self.log("dnsmasq"))

    def _write_dhcp_hosts(self) -> None:
        lines = []
        for eni in self.enis.values():
            fields = [eni.mac, eni.ipv4]
            if eni.ipv6:
                fields.append(f"[{eni.ipv6}]")
            lines.append(",".join(fields))
        (self.workdir / "dnsmasq.hosts").write_text("".join(f"{x}\n" for x in lines))
        if self.dnsmasq is not None and self.dnsmasq.poll() is None:
            self.dnsmasq.send_signal(signal.SIGHUP)  # re-reads --dhcp-hostsfile

    # ------------------------------------------------------------------ instance side

    def _start_holder(self) -> None:
        ready = self.workdir / "holder.ready"
        (self.workdir / "etc-network").mkdir()
        (self.workdir / "lib-network").mkdir()
        (self.workdir / "networkd.conf").write_text("")
        script = "\n".join(
            [
                "set -e",
                "mount -t tmpfs -o mode=0755 tmpfs /run",
                "mkdir -p /run/systemd/network /run/dbus",
                "mount -t sysfs -o ro sysfs /sys",
                f"mount --bind {self.workdir}/etc-network /etc/systemd/network",
                f"mount --bind {self.workdir}/lib-network /usr/lib/systemd/network",
                f"mount --bind {self.workdir}/networkd.conf /etc/systemd/networkd.conf",
                "ip link set lo up",
                f"echo {INSTANCE_HOSTNAME} > /proc/sys/kernel/hostname",
                f"touch {ready}",
                "exec sleep infinity",
            ]
        )
        argv = [
            "nsenter",
            f"--net=/run/netns/{self.inst_ns}",
            "unshare",
            "--mount",
            "--uts",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            script,
        ]
        self.holder = self._spawn("holder", argv)
        holder = self.holder
        wait_for(lambda: ready.exists() or holder.poll() is not None, 10, "namespace holder")
        if holder.poll() is not None:
            raise LabError("namespace holder failed: " + self.log("holder"))

    def _dbus_config(self) -> Path:
        """The host's system bus config minus service activation, fork, pidfile, syslog.

        Without activation nothing (e.g. systemd-hostnamed, asked for by networkd's
        DHCP hostname handling) can be spawned behind the lab's back.
        """
        text = Path("/usr/share/dbus-1/system.conf").read_text()
        for pattern in (
            r"<fork\s*/>",
            r"<standard_system_servicedirs\s*/>",
            r"<servicehelper>.*?</servicehelper>",
            r"<pidfile>.*?</pidfile>",
            r"<syslog\s*/>",
        ):
            text = re.sub(pattern, "", text, flags=re.S)
        text = text.replace(
            "<includedir>system.d</includedir>",
            "<includedir>/usr/share/dbus-1/system.d</includedir>",
        )
        path = self.workdir / "dbus-system.conf"
        path.write_text(text)
        return path

    def _start_dbus(self) -> None:
        argv = self.inst_argv(
            ["dbus-daemon", f"--config-file={self._dbus_config()}", "--nofork", "--nopidfile"]
        )
        proc = self._spawn("dbus", argv)
        sock = self.path("/run/dbus/system_bus_socket")
        wait_for(lambda: sock.exists() or proc.poll() is not None, 10, "dbus-daemon socket")
        if proc.poll() is not None:
            raise LabError("dbus-daemon exited: " + self.log("dbus"))

    def start_networkd(self, timeout: float = 15) -> None:
        """Start systemd-networkd (as in production: root, drops to systemd-network)."""
        if self.networkd is not None and self.networkd.poll() is None:
            raise LabError("networkd is already running")
        env = dict(os.environ)
        env.update(
            SYSTEMD_LOG_LEVEL=self.networkd_log_level,
            SYSTEMD_LOG_TARGET="console",
            SYSTEMD_LOG_TIME="1",
            SYSTEMD_LOG_COLOR="0",
        )
        with open(self.workdir / "networkd.log", "a") as log:
            log.write(f"===== netlab: starting networkd at {time.time():.3f}\n")
        proc = self._spawn("networkd", self.inst_argv([NETWORKD]), env=env)
        self.networkd = proc

        def ready() -> bool:
            if proc.poll() is not None:
                raise LabError("systemd-networkd exited: " + self.networkd_log()[-3000:])
            return (
                self.inst(
                    [
                        "busctl",
                        "--system",
                        "call",
                        "org.freedesktop.network1",
                        "/org/freedesktop/network1",
                        "org.freedesktop.DBus.Peer",
                        "Ping",
                    ],
                    check=False,
                    timeout=5,
                ).returncode
                == 0
            )

        wait_for(ready, timeout, "systemd-networkd on the bus", interval=0.2)

    def stop_networkd(self) -> None:
        self._stop(self.networkd)
        self.networkd = None

    def restart_networkd(self) -> None:
        """Needed e.g. after changing networkd.conf (networkd reads it only at start)."""
        self.stop_networkd()
        self.start_networkd()

    def networkctl(
        self, *args: str, check: bool = True, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        return self.inst(["networkctl", "--no-pager", *args], check=check, timeout=timeout)

    def reload(self) -> None:
        """``networkctl reload`` (do not SIGHUP networkd 252: that kills it)."""
        self.networkctl("reload")

    # ------------------------------------------------------------------ ENIs

    def add_eni(self, name: str, mac: str, ipv4: str, ipv6: str | None = None) -> Eni:
        """Hot-attach an ENI: veth ``name`` (with ``mac``) in the instance, peer on br0.

        dnsmasq hands out ``ipv4`` (and ``ipv6`` over DHCPv6) to ``mac``.
        """
        if name in self.enis:
            raise LabError(f"ENI {name} exists")
        peer = f"vpc-{name}"[:15]
        eni = Eni(name=name, mac=mac.lower(), ipv4=ipv4, ipv6=ipv6, peer=peer)
        self.enis[name] = eni
        self._write_dhcp_hosts()  # before the link exists, so the first DISCOVER gets it
        ip = ["ip", "-n", self.vpc_ns]
        _run(
            [
                *ip,
                "link",
                "add",
                peer,
                "type",
                "veth",
                "peer",
                "name",
                name,
                "address",
                eni.mac,
                "netns",
                self.inst_ns,
            ]
        )
        _run([*ip, "link", "set", peer, "master", "br0", "up"])
        return eni

    def del_eni(self, name: str) -> None:
        """Hot-detach: delete the veth pair (both ends)."""
        eni = self.enis.pop(name)
        _run(["ip", "-n", self.vpc_ns, "link", "del", eni.peer], check=False)
        self._write_dhcp_hosts()

    # ------------------------------------------------------------------ inspection

    def ip_json(self, *args: str) -> list[dict[str, Any]]:
        """``ip -j ARGS`` in the instance netns, parsed."""
        out = _run(["ip", "-n", self.inst_ns, "-j", *args]).stdout.strip()
        return json.loads(out) if out else []

    def addresses(self, dev: str, family: str = "inet") -> list[dict[str, Any]]:
        """addr_info entries of ``dev`` for ``family`` ('inet' or 'inet6')."""
        flag = "-4" if family == "inet" else "-6"
        out = []
        for link in self.ip_json(flag, "addr", "show", "dev", dev):
            out += [a for a in link.get("addr_info", []) if a.get("family") == family]
        return out

    def rules(self, family: str = "inet") -> list[dict[str, Any]]:
        return self.ip_json("-4" if family == "inet" else "-6", "rule", "show")

    def routes(self, table: str | int = "main", family: str = "inet") -> list[dict[str, Any]]:
        flag = "-4" if family == "inet" else "-6"
        return self.ip_json(flag, "route", "show", "table", str(table))

    def route_get(self, dst: str, src: str | None = None) -> dict[str, Any]:
        args = ["route", "get", dst] + (["from", src] if src else [])
        return self.ip_json(*args)[0]

    def wait_for(
        self, predicate: Callable[[], T | None], timeout: float, what: str, interval: float = 0.1
    ) -> T:
        return wait_for(predicate, timeout, what, interval)

    def wait_dhcp(self, name: str, timeout: float = 20) -> str:
        """Wait until ``name`` holds its DHCPv4 lease address; return it.

        For an ENI added with :meth:`add_eni` that is its ``ipv4`` with the subnet prefix
        length (not a /32 alias); otherwise any ``dynamic`` IPv4 address.
        """
        want = self.enis[name].ipv4 if name in self.enis else None

        def lease() -> str | None:
            for a in self.addresses(name):
                if want is not None and a.get("local") == want and a.get("prefixlen") != 32:
                    return want  # KeepConfiguration=dhcp makes the lease address permanent
                if want is None and a.get("dynamic"):
                    return str(a["local"])
            return None

        return wait_for(lease, timeout, f"DHCPv4 lease on {name}", interval=0.2)

    def wait_dhcp6(self, name: str, timeout: float = 20) -> str:
        want = self.enis[name].ipv6

        def lease() -> str | None:
            for a in self.addresses(name, "inet6"):
                if a.get("scope") == "global" and (want is None or a.get("local") == want):
                    return str(a["local"])
            return None

        return wait_for(lease, timeout, f"DHCPv6 address on {name}", interval=0.2)

    def link_state(self, name: str) -> str:
        """networkd's setup state of ``name`` (e.g. 'configured', 'configuring')."""
        out = self.networkctl("--json=short", "status", name, check=False).stdout
        try:
            return str(json.loads(out).get("AdministrativeState", ""))
        except ValueError:
            return ""

    def wait_configured(self, name: str, timeout: float = 20) -> None:
        wait_for(
            lambda: self.link_state(name) == "configured",
            timeout,
            f"networkd to configure {name}",
            interval=0.2,
        )

    def monitor_addresses(self, timestamps: bool = True) -> AddressMonitor:
        """Start ``ip [-ts] -o monitor address`` in the instance netns (killed on close).

        Returns once the monitor holds its netlink socket, so later changes are seen.
        Use as a context manager (or call ``stop()``) to end the recorded window.
        """
        self._n_monitors += 1
        label = f"monitor-{self._n_monitors}"
        ts = ["-ts"] if timestamps else []
        proc = self._spawn(label, ["ip", "-n", self.inst_ns, *ts, "-o", "monitor", "address"])
        fd_dir = Path(f"/proc/{proc.pid}/fd")

        def listening() -> bool:
            if proc.poll() is not None:
                raise LabError("ip monitor exited: " + self.log(label))
            with contextlib.suppress(OSError):
                return any(os.readlink(f).startswith("socket:") for f in fd_dir.iterdir())
            return False

        wait_for(listening, 5, "ip monitor to subscribe", interval=0.02)
        time.sleep(0.1)  # socket exists -> group join follows immediately
        return AddressMonitor(self.workdir / f"{label}.log", proc)

    # ------------------------------------------------------------------ IMDS

    def start_imds(
        self,
        snapshot_file: str | Path | None = None,
        cmd: list[str] | None = None,
        timeout: float = 15,
    ) -> subprocess.Popen[Any]:
        """Run the IMDS mock in the vpc netns, listening on 169.254.169.254:80.

        By default runs ``tests/imds_mock.py --snapshot FILE --host 169.254.169.254
        --port 80 --port-file F``; pass ``cmd`` to run something else (e.g.
        ``python3 -m http.server``). Returns once a TCP connect to port 80 succeeds.
        """
        if cmd is None:
            if snapshot_file is None:
                raise LabError("start_imds needs snapshot_file or cmd")
            cmd = [
                sys.executable,
                str(IMDS_MOCK),
                "--snapshot",
                str(snapshot_file),
                "--host",
                IMDS_ADDRESS,
                "--port",
                "80",
                "--port-file",
                str(self.workdir / "imds.port"),
            ]
        self._stop(self.imds)
        proc = self._spawn("imds", self.vpc_argv(cmd))
        self.imds = proc
        probe = [
            sys.executable,
            "-c",
            "import socket; socket.create_connection(('169.254.169.254', 80), 1).close()",
        ]

        def up() -> bool:
            if proc.poll() is not None:
                raise LabError("IMDS mock exited: " + self.log("imds")[-3000:])
            return self.vpc(probe, check=False, timeout=5).returncode == 0

        wait_for(up, timeout, "the IMDS mock to listen", interval=0.2)
        return proc


def _raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through Lab.__exit__, which cleans up


NEEDS_ROOT = "the namespace lab needs root (ip netns, mounts, systemd-networkd)"


def pytest_lab(request: Any, **lab_kwargs: Any) -> Iterator[Lab]:
    """Body of a pytest ``lab`` fixture; each lab test module declares::

        @pytest.fixture
        def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
            yield from pytest_lab(request)

    (no conftest.py here: a second ``conftest`` module would shadow ``tests/conftest.py``
    for the suite's ``from conftest import ...``). Skips when not root. When the test
    fails, the workdir (networkd/dnsmasq logs, leases) is kept and the tail of the
    networkd log printed.
    """
    import pytest

    if os.geteuid() != 0:
        pytest.skip(NEEDS_ROOT)
    failed_before = request.session.testsfailed
    with Lab(**lab_kwargs) as lab:
        yield lab
        if request.session.testsfailed > failed_before:
            lab.keep_workdir = True
            print("---- networkd log (tail) ----")
            print("\n".join(lab.networkd_log().splitlines()[-80:]))
