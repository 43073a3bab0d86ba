"""Exceptions shared by the layers; each names what was wrong so a log line is actionable."""

from __future__ import annotations


class Ec2NetError(Exception):
    """Base class for every error this tool reports instead of a traceback."""


class UsageError(Ec2NetError):
    """Bad command line or configuration: exit code 2, nothing was changed."""


class MetadataError(Ec2NetError):
    """A metadata value for one ENI is missing or does not parse."""

    def __init__(self, mac: str, key: str, reason: str) -> None:
        super().__init__(f"ENI {mac}: metadata key {key!r}: {reason}")
        self.mac = mac
        self.key = key
        self.reason = reason


class NotPropagated(MetadataError):
    """IMDS does not (yet) describe this ENI consistently; worth asking again later.

    After a hot-attach the metadata service lags behind the kernel for a few seconds:
    the MAC may be missing, or show device-number 0 although it is a secondary ENI.
    """


class ImdsError(Ec2NetError):
    """The metadata service could not answer for a path within the deadline."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"IMDS {path}: {reason}")
        self.path = path
        self.reason = reason


class ApplyError(Ec2NetError):
    """Generated configuration could not be written or removed."""
