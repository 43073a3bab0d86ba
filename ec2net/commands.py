"""The workflows behind each CLI command: fetch -> validate -> render -> apply."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import apply, layout, linkstate, networkd, pending, refresh_walk, safeio, state, sysfs
from .config import Config
from .errors import Ec2NetError, UsageError, quote
from .inventory import MetadataSource, list_macs, read_enis, read_primary_mac
from .locks import interface_locks
from .model import DEFAULT_RENDER_OPTIONS, Eni, RenderOptions, parse_mac

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


DEFAULT_DEADLINE = 30.0
# A run waiting for another run's lock gives up after its own deadline plus this margin.
LOCK_MARGIN = 15.0


@dataclass(frozen=True)
class Options:
    root: Path = Path("/")
    endpoints: tuple[str, ...] = ()
    deadline: float = DEFAULT_DEADLINE
    reload: bool = True
    config: Config = field(default_factory=Config)
    reloader: Callable[[], None] = networkd.reload
    # When the command started (time.monotonic()): the deadline counts from here, so that the
    # time spent parsing and importing before the first request is not on top of it.
    started: float = field(default_factory=time.monotonic)

    @property
    def netdir(self) -> Path:
        return self.root / layout.RUN_NETWORK_DIR

    @property
    def render_options(self) -> RenderOptions:
        return RenderOptions(
            mtu=self.config.mtu, manage_secondary_ips=self.config.manage_secondary_ips
        )

    def open_source(self) -> MetadataSource:
        from .imds import DEFAULT_ENDPOINTS, ImdsClient

        return ImdsClient(
            self.endpoints or DEFAULT_ENDPOINTS,
            deadline=max(0.0, self.deadline - (time.monotonic() - self.started)),
            connect_timeout=self.config.connect_timeout,
            read_timeout=self.config.read_timeout,
        )


@dataclass
class Outcome:
    """What one run did, so the caller can decide on the reload and the exit code."""

    failed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    # A periodic refresh: decisions that repeat every minute are logged at debug level only.
    routine: bool = False
    # The root under which this run records the reload it owes before its first change
    # (None: it will not reload, so it records nothing), and that record once made.
    pending_root: Path | None = None
    record: pending.Record | None = None
    _marked: bool = False

    @classmethod
    def of(cls, opts: Options, *, routine: bool = False) -> Outcome:
        return cls(routine=routine, pending_root=opts.root if opts.reload else None)

    def before_change(self) -> None:
        """Runs once, just before this run changes its first generated file."""
        if self.pending_root is None or self._marked:
            return
        self._marked = True
        try:
            self.record = pending.mark(self.pending_root)
        except Ec2NetError as exc:
            # Carry on: the files are still right, only a failed reload would go unretried.
            self.fail("reload", exc)

    def note(self, message: str, *args: object) -> None:
        log.log(logging.DEBUG if self.routine else logging.INFO, message, *args)

    def fail(self, what: str, error: Exception) -> None:
        log.error("%s: %s", what, error)
        self.failed.append(what)

    @property
    def exit_code(self) -> int:
        return EXIT_FAILED if self.failed else EXIT_OK


def _finish(opts: Options, outcome: Outcome) -> int:
    """Reload networkd once if this run changed files or an ended run still owes a reload."""
    if not opts.reload:
        return outcome.exit_code  # --no-reload: records of earlier runs stay as they are
    own = [outcome.record] if outcome.record is not None else []
    outcome.record = None
    owed = pending.owed(opts.root, own)
    if not (outcome.changed or own or owed):
        return outcome.exit_code
    if owed:
        log.warning(
            "reloading systemd-networkd for %d earlier run(s) whose changes it never got "
            "(reload failed or run interrupted)",
            len(owed),
        )
    try:
        opts.reloader()
    except Ec2NetError as exc:
        pending.keep(own + owed)  # a later run reloads for us
        outcome.fail("reload", exc)
        return outcome.exit_code
    pending.settle(own + owed)
    if outcome.changed:
        log.info("reloaded systemd-networkd (%s changed)", ", ".join(outcome.changed))
    else:
        log.info("reloaded systemd-networkd")
    return outcome.exit_code


def _one_line(exc: Exception) -> Exception:
    """An OSError names its file unescaped (and may name two): name it the safe way."""
    if isinstance(exc, OSError) and exc.filename is not None:
        return Ec2NetError(f"{safeio.shown(exc.filename)}: {exc.strerror or exc}")
    return exc


def _log_changes(ifname: str, changes: apply.Changes) -> None:
    for rel in changes.written:
        log.info("%s: wrote %s", ifname, rel)
    for rel in changes.removed:
        log.info("%s: removed %s", ifname, rel)


def _sync(
    netdir: Path, ifname: str, files: Mapping[str, str], outcome: Outcome, *, announce: bool = True
) -> apply.Changes | None:
    """Make the generated files of one interface `files` ({} removes them); record the result."""
    try:
        changes = apply.sync_interface(netdir, ifname, files, outcome.before_change)
    except (Ec2NetError, OSError) as exc:
        outcome.fail(ifname, _one_line(exc))
        return None
    if announce:
        _log_changes(ifname, changes)
    if changes.changed:
        outcome.changed.append(ifname)
    return changes


def _configure(
    netdir: Path,
    ifname: str,
    eni: Eni,
    primary: bool,
    outcome: Outcome,
    options: RenderOptions,
    *,
    announce: bool = True,
    state_root: Path | None = None,
) -> apply.Changes | None:
    """Render and apply one ENI. With `state_root`, skip rendering when nothing changed."""
    if not eni.has_addresses:
        outcome.note(
            "%s: ENI %s has no IP addresses (EFA only?), leaving it alone", ifname, eni.mac
        )
        return None
    wanted = state.digest(eni, ifname, primary, options) if state_root else ""
    if state_root and state.unchanged(state_root, netdir, ifname, wanted):
        log.debug("%s: metadata unchanged since the files were written", ifname)
        return apply.Changes()
    from .render import render_eni  # jinja2 only where something is rendered

    files = render_eni(eni, ifname, primary=primary, options=options)
    changes = _sync(netdir, ifname, files, outcome, announce=announce)
    if state_root is not None:
        # The files are in place either way; a record we cannot keep costs only the shortcut.
        try:
            if changes is None:
                state.forget(state_root, ifname)
            else:
                state.save(state_root, netdir, ifname, wanted, sorted(files))
        except Ec2NetError as exc:
            outcome.fail(ifname, exc)
    return changes


def _remove(opts: Options, ifname: str, outcome: Outcome, *, announce: bool = True) -> bool:
    """Delete what we generated for `ifname`; True if anything was there."""
    try:
        state.forget(opts.root, ifname)
    except Ec2NetError as exc:
        outcome.fail(ifname, exc)
    changes = _sync(opts.netdir, ifname, {}, outcome, announce=announce)
    return changes is not None and changes.changed


def _leave_alone(opts: Options, ifname: str, reason: str, outcome: Outcome) -> None:
    """An interface that is not ours: never configure it, drop what we generated before."""
    log.debug("%s: left alone (%s)", ifname, reason)
    if _remove(opts, ifname, outcome, announce=False):
        log.info("%s: left alone (%s); removed our earlier configuration", ifname, reason)


def _unmanaged_reason(opts: Options, link: sysfs.Link) -> str | None:
    entry = opts.config.unmanaged.matches(link.name, link.mac)
    if entry is not None:
        return f"Unmanaged={entry} in the configuration"
    manager = linkstate.managed_by(opts.root, link.name)
    if manager is not None and manager != linkstate.NETWORKD_MANAGER:
        return f"udev ID_NET_MANAGED_BY={manager}"
    return None


def _select_links(
    opts: Options,
    names: list[str] | None,
    outcome: Outcome,
    every: list[sysfs.Link] | None = None,
) -> list[sysfs.Link]:
    """The named links, or (names=None) every ENI among `every` (default: all in sysfs)."""
    if names is None:
        if every is None:
            every = sysfs.list_links(opts.root)
        return [link for link in every if link.is_eni]
    links = []
    for name in names:
        link = sysfs.get_link(opts.root, name)
        if link is None:
            outcome.fail(name, Ec2NetError("no such interface (or it has no MAC address)"))
        else:
            links.append(link)
    return links


# Every network namespace has it, whatever else is (or is not) visible.
LOOPBACK = "lo"


def _present_links(opts: Options) -> list[sysfs.Link]:
    """Every link in sysfs, when the listing is evidence enough to call a missing link gone.

    Files are removed because a link vanished only on positive evidence: /sys/class/net is
    readable and shows at least one readable link besides loopback. An empty or unreadable
    listing (sysfs not mounted, a restricted container) is an environment error, not the
    detachment of every ENI, primary included.
    """
    links = sysfs.list_links(opts.root)
    if not any(link.name != LOOPBACK for link in links):
        raise Ec2NetError(
            f"{opts.root / sysfs.SYS_CLASS_NET} shows no readable interface besides "
            f"{LOOPBACK}; changing nothing"
        )
    return links


def _vanished(opts: Options, every: list[sysfs.Link]) -> list[str]:
    """Interfaces we generated config for that are gone; `every` comes from _present_links.

    A link that is listed but could not be read is not gone.
    """
    present = {link.name for link in every}
    return sorted(
        name
        for name in apply.generated_interfaces(opts.netdir) - present
        if not _listed(opts.root, name)
    )


def _listed(root: Path, name: str) -> bool:
    try:
        return sysfs.link_exists(root, name)
    except UsageError:
        return False  # not a name the kernel accepts: no such link


def setup(opts: Options, names: list[str] | None) -> int:
    """Configure the named interfaces, or every ENI present (names=None)."""
    outcome = Outcome.of(opts)
    _setup(opts, names, outcome)
    return _finish(opts, outcome)


def _remove_leftovers(opts: Options, names: Iterable[str]) -> None:
    """Temporary files that killed runs left for these interfaces. Only call this holding
    their locks: every writer of an interface's files holds its lock, so none is being
    written now."""
    for ifname in names:
        paths = apply.remove_interface_temp_files(opts.netdir, ifname)
        for path in paths + state.remove_temp_files(opts.root, ifname):
            log.info("removed %s left behind by an interrupted run", safeio.shown(path))


def _still_there(opts: Options, link: sysfs.Link) -> bool:
    if sysfs.get_link(opts.root, link.name) == link:
        return True
    log.info("%s: gone or changed while waiting for its lock; not configured", link.name)
    return False


def _setup(opts: Options, names: list[str] | None, outcome: Outcome) -> None:
    every: list[sysfs.Link] | None = None
    if names is None:
        try:
            every = _present_links(opts)
        except Ec2NetError as exc:
            outcome.fail("sysfs", exc)
            return
    links = _select_links(opts, names, outcome, every)
    vanished = _vanished(opts, every) if every is not None else []
    wanted = [link.name for link in links] + vanished
    with interface_locks(opts.root, wanted, opts.deadline + LOCK_MARGIN, outcome.fail) as held:
        _remove_leftovers(opts, held)
        for ifname in vanished:
            if ifname in held:
                _remove(opts, ifname, outcome)
        # Read again under the locks: a link that went (or changed MAC) while we waited must
        # not get files that its own unit's stop has already removed.
        current = [link for link in links if link.name in held and _still_there(opts, link)]
        _setup_links(opts, current, outcome, every)
    if not links and names is None:
        log.debug("no ENI found in %s", opts.root / sysfs.SYS_CLASS_NET)


# Lock name for the refresh walk; ':' cannot occur in an interface name.
WALK_LOCK = ":refresh-walk"
# What failed when the walk could not be recorded (the walk itself was done).
WALK_RECORD = "refresh-walk record"


def refresh(opts: Options, names: list[str] | None, *, coalesce: bool = False) -> int:
    """Re-read IMDS and update what changed (the periodic path: quiet when nothing changes).

    With `coalesce` (the per-ENI timer: `refresh --coalesce IF`) one run walks every ENI we
    manage and records the walk, so the other ENIs' timers within the window stop at once
    instead of each reading IMDS.
    """
    if not opts.config.refresh:
        log.debug("refresh is switched off in the configuration")
        return EXIT_OK
    outcome = Outcome.of(opts, routine=True)
    if not coalesce:
        _setup(opts, names, outcome)
        return _finish(opts, outcome)
    if names is None or len(names) != 1:
        raise UsageError("refresh --coalesce takes exactly one interface")
    ifname = sysfs.check_ifname(names[0])
    code = None

    def lock_failed(_name: str, exc: Ec2NetError) -> None:
        outcome.fail(ifname, exc)

    with interface_locks(opts.root, [WALK_LOCK], opts.deadline + LOCK_MARGIN, lock_failed) as held:
        # A reload an earlier run owes does not void the walk: _finish below settles it.
        if held:
            code = refresh_walk.covered(str(opts.root), ifname, unless_reload_owed=False)
        if code is not None:
            log.log(
                logging.ERROR if code else logging.DEBUG,
                "%s: covered by a walk of all ENIs less than a minute ago%s",
                ifname,
                " that failed for it" if code else "",
            )
        elif held:
            started = refresh_walk.now()
            try:
                present = {link.name for link in _present_links(opts)}
            except Ec2NetError as exc:
                # Not recorded: the next timer tries again instead of trusting this walk.
                outcome.fail(ifname, exc)
                return _finish(opts, outcome)
            if ifname not in present:
                # Detached while its timer fired: the unit's stop removes its files; a walk
                # now would only record a failure that a re-attach within the window inherits.
                log.debug("%s: gone; nothing to refresh", ifname)
                return _finish(opts, outcome)
            ours = apply.generated_interfaces(opts.netdir) & present
            targets = sorted(ours | {ifname})
            _setup(opts, targets, outcome)
            failed = set(targets) & set(outcome.failed)
            try:
                refresh_walk.record(str(opts.root), started, set(targets) - failed, failed)
            except Ec2NetError as exc:
                outcome.fail(WALK_RECORD, exc)
    _finish(opts, outcome)
    # This unit reports on its own interface; the others' errors are logged all the same.
    own = {ifname, "reload", WALK_RECORD}
    return EXIT_FAILED if code or own & set(outcome.failed) else EXIT_OK


def _altnames(
    opts: Options, ifname: str, eni: Eni, outcome: Outcome, taken: dict[str, str]
) -> None:
    if not opts.config.altnames or opts.root != Path("/"):
        return  # a --root tree has no kernel links to name
    from . import altnames

    try:
        if not taken:
            taken.update(altnames.holders())
        altnames.ensure(ifname, altnames.wanted(eni), taken)
    except Ec2NetError as exc:
        log.warning("%s: %s", ifname, exc)


@dataclass
class Survey:
    """Which links are ours, which are left alone and why, and what IMDS says about ours."""

    enis: list[tuple[sysfs.Link, Eni | Ec2NetError]] = field(default_factory=list)
    left_alone: list[tuple[sysfs.Link, str]] = field(default_factory=list)
    primary_mac: str = ""


def _peers(opts: Options, links: list[sysfs.Link], every: list[sysfs.Link] | None) -> list[str]:
    """MACs of the other links that hold or may take a routing table of ours: ENIs and links
    with our files, unless the configuration or udev leaves them alone. Only their device
    numbers are read, so that a partial run (hotplug `setup eth2`) sees a clash too."""
    if every is None:
        try:
            every = sysfs.list_links(opts.root)
        except Ec2NetError as exc:
            log.debug("not comparing device numbers with other links: %s", exc)
            return []
    chosen = {link.name for link in links} | {link.mac for link in links}
    ours = apply.generated_interfaces(opts.netdir)
    return [
        link.mac
        for link in every
        if not chosen & {link.name, link.mac}
        and (link.is_eni or link.name in ours)
        and _unmanaged_reason(opts, link) is None
    ]


def _survey(
    opts: Options, links: list[sysfs.Link], every: list[sysfs.Link] | None = None
) -> Survey:
    """`every`: all links in sysfs, if the caller has listed them already."""
    survey = Survey()
    managed = []
    for link in links:
        reason = _unmanaged_reason(opts, link)
        if reason is None:
            managed.append(link)
        else:
            survey.left_alone.append((link, reason))
    if not managed:
        return survey
    source = opts.open_source()
    try:
        survey.primary_mac = read_primary_mac(source)
        results = read_enis(
            source,
            [link.mac for link in managed],
            survey.primary_mac,
            peers=_peers(opts, links, every),
        )
    except Ec2NetError as exc:
        survey.enis = [(link, exc) for link in managed]
        return survey
    for link in managed:
        result = results[link.mac]
        if isinstance(result, Eni):
            # An ENI id in Unmanaged= can only be matched once IMDS has named the ENI.
            entry = opts.config.unmanaged.matches(link.name, link.mac, result.interface_id)
            if entry is not None:
                survey.left_alone.append((link, f"Unmanaged={entry} in the configuration"))
                continue
        survey.enis.append((link, result))
    return survey


def _setup_links(
    opts: Options, links: list[sysfs.Link], outcome: Outcome, every: list[sysfs.Link] | None
) -> None:
    taken: dict[str, str] = {}  # names in use, read once per run when first needed
    survey = _survey(opts, links, every)
    for link, reason in survey.left_alone:
        _leave_alone(opts, link.name, reason, outcome)
    primary_mac = survey.primary_mac
    for link, result in survey.enis:
        if isinstance(result, Ec2NetError):
            outcome.fail(link.name, result)
            continue
        primary = link.mac == primary_mac
        changes = _configure(
            opts.netdir,
            link.name,
            result,
            primary,
            outcome,
            opts.render_options,
            state_root=opts.root,
        )
        # Names are given at setup (boot, hotplug); a refresh only when something changed.
        if changes is not None and (changes.changed or not outcome.routine):
            _altnames(opts, link.name, result, outcome, taken)
        shadow = networkd.shadowing_file(opts.root, link.name)
        if shadow is not None:
            log.warning(
                "%s: networkd applies %s, which sorts before %s and hides it and its drop-ins",
                link.name,
                shadow,
                opts.netdir / layout.network_file(link.name),
            )


def remove(opts: Options, names: list[str], *, only_if_gone: bool = False) -> int:
    """Delete our generated files for the named interfaces (after a detach)."""
    outcome = Outcome.of(opts)
    for name in names:
        sysfs.check_ifname(name)
    with interface_locks(opts.root, names, opts.deadline + LOCK_MARGIN, outcome.fail) as held:
        for name in held:
            if only_if_gone and sysfs.link_exists(opts.root, name):
                log.debug("%s still exists; keeping its configuration", name)
                continue
            _remove_leftovers(opts, [name])
            _remove(opts, name, outcome)
    return _finish(opts, outcome)


def _name_enis(enis: Iterable[Eni]) -> dict[str, Eni]:
    ordered = sorted(enis, key=lambda e: (e.network_card, e.device_number, e.mac))
    return {f"eth{i}": eni for i, eni in enumerate(ordered)}


def render_snapshot(
    source: MetadataSource,
    out: Path,
    links: Mapping[str, str] | None,
    echo: Callable[[str], None],
    options: RenderOptions = DEFAULT_RENDER_OPTIONS,
) -> int:
    """Offline: write the tree for a metadata snapshot into `out` (no sysfs, no reload)."""
    outcome = Outcome()
    primary_mac = read_primary_mac(source)
    macs = list(links.values()) if links else list_macs(source)
    results = read_enis(source, macs, primary_mac)
    good = {mac: r for mac, r in results.items() if isinstance(r, Eni)}
    for mac, result in results.items():
        if not isinstance(result, Eni):
            outcome.fail(mac, result)
    if links:
        named = {name: good[mac] for name, mac in links.items() if mac in good}
    else:
        named = _name_enis(good.values())
    for ifname, eni in named.items():
        # The echoed list below says what was written; log lines would repeat it.
        primary = eni.mac == primary_mac
        changes = _configure(out, ifname, eni, primary, outcome, options, announce=False)
        if changes is None:
            continue
        for rel in apply.generated_files(out, ifname):
            state = "written" if rel in changes.written else "unchanged"
            echo(f"{out / rel} ({state})")
    return outcome.exit_code


def parse_link_args(values: Iterable[str]) -> dict[str, str]:
    """NAME=MAC pairs from --link options; each name and each MAC at most once."""
    links: dict[str, str] = {}
    for value in values:
        name, sep, mac = value.partition("=")
        if not sep:
            raise UsageError(f"--link {quote(value)}: expected NAME=MAC")
        try:
            mac = parse_mac(mac)
        except ValueError:
            raise UsageError(f"--link {quote(value)}: not a MAC address") from None
        if sysfs.check_ifname(name) in links:
            raise UsageError(f"--link {quote(value)}: {quote(name)} is named twice")
        if mac in links.values():
            raise UsageError(f"--link {quote(value)}: MAC {mac} is given twice")
        links[name] = mac
    return links


def _admin_overrides(root: Path, ifname: str) -> list[str]:
    admin = root / layout.ADMIN_NETWORK_DIR
    names = [layout.network_file(ifname)] + [layout.dropin(ifname, d) for d in layout.DROPINS]
    return [str(admin / n) for n in names if (admin / n).exists()]


def _eni_facts(eni: Eni, primary: bool) -> dict[str, Any]:
    return {
        "interface_id": eni.interface_id,
        "primary": primary,
        "network_card": eni.network_card,
        "device_number": eni.device_number,
        "table": eni.table,
        "rule_priority": None if primary else eni.table,
        "metric": eni.metric,
        "local_ipv4s": [str(a) for a in eni.local_ipv4s],
        "ipv6s": [str(a) for a in eni.ipv6s],
        "ipv4_prefixes": [str(n) for n in eni.ipv4_prefixes],
        "ipv6_prefixes": [str(n) for n in eni.ipv6_prefixes],
        "subnet_ipv4_cidr": str(eni.subnet_ipv4_cidr) if eni.subnet_ipv4_cidr else None,
        "subnet_ipv6_cidrs": [str(n) for n in eni.subnet_ipv6_cidrs],
    }


def show(opts: Options, names: list[str] | None, as_json: bool, echo: Callable[[str], None]) -> int:
    """What IMDS says per ENI, which files we generated, and admin overrides."""
    outcome = Outcome()
    links = _select_links(opts, names, outcome)
    results: Mapping[str, object] = {}
    primary_mac = None
    if links:
        source = opts.open_source()
        try:
            primary_mac = read_primary_mac(source)
            results = read_enis(source, [link.mac for link in links], primary_mac)
        except Ec2NetError as exc:
            outcome.fail("metadata", exc)
    report = []
    for link in links:
        entry: dict[str, Any] = {"interface": link.name, "mac": link.mac, "driver": link.driver}
        result = results.get(link.mac)
        if isinstance(result, Eni):
            entry.update(_eni_facts(result, link.mac == primary_mac))
        elif isinstance(result, Exception):
            outcome.fail(link.name, result)
            entry["error"] = str(result)
        entry["generated_files"] = [
            str(opts.netdir / rel) for rel in apply.generated_files(opts.netdir, link.name)
        ]
        entry["admin_overrides"] = _admin_overrides(opts.root, link.name)
        entry["network_file"] = networkd.applied_network_file(opts.root, link.name)
        entry["shadowed_by"] = networkd.shadowing_file(opts.root, link.name)
        report.append(entry)
    if as_json:
        echo(json.dumps({"interfaces": report}, indent=2))
    else:
        for entry in report:
            echo(_format_entry(entry))
    return outcome.exit_code


def _format_entry(entry: Mapping[str, Any]) -> str:
    head = f"{entry['interface']}  {entry['mac']}  driver={entry['driver'] or '-'}"
    lines = [head]
    if "error" in entry:
        lines.append(f"  error: {entry['error']}")
    if "table" in entry:
        role = "primary" if entry["primary"] else "secondary"
        lines.append(
            f"  {entry['interface_id'] or 'eni-?'}  {role}  card {entry['network_card']}"
            f"  device {entry['device_number']}  table {entry['table']}"
            f"  rule priority {entry['rule_priority'] or '-'}  metric {entry['metric']}"
        )
        for key in ("local_ipv4s", "ipv6s", "ipv4_prefixes", "ipv6_prefixes", "subnet_ipv6_cidrs"):
            if entry[key]:
                lines.append(f"  {key}: {' '.join(entry[key])}")
        if entry["subnet_ipv4_cidr"]:
            lines.append(f"  subnet_ipv4_cidr: {entry['subnet_ipv4_cidr']}")
    for path in entry["generated_files"]:
        lines.append(f"  generated: {path}")
    for path in entry["admin_overrides"]:
        lines.append(f"  admin override: {path}")
    if entry["network_file"]:
        lines.append(f"  networkd applies: {entry['network_file']}")
    if entry["shadowed_by"]:
        lines.append(f"  WARNING: shadowed by {entry['shadowed_by']}")
    return "\n".join(lines)


def check(
    opts: Options, names: list[str] | None, as_json: bool, echo: Callable[[str], None]
) -> int:
    """Compare IMDS, our files, networkd and the kernel for each ENI; exit 1 on any problem."""
    from . import check as checks

    outcome = Outcome(routine=True)
    findings = []
    try:
        every = _present_links(opts)
        vanished = _vanished(opts, every)
    except Ec2NetError as exc:
        every, vanished = [], []
        findings.append(checks.Finding("*", "not-checked", f"interfaces: {exc}"))
    links = _select_links(opts, names, outcome, every)
    findings += [checks.Finding(name, "metadata", "no such interface") for name in outcome.failed]
    for ifname in vanished:
        findings.append(checks.Finding(ifname, "stale-file", "files for a link that is gone"))
    survey = _survey(opts, links, every)
    for link, reason in survey.left_alone:
        findings.append(checks.Finding(link.name, "left-alone", reason, "info"))
        if apply.generated_files(opts.netdir, link.name):
            findings.append(checks.Finding(link.name, "stale-file", "left alone, has files"))
    try:
        rules = checks.kernel_rules()
    except (Ec2NetError, ValueError) as exc:
        rules = {}
        findings.append(checks.Finding("*", "not-checked", f"kernel state: {exc}"))
    options = opts.render_options
    for link, eni in survey.enis:
        if not isinstance(eni, Eni):
            findings.append(checks.Finding(link.name, "metadata", str(eni)))
            continue
        if not eni.has_addresses:
            findings.append(checks.Finding(link.name, "left-alone", "no IP addresses", "info"))
            continue
        primary = link.mac == survey.primary_mac
        findings += checks.check_files(opts.netdir, link.name, eni, primary, options)
        findings += checks.check_networkd(opts.root, link.name)
        if rules:
            try:
                findings += checks.check_kernel(link.name, eni, primary, options, rules)
            except (Ec2NetError, ValueError) as exc:
                findings.append(checks.Finding(link.name, "not-checked", str(exc)))
    checked = [link.name for link in links]
    failed = any(f.severity == "error" for f in findings)
    if as_json:
        report = {
            "ok": not failed,
            "interfaces": checked,
            "findings": [f.as_dict() for f in findings],
        }
        echo(json.dumps(report, indent=2))
    else:
        echo(checks.render_findings(findings, checked))
    return EXIT_FAILED if failed else EXIT_OK


def set_hostname(opts: Options, setter: Callable[[str], None] | None = None) -> int:
    """The hostname from IMDS local-hostname, unless a static hostname is configured."""
    from . import hostname

    if not opts.config.set_hostname:
        log.debug("setting the hostname is switched off in the configuration")
        return EXIT_OK
    try:
        hostname.set_from_imds(
            opts.root,
            lambda: opts.open_source().get("local-hostname"),
            setter=setter or hostname.set_transient,
        )
    except (Ec2NetError, OSError) as exc:
        log.error("set-hostname: %s", exc)
        return EXIT_FAILED
    return EXIT_OK
