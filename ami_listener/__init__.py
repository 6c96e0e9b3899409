"""The AMI edge: a resilient panoramisk connection."""

from ami_listener.connection import (
    AmiConnection,
    AmiDisconnected,
    AmiError,
    AmiTimeout,
    LoginRefused,
    try_login,
)

__all__ = ["AmiConnection", "AmiDisconnected", "AmiError", "AmiTimeout", "LoginRefused", "try_login"]
