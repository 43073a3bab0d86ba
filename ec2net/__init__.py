"""ec2-net-utils: systemd-networkd configuration for EC2 elastic network interfaces."""

__version__ = "3.0.0.dev0"
