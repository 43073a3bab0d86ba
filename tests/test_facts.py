"""One source for every shared fact: ec2net/facts.py. Nothing else in the tree spells out the
ENI driver list, the /run and /var/lib directories or the marker lines; the installed files
get them from meson (tests/test_install.py checks the substituted values)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from ec2net import facts

REPO = Path(__file__).resolve().parents[1]

# Where a literal may stand besides facts.py:
# - README.md: prose for people reading the source on a forge, never built or installed; it
#   names the paths an administrator types (cat /run/ec2-net-utils/active). Substituting it
#   would leave the repository's front page full of @NAME@.
# - tests/golden/: expected outputs of the renderer (data: they start with the marker because
#   the renderer wrote it there, which is what they check).
ALLOWED = ("ec2net/facts.py", "README.md", "tests/golden/", "tests/test_facts.py")


def spelled(literal: str) -> re.Pattern[str]:
    """`literal`, also with its hyphens escaped for roff (man page sources)."""
    return re.compile(r"\\?-".join(re.escape(part) for part in literal.split("-")))


def literals() -> dict[str, re.Pattern[str]]:
    return {
        # Any copy of the driver list names its one member no other word contains.
        "ENI_DRIVERS": re.compile(re.escape(facts.ENI_DRIVERS[1])),
        "RUN_DIR": spelled(facts.RUN_DIR),
        "PACKAGE_STATE_DIR": spelled(facts.PACKAGE_STATE_DIR),
        "MARKER": spelled(facts.MARKER),
        "LEFT_MARKER": spelled(facts.LEFT_MARKER),
        # The name three different directories shared; each has its own now.
        "the ambiguous STATE_DIR": re.compile(r"\bSTATE_DIR\b"),
    }


def tracked_files() -> list[str]:
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"not a git checkout: {exc}")
    return [f for f in out.decode().split("\0") if f and not f.startswith(ALLOWED)]


def test_no_fact_is_copied_anywhere_else() -> None:
    files = tracked_files()
    assert "meson.build" in files and "generator/ec2-net-utils-generator.in" in files
    found = []
    for rel in files:
        path = REPO / rel
        if path.is_symlink() or not path.is_file():
            continue
        text = path.read_bytes().decode("utf-8", "replace")
        for name, pattern in literals().items():
            for match in pattern.finditer(text):
                line = text.count("\n", 0, match.start()) + 1
                found.append(f"{rel}:{line}: {name}")
    assert found == [], "use ec2net.facts (or @NAME@ in meson-built files):\n" + "\n".join(found)


def test_the_check_finds_a_copy(tmp_path: Path) -> None:
    """The patterns match the forms the facts take in shell, udev, networkd and Python."""
    samples = [
        f'ENV{{ID_NET_DRIVER}}!="{"|".join(facts.ENI_DRIVERS)}"',
        "Driver=" + " ".join(facts.ENI_DRIVERS),
        f"ConditionPathExists=/{facts.ACTIVE_FLAG}",
        f"rm -rf /{facts.PACKAGE_STATE_DIR}",
        f"{facts.MARKER} for eth0",
        "\\fI/" + facts.ACTIVE_FLAG.replace("-", "\\-") + "\\fR",
        facts.LEFT_MARKER,
        "STATE_DIR = 'x'",
    ]
    for sample in samples:
        assert any(p.search(sample) for p in literals().values()), sample


def test_meson_reads_the_values() -> None:
    out = subprocess.run(
        [sys.executable, "-I", str(REPO / "ec2net/facts.py")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    values = dict(line.split("=", 1) for line in out.splitlines())
    assert values == facts.meson_values()
    assert values["ACTIVE_FLAG"] == "/" + facts.ACTIVE_FLAG
    assert values["ENI_DRIVERS_UDEV"].split("|") == list(facts.ENI_DRIVERS)
    for name in ("RUN_DIR", "ACTIVE_FLAG", "PACKAGE_STATE_DIR"):
        assert values[name].startswith("/") and "'" not in values[name]  # quoted in the hook
    assert all("=" not in v and "\n" not in v for v in values.values()), "meson splits at ="


def test_package_scripts_take_the_state_directory_from_facts() -> None:
    """After removal the hook is gone: postrm gets the path from debhelper (-D, from
    facts.py), the rpm %postun from the package name, which facts' path must then end in."""
    postrm = (REPO / "packaging/debian/ec2-net-utils.postrm").read_text()
    assert "rm -rf '#PACKAGE_STATE_DIR#'" in postrm
    rules = (REPO / "packaging/debian/rules").read_text()
    assert "dh_installdeb -DPACKAGE_STATE_DIR=" in rules and "ec2net/facts.py" in rules
    spec = (REPO / "packaging/ec2-net-utils.spec").read_text()
    name = re.search(r"^Name:\s+(\S+)$", spec, re.M)
    assert name is not None and f"var/lib/{name.group(1)}" == facts.PACKAGE_STATE_DIR
    assert "rm -rf /var/lib/%{name}\n" in spec


def test_the_paths_nest() -> None:
    for rel in (
        facts.ACTIVE_FLAG,
        facts.APPLIED_STATE_DIR,
        facts.LOCK_DIR,
        facts.PENDING_DIR,
        facts.REFRESH_WALK_FILE,
    ):
        assert rel.startswith(facts.RUN_DIR + "/") and not rel.startswith("/")


def test_the_boot_path_imports_little(tmp_path: Path) -> None:
    """The generator, at every boot, imports facts; without a configuration file that must
    not pull in configparser (and re with it), nor typing."""
    probe = (
        "import sys; sys.path.append(sys.argv[1]); from ec2net import facts; "
        "d = facts.decide(sys.argv[2]); "
        "print(d.act, sorted({'configparser', 're', 'typing'} & set(sys.modules)))"
    )
    cmd = [sys.executable, "-I", "-S", "-c", probe, str(REPO), str(tmp_path)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    assert out == "False []\n"
    (tmp_path / facts.CONFIG_FILE).parent.mkdir(parents=True)
    (tmp_path / facts.CONFIG_FILE).write_text("[Main]\nEnable=yes\n")
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    assert out.startswith("True ['configparser'")
