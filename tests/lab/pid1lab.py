"""The namespace lab with systemd 252 as PID 1 of the "instance" (second lab variant).

:class:`Pid1Lab` keeps netlab's VPC side (bridge, dnsmasq, IMDS mock, ENIs as veth pairs) and
replaces the instance side: instead of a standalone networkd, ``/lib/systemd/systemd`` boots as
PID 1 of a new pid + mount + cgroup + UTS namespace inside the instance netns, and starts
systemd-journald, systemd-udevd, dbus, systemd-networkd and ec2-net-utils the way a real boot
does -- units, generator, udev rule and tool as *installed by meson*::

    with Pid1Lab(destdir, fallback) as lab:       # VPC side only
        lab.start_imds(snapshot)
        lab.add_eni("eth0", mac, ipv4=...)        # ENIs present "at boot"
        lab.boot()                                # PID 1 runs ec2lab.target to completion
        lab.systemctl("status", "ec2-net-utils.service")
        lab.show("ec2-net-utils.service", "ActiveState")
        lab.journal("-u", "ec2-net-utils.service")
        lab.add_eni("eth2", ...)                  # hotplug: udevd -> PID 1 -> our unit

What PID 1 sees (all of it private to the lab's mount namespace; nothing on the host is
writable from inside, so no unit can change the host):

* ``/`` is a read-only bind of the host root; tmpfs on ``/run``, ``/tmp``, ``/var/tmp``,
  ``/var/lib/systemd`` and ``/var/log``;
* ``/usr/local`` is ``<destdir>/usr/local`` (read-only): ``meson install --destdir`` of a
  ``-Dprefix=/usr/local`` build, found by systemd (units, generators, networkd.conf.d),
  udev (rules.d) and networkd (network/) through their standard search paths;
* ``/etc`` is an overlay (host /etc read-only below, tmpfs above): host unit enablement
  (``/etc/systemd/system``), ``/etc/systemd/network`` and ``/etc/udev/rules.d`` are emptied,
  ``/etc/ec2-net-utils.conf`` says ``[Main] Enable=yes`` (see below) and
  ``/etc/systemd/network/80-ec2.network`` overrides the installed fallback (see below);
* ``/proc`` of the new pid namespace, with ``/proc/sys`` read-only except ``/proc/sys/net``
  (which belongs to the instance netns), so no sysctl reaches the host kernel (PID 1 itself
  writes ``kernel.core_pattern`` at boot); systemd-sysctl.service runs: ``net.*`` settings
  apply to the instance, the others fail with EROFS, which it ignores as in any container;
* a fresh, *writable* sysfs of the instance netns (``/sys/class/net`` lists only the
  instance's links) -- systemd-udevd and device units need it -- and cgroup2 on
  ``/sys/fs/cgroup``, rooted (cgroup namespace) at ``/sys/fs/cgroup/unified/<lab name>``;
* a private ``/dev`` (tmpfs with the basic nodes, devpts, shm) whose ``/dev/console`` is a
  pty of the lab, copied to ``<workdir>/console.log``: PID 1 and udevd never touch host
  device nodes;
* ``/usr/lib/udev/rules.d`` holds only the host's rules for network devices
  (:data:`HOST_NET_RULES`): the kernel delivers the host's other uevents to this netns too;
* ``container=ec2lab`` in PID 1's environment: systemd then skips the host-level setup it
  does as a real init (clock, kernel modules, early mounts); units of sysinit.target that
  would act on the host or mean nothing here are masked (:data:`MASKED`).

Lab-only adjustments, all files under /run named ``*ec2lab*``, because a veth is not an ENA
device:

* ``85-ec2lab-ena.rules`` sets ``ID_NET_DRIVER=ena`` on ``eth*`` (80-net-setup-link.rules
  set ``veth``), so our 90 rule wants ``ec2-net-utils@IF.service`` exactly as on EC2;
* ``80-ec2.network`` matches ``Name=eth*`` instead of ``Driver=...`` (networkd asks the
  kernel, via ethtool, for the driver; udev properties do not change it);
* ``ec2net setup --all`` finds ENIs by their sysfs driver symlink, which a veth has not: the
  boot unit gets ``BindReadOnlyPaths=`` of a copy of ``/sys/class/net`` in which the boot
  ENIs' ``device/driver`` points to ``ena`` (drop-in ``ec2-net-utils.service.d/ec2lab.conf``,
  the only drop-in on our units);
* ``systemd-udev-trigger.service`` coldplugs only the ``net`` subsystem (drop-in);
* ``/run/udev/control`` exists before PID 1 starts: PID 1 subscribes to udev's events only
  if it does, or if /dev is a devtmpfs (sd-device-monitor: "The udev service seems not to
  be active, disabling the monitor"); on a real host the devtmpfs passes that check;
* journald keeps the journal volatile (``/run/log/journal``).

The generator decides "act" from ``/etc/ec2-net-utils.conf`` (``[Main] Enable=yes``), the
documented switch for machines without EC2 DMI data: this VM's kernel has no DMI
(``/sys/class/dmi`` does not exist, and sysfs cannot get a mount point for a fake
``sys_vendor``) and no ``/sys/hypervisor``.

Cleanup: PID 1 is SIGKILLed by its host PID, which ends its pid namespace (and ``unshare
--kill-child`` does the same if the lab's process dies first); the rest is netlab's
(processes by PID, namespaces deleted); the lab cgroup is removed bottom-up. Cgroups of dead
runs are removed like netlab's stale namespaces.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from netlab import (
    DEFAULT_PREFIX,
    INSTANCE_HOSTNAME,
    REPO_ROOT,
    Lab,
    LabError,
    _pid_alive,
    _run,
    cleanup_stale,
    ensure_system_user,
    missing_requirements,
    wait_for,
)

from ec2net import facts

SYSTEMD = "/lib/systemd/systemd"
INSTALL_PREFIX = "/usr/local"  # meson -Dprefix; systemd and udev search below it
SYSTEM_PYTHON = "/usr/bin/python3"  # the interpreter the installed units run
# Python packages the tool needs, copied with their dependencies from the test environment
# into the instance's /usr/local (as `pip install --prefix /usr/local` would): the versions
# the rest of the suite tests, whatever Debian packages happen to be installed (those come
# later on the system python's path).
TOOL_DEPENDENCIES = ("requests", "jinja2")


def _cgroup2_root() -> Path:
    """The host's cgroup2 mount: /sys/fs/cgroup (unified) or /sys/fs/cgroup/unified (hybrid)."""
    for path in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")):
        if (path / "cgroup.procs").exists() and (path / "cgroup.subtree_control").exists():
            return path
    return Path("/sys/fs/cgroup/unified")


CGROUP2_ROOT = _cgroup2_root()
LAB_TARGET = "ec2lab.target"
VPC_GATEWAY_MAC = "02:00:00:00:01:01"  # locally administered; ENIs use 02:00:00:00:00:xx
# Host udev rules relevant for network devices; 99-systemd.rules tags them for PID 1.
HOST_NET_RULES = (
    "75-net-description.rules",
    "80-net-setup-link.rules",
    "99-systemd.rules",
)
UDEV_RULES_DIR = "/usr/lib/udev/rules.d"
CONFIG = "[Main]\nEnable=yes\n"
DEV_NODES = (
    ("null", "1 3"),
    ("zero", "1 5"),
    ("full", "1 7"),
    ("random", "1 8"),
    ("urandom", "1 9"),
    ("tty", "5 0"),
)

LAB_TARGET_TEXT = """\
# ec2-net-utils lab: what a minimal networked boot pulls in (pid1lab.py).
[Unit]
Description=ec2-net-utils lab boot
Requires=sysinit.target
Wants=sockets.target systemd-networkd.service network-online.target
After=sysinit.target sockets.target network-online.target
AllowIsolate=yes
"""
# Only the net subsystem: the kernel also delivers the host's other uevents to this netns.
TRIGGER_DROPIN = """\
[Service]
ExecStart=
ExecStart=-udevadm trigger --type=devices --action=add --subsystem-match=net
"""
# ec2net setup --all sees ENIs through a copy of /sys/class/net whose drivers say "ena".
BOOT_UNIT_DROPIN = """\
[Service]
BindReadOnlyPaths=/run/ec2lab/sys-class-net:/sys/class/net
"""
ENA_RULE = """\
# ec2lab: veth stands in for ENA (80-net-setup-link.rules set ID_NET_DRIVER=veth).
SUBSYSTEM=="net", ACTION!="remove", KERNEL=="eth*", ENV{ID_NET_DRIVER}="ena"
"""
# Units of sysinit.target that would act on the host or are meaningless here.
MASKED = (
    "systemd-modules-load.service",
    "kmod-static-nodes.service",
    "systemd-binfmt.service",
    "proc-sys-fs-binfmt_misc.automount",
    "systemd-random-seed.service",
    "systemd-update-utmp.service",
    "systemd-firstboot.service",
    "systemd-machine-id-commit.service",
    "systemd-repart.service",
    "systemd-pcrphase.service",
    "systemd-pcrphase-sysinit.service",
    "systemd-timesyncd.service",
    "sys-kernel-debug.mount",
    "sys-kernel-tracing.mount",
    "sys-kernel-config.mount",
    "sys-fs-fuse-connections.mount",
    "dev-hugepages.mount",
    "systemd-journal-flush.service",
    "systemd-remount-fs.service",  # would remount the (shared) root superblock
    "systemd-tmpfiles-setup.service",  # --remove at boot: empties /tmp and more
)


def _cgroup_name(lab: Lab) -> str:
    return lab.inst_ns.removesuffix("-inst")


def cleanup_stale_cgroups(prefix: str = DEFAULT_PREFIX) -> list[str]:
    """Remove lab cgroups ``<prefix>-<pid>-<n>`` whose ``<pid>`` is dead (after netlab's
    :func:`cleanup_stale` killed their processes)."""
    removed = []
    pattern = re.compile(rf"^{re.escape(prefix)}-(\d+)-\d+$")
    if not CGROUP2_ROOT.is_dir():
        return removed
    for entry in CGROUP2_ROOT.iterdir():
        match = pattern.match(entry.name)
        dead = match and entry.is_dir() and not _pid_alive(int(match.group(1)))
        if dead and _remove_cgroup(entry, timeout=5):
            removed.append(entry.name)
    return removed


def _remove_cgroup(path: Path, timeout: float) -> bool:
    """rmdir a cgroup tree bottom-up (retrying while its processes finish dying)."""
    deadline = time.monotonic() + timeout
    while True:
        dirs = sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
        for d in [*dirs, path]:
            with contextlib.suppress(OSError):
                d.rmdir()
        if not path.exists():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def _tool(name: str) -> str:
    path = shutil.which(name, path=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    if path is None:
        raise LabError(f"{name} not found: tests/run.sh installs it")
    return path


def _system_purelib() -> str:
    """Where the system python looks for /usr/local packages, relative to /usr/local."""
    out = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not out.startswith(INSTALL_PREFIX + "/"):
        raise LabError(f"{SYSTEM_PYTHON} does not look below {INSTALL_PREFIX}: {out}")
    return os.path.relpath(out, INSTALL_PREFIX)


def _copy_distribution(name: str, target: Path, seen: set[str]) -> None:
    """Copy an installed distribution and its (non-extra) requirements into ``target``."""
    key = re.sub(r"[-_.]+", "-", name).lower()
    if key in seen:
        return
    seen.add(key)
    dist = metadata.distribution(name)
    base = Path(str(dist.locate_file("")))
    for rel in dist.files or []:
        if str(rel).startswith("..") or "__pycache__" in str(rel):
            continue
        source = base / rel
        if source.is_file():
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / rel)
    for requirement in dist.requires or []:
        if "extra ==" in requirement:
            continue
        match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
        if match:
            _copy_distribution(match.group(0), target, seen)


def meson_destdir(base: Path) -> Path:
    """``meson install --destdir`` of the source tree (prefix /usr/local, the system python)
    into ``base/dest``, plus the tool's Python dependencies; returns the destdir."""
    build, dest = base / "build", base / "dest"
    purelib = _system_purelib()
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    setup = [_tool("meson"), "setup", str(build), str(REPO_ROOT), f"-Dprefix={INSTALL_PREFIX}"]
    setup += [f"-Dpython={SYSTEM_PYTHON}", f"-Dpython.purelibdir={purelib}"]
    setup += ["-Dpython.bytecompile=-1"]
    for cmd in (setup, [_tool("meson"), "install", "-C", str(build), "--destdir", str(dest)]):
        result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
        if result.returncode != 0:
            raise LabError(f"{cmd[1]} failed:\n{result.stdout}{result.stderr}")
    seen: set[str] = set()
    for name in TOOL_DEPENDENCIES:
        _copy_distribution(name, dest / INSTALL_PREFIX.lstrip("/") / purelib, seen)
    return dest


def lab_fallback(dest: Path) -> str:
    """The installed fallback, matching the lab's veth ENIs by name instead of by driver."""
    text = (dest / INSTALL_PREFIX.lstrip("/") / "lib/systemd/network/80-ec2.network").read_text()
    match = "Driver=" + " ".join(facts.ENI_DRIVERS)
    if match not in text:
        raise LabError(f"the installed 80-ec2.network no longer matches {match}")
    return text.replace(match, "Name=eth*")


class Pid1Lab(Lab):
    """netlab's VPC + an instance booted by systemd as PID 1 (see the module docstring).

    ``destdir``: ``meson install --destdir`` of a build configured with ``-Dprefix=/usr/local``;
    its ``usr/local`` becomes the instance's ``/usr/local`` (read-only).
    ``fallback``: text of the lab's ``/etc/systemd/network/80-ec2.network``, an override of
    the installed fallback of the same name.
    ``environment``: PID 1's ``DefaultEnvironment=`` (every unit's environment).
    ``config``: text of ``/etc/ec2-net-utils.conf`` (must keep ``[Main] Enable=yes``).
    ``unit_dropins``: extra files under ``/run/systemd/system``, e.g.
    ``{"ec2-net-utils-refresh@.timer.d/ec2lab.conf": "[Timer]\\n..."}`` (name them
    ``*ec2lab*``: lab-only adjustments).
    """

    def __init__(
        self,
        destdir: Path,
        fallback: str,
        environment: dict[str, str] | None = None,
        log_level: str = "info",
        config: str = CONFIG,
        unit_dropins: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("ipv6", False)
        super().__init__(start_networkd=False, **kwargs)
        self.destdir = destdir
        self.fallback = fallback
        self.environment = dict(environment or {})
        self.log_level = log_level
        self.config = config
        self.unit_dropins = dict(unit_dropins or {})
        self.boot_proc: subprocess.Popen[Any] | None = None
        self.pid1: int | None = None
        self.cgroup = CGROUP2_ROOT / _cgroup_name(self)
        self.boot_seconds: float | None = None
        self._console_fds: list[int] = []

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """The VPC side only; add ENIs and IMDS, then :meth:`boot`."""
        problems = missing_requirements()
        if not os.path.exists(SYSTEMD):
            problems.append(f"{SYSTEMD} not found")
        if not CGROUP2_ROOT.is_dir():
            problems.append(f"no cgroup2 hierarchy at {CGROUP2_ROOT}")
        if problems:
            raise LabError("cannot start the lab: " + ", ".join(problems))
        cleanup_stale(self.prefix)
        cleanup_stale_cgroups(self.prefix)
        ensure_system_user("systemd-network")
        ensure_system_user("messagebus")
        for ns in (self.vpc_ns, self.inst_ns):
            _run(["ip", "netns", "add", ns])
        self._setup_vpc()
        self._start_dnsmasq()

    def close(self, keep: bool = False) -> None:
        errors = []
        if self.pid1 is not None and _pid_alive(self.pid1):
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid1, 9)  # ends the whole pid namespace
            with contextlib.suppress(LabError):
                wait_for(lambda: not _pid_alive(self.pid1 or 0), 10, "PID 1 to die")
        for fd in self._console_fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._console_fds = []
        try:
            super().close(keep)
        finally:
            if self.cgroup.exists() and not _remove_cgroup(self.cgroup, timeout=10):
                errors.append(f"cgroup {self.cgroup} not removed")
        if errors:
            print("pid1lab: cleanup problems: " + "; ".join(errors))

    def _setup_vpc(self) -> None:
        super()._setup_vpc()
        # A bridge without an address of its own takes the lowest MAC of its ports, so a
        # hot-attached ENI whose (random) VPC-side MAC sorts first changes the gateway's MAC:
        # the instance's neighbour entries for 192.0.2.1 then point at a MAC the bridge no
        # longer accepts, and IMDS is unreachable until they expire (~30 s). A set address
        # stays put, like a real VPC router's.
        _run(["ip", "-n", self.vpc_ns, "link", "set", "br0", "address", VPC_GATEWAY_MAC])

    # ------------------------------------------------------------------ boot

    def _prepare_tree(self) -> Path:
        """Everything PID 1 gets under /run, staged in the workdir (copied in at boot)."""
        stage = self.workdir / "run"
        system = stage / "systemd/system"
        system.mkdir(parents=True)
        (system / LAB_TARGET).write_text(LAB_TARGET_TEXT)
        for unit in MASKED:
            (system / unit).symlink_to("/dev/null")
        online = system / "network-online.target.wants"
        online.mkdir()  # what `systemctl enable systemd-networkd` does on Debian
        (online / "systemd-networkd-wait-online.service").symlink_to(
            "/lib/systemd/system/systemd-networkd-wait-online.service"
        )
        dropin = system / "systemd-udev-trigger.service.d"
        dropin.mkdir()
        (dropin / "ec2lab.conf").write_text(TRIGGER_DROPIN)
        dropin = system / "ec2-net-utils.service.d"
        dropin.mkdir()
        (dropin / "ec2lab.conf").write_text(BOOT_UNIT_DROPIN)
        for rel, text in self.unit_dropins.items():
            (system / rel).parent.mkdir(parents=True, exist_ok=True)
            (system / rel).write_text(text)

        conf = stage / "systemd/system.conf.d"
        conf.mkdir()
        env = " ".join(f"{k}={v}" for k, v in self.environment.items())
        (conf / "ec2lab.conf").write_text(
            f"[Manager]\nDefaultEnvironment={env}\nDefaultTimeoutStartSec=60\n"
        )
        conf = stage / "systemd/journald.conf.d"
        conf.mkdir()
        (conf / "ec2lab.conf").write_text("[Journal]\nStorage=volatile\nRateLimitBurst=0\n")

        rules = stage / "ec2lab/udev-rules"
        rules.mkdir(parents=True)
        for name in HOST_NET_RULES:
            host = Path(UDEV_RULES_DIR) / name
            if host.exists():
                shutil.copy(host, rules / name)
        lab_rules = stage / "udev/rules.d"
        lab_rules.mkdir(parents=True)
        (lab_rules / "85-ec2lab-ena.rules").write_text(ENA_RULE)
        # PID 1 subscribes to udev's events only if /run/udev/control exists or /dev is a
        # devtmpfs when it starts (sd-device-monitor: "The udev service seems not to be
        # active, disabling the monitor"). A real host passes through its devtmpfs; the
        # lab's /dev is a private tmpfs, so the placeholder stands in (the control socket
        # unit replaces it when udevd starts).
        (stage / "udev/control").touch()

        # The boot ENIs as `ec2net setup --all` should see them: driver ena.
        fake = stage / "ec2lab/sys-class-net"
        fake.mkdir()
        for link in self.ip_json("link", "show"):
            name = link["ifname"]
            if name == "lo":
                continue
            (fake / name / "device").mkdir(parents=True)
            (fake / name / "address").write_text(link["address"] + "\n")
            (fake / name / "ifindex").write_text(f"{link['ifindex']}\n")
            (fake / name / "device/driver").symlink_to("../../../bus/pci/drivers/ena")
        return stage

    def _boot_script(self, stage: Path, console: str) -> str:
        local = shlex.quote(str(self.destdir / INSTALL_PREFIX.lstrip("/")))
        lines = [
            "set -eu",
            # /proc of the new pid namespace; /proc/sys read-only but for this netns' net/.
            "mount -t proc -o nosuid,nodev,noexec proc /proc",
            "mount --bind /proc/sys /proc/sys",
            "mount -o remount,bind,ro /proc/sys",
            "mount --bind /proc/sys/net /proc/sys/net",
            "mount -o remount,bind,rw /proc/sys/net",
            # sysfs of the instance netns, writable (udevd), cgroup2 rooted at the lab cgroup.
            "mount -t sysfs -o nosuid,nodev,noexec sysfs /sys",
            "mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 /sys/fs/cgroup",
            # The meson install becomes /usr/local (read-only). No host directory is writable
            # in here: boot-time cleaners (tmpfiles --remove ...) run in this namespace.
            f"mount --bind {local} {INSTALL_PREFIX}",
            f"mount -o remount,bind,ro {INSTALL_PREFIX}",
            # Private /run, filled from the stage.
            "mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run",
            f"cp -a {shlex.quote(str(stage))}/. /run/",
            # Private /dev: basic nodes only; /dev/console is the lab's pty (PID 1 logs to
            # the console only if it is a terminal), read into <workdir>/console.log.
            "touch /run/ec2lab/console",
            f"mount --bind {shlex.quote(console)} /run/ec2lab/console",
            "mount -t tmpfs -o mode=0755,nosuid tmpfs /dev",
            *(f"mknod -m 0666 /dev/{name} c {node}" for name, node in DEV_NODES),
            "mkdir /dev/pts /dev/shm",
            "mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts /dev/pts",
            "ln -s pts/ptmx /dev/ptmx",
            "mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm",
            "ln -s /proc/self/fd /dev/fd",
            "touch /dev/console",
            "mount --move /run/ec2lab/console /dev/console",
            # Read-only root; private writable places.
            "mount -o remount,bind,ro /",
            "mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp",
            "mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /var/tmp",
            "mount -t tmpfs -o mode=0755 tmpfs /var/lib/systemd",
            "mount -t tmpfs -o mode=0755 tmpfs /var/log",
            # /etc: host /etc read-only below a tmpfs upper layer.
            "mkdir -p /run/ec2lab/etc/upper /run/ec2lab/etc/work",
            "mount -t overlay overlay"
            " -o lowerdir=/etc,upperdir=/run/ec2lab/etc/upper,workdir=/run/ec2lab/etc/work /etc",
            "rm -rf /etc/systemd/system /etc/systemd/network /etc/udev/rules.d",
            "mkdir -p /etc/systemd/system /etc/systemd/network /etc/udev/rules.d",
            f"printf %s {shlex.quote(self.config)} > /etc/ec2-net-utils.conf",
            f"printf %s {shlex.quote(self.fallback)} > /etc/systemd/network/80-ec2.network",
            f"echo {INSTANCE_HOSTNAME} > /etc/hostname",
            # The host's udev rules for network devices only (see HOST_NET_RULES).
            f"mount --bind /run/ec2lab/udev-rules {UDEV_RULES_DIR}",
            "ip link set lo up",
            f"exec {SYSTEMD} --unit={LAB_TARGET} --log-level={self.log_level} --show-status=no",
        ]
        return "\n".join(lines) + "\n"

    def boot(self, timeout: float = 60) -> None:
        """Boot PID 1 and wait until startup finished (ec2lab.target and its jobs)."""
        stage = self._prepare_tree()
        script = self.workdir / "boot.sh"
        script.write_text(self._boot_script(stage, self._open_console()))
        # The name holds our pid, so one that exists is another PID namespace's leftover (the
        # platform roots number their processes from 1 again): its processes died with it.
        if self.cgroup.is_dir() and not _remove_cgroup(self.cgroup, timeout=5):
            raise LabError(f"stale cgroup {self.cgroup} cannot be removed")
        self.cgroup.mkdir()
        outer = (
            f"echo $$ > {shlex.quote(str(self.cgroup))}/cgroup.procs && exec unshare --pid"
            " --fork --kill-child --mount --cgroup --uts --propagation private --"
            f" env -i container=ec2lab PATH=/usr/sbin:/usr/bin:/sbin:/bin sh {script}"
        )
        argv = ["nsenter", f"--net=/run/netns/{self.inst_ns}", "--", "sh", "-c", outer]
        started = time.monotonic()
        proc = self.boot_proc = self._spawn("boot", argv)

        def pid1() -> int | None:
            if proc.poll() is not None:
                raise LabError("PID 1 exited: " + self.log("boot") + self.console()[-3000:])
            with contextlib.suppress(OSError, ValueError):
                children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
                if children:
                    comm = Path(f"/proc/{children[0]}/comm").read_text().strip()
                    if comm == "systemd":
                        return int(children[0])
            return None

        self.pid1 = wait_for(pid1, 15, "systemd to exec as PID 1")

        def booted() -> bool:
            if proc.poll() is not None:
                raise LabError("PID 1 exited: " + self.log("boot") + self.console()[-3000:])
            state = self.inst(["systemctl", "is-system-running"], check=False, timeout=10)
            return state.stdout.strip() in ("running", "degraded")

        wait_for(booted, timeout, "systemd to finish starting up", interval=0.2)
        self.boot_seconds = time.monotonic() - started

    # ------------------------------------------------------------------ access

    def inst_argv(self, cmd: list[str]) -> list[str]:
        """argv running ``cmd`` in all namespaces of the instance's PID 1."""
        if self.pid1 is None:
            raise LabError("the instance has not booted")
        return [
            "nsenter",
            "-t",
            str(self.pid1),
            "-m",
            "-u",
            "-n",
            "-p",
            "-C",
            "--",
            "env",
            "SYSTEMD_PAGER=",
            "SYSTEMD_COLORS=0",
            *cmd,
        ]

    def path(self, path: str) -> Path:
        if self.pid1 is None:
            raise LabError("the instance has not booted")
        return Path(f"/proc/{self.pid1}/root") / path.lstrip("/")

    def systemctl(self, *args: str, check: bool = True) -> str:
        return self.inst(["systemctl", "--no-pager", *args], check=check).stdout

    def show(self, unit: str, *props: str) -> dict[str, str]:
        out = self.systemctl("show", unit, "-p", ",".join(props))
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def journal(self, *args: str) -> str:
        if self.pid1 is None or not _pid_alive(self.pid1):
            return "(no journal: PID 1 is not running)"
        res = self.inst(
            ["journalctl", "--no-pager", "-o", "short-monotonic", *args], check=False, timeout=30
        )
        return res.stdout + res.stderr

    def _open_console(self) -> str:
        """A pty for PID 1's /dev/console; a thread copies its output to console.log."""
        master, slave = os.openpty()
        self._console_fds = [master, slave]
        log = open(self.workdir / "console.log", "ab")  # noqa: SIM115 (closed by the thread)

        def pump() -> None:
            with log:
                while True:
                    try:
                        data = os.read(master, 65536)
                    except OSError:  # EIO: every slave side closed; or the lab closed it
                        return
                    if not data:
                        return
                    log.write(data)
                    log.flush()

        threading.Thread(target=pump, name="pid1lab-console", daemon=True).start()
        return os.ttyname(slave)

    def console(self) -> str:
        return self.log("console")

    def networkd_log(self) -> str:
        return self.journal("-u", "systemd-networkd.service")

    def reload(self) -> None:
        self.networkctl("reload")

    def ip_json(self, *args: str) -> list[dict[str, Any]]:
        out = _run(["ip", "-n", self.inst_ns, "-j", *args]).stdout.strip()
        return json.loads(out) if out else []

    def start_networkd(self, timeout: float = 15) -> None:
        raise LabError("networkd is a unit of PID 1 here: use systemctl")

    def stop_networkd(self) -> None:
        raise LabError("networkd is a unit of PID 1 here: use systemctl")
