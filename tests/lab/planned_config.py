"""Hand-written copies of the networkd files ec2net plans to write, for lab experiments.

These mirror the design (70-IF.network + drop-ins, table 10000+device, metric 512+device)
so the lab can check networkd 252's behaviour independently of the renderer.
"""

from __future__ import annotations

from collections.abc import Sequence

from netlab import VPC_SUBNET, Lab

NETWORK_DIR = "/run/systemd/network"
FALLBACK_PATH = "/usr/lib/systemd/network/80-ec2.network"


def fallback_file(extra_network: str = "") -> str:
    """The packaged fallback; the lab matches ``Name=eth*`` (veth has no ena driver)."""
    return f"[Match]\nName=eth*\n[Network]\nDHCP=yes\n{extra_network}\n"


def network_file(mac: str, device: int, extra_network: str = "") -> str:
    metric = 512 + device
    return f"""[Match]
MACAddress={mac}
[Network]
DHCP=yes
LLMNR=no
IPv6DuplicateAddressDetection=0
{extra_network}
[DHCPv4]
RouteMetric={metric}
UseRoutes=yes
UseGateway=yes
UseHostname=no
UseMTU=yes
[DHCPv6]
WithoutRA=solicit
UseHostname=no
[IPv6AcceptRA]
RouteMetric={metric}
UseGateway=yes
"""


def eni_conf(device: int, subnet: str = VPC_SUBNET) -> str:
    table = 10000 + device
    return f"""[Route]
Table={table}
Gateway=_dhcp4
[Route]
Table={table}
Destination={subnet}
Scope=link
"""


def alias_conf(secondary: Sequence[str]) -> str:
    return "".join(f"[Address]\nAddress={ip}/32\nAddPrefixRoute=false\n" for ip in secondary)


def policy_conf(device: int, sources: Sequence[str]) -> str:
    table = 10000 + device
    return "".join(
        f"[RoutingPolicyRule]\nFrom={ip}/32\nPriority={table}\nTable={table}\n" for ip in sources
    )


def write_network_file(
    lab: Lab, ifname: str, mac: str, device: int, extra_network: str = ""
) -> None:
    lab.write(f"{NETWORK_DIR}/70-{ifname}.network", network_file(mac, device, extra_network))


def write_eni_config(
    lab: Lab,
    ifname: str,
    mac: str,
    device: int,
    secondary: Sequence[str] = (),
    policy: Sequence[str] = (),
    extra_network: str = "",
) -> None:
    """70-IF.network plus its drop-ins (absent drop-ins are removed)."""
    base = f"{NETWORK_DIR}/70-{ifname}.network"
    write_network_file(lab, ifname, mac, device, extra_network)
    lab.write(f"{base}.d/eni.conf", eni_conf(device))
    for name, text in (
        ("ec2net_alias.conf", alias_conf(secondary) if secondary else ""),
        ("ec2net_policy_4.conf", policy_conf(device, policy) if policy else ""),
    ):
        if text:
            lab.write(f"{base}.d/{name}", text)
        else:
            lab.remove(f"{base}.d/{name}")
