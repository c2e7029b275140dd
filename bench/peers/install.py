"""Where scripts/bench-peers installed the peers, and the error that says how to install them."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent


class PeersMissing(RuntimeError):
    """A peer mode was asked for, but the peer is not installed."""


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(os.environ.get("PEERS_CACHE") or Path(base) / "inventory-sink" / "peers")


def _pom_property(pom: Path, name: str) -> str:
    found = re.search(rf"<{name}>([^<]+)</{name}>", pom.read_text())
    assert found, f"{pom} has no <{name}>"
    return found.group(1)


@dataclass(frozen=True)
class Installed:
    """The installed peers (paths exist once `complete` holds)."""

    root: Path

    @property
    def kafka_version(self) -> str:
        return _pom_property(HERE / "connect" / "runtime" / "pom.xml", "kafka.version")

    @property
    def debezium_version(self) -> str:
        return _pom_property(
            HERE / "connect" / "plugin-debezium-jdbc" / "pom.xml", "debezium.version"
        )

    @property
    def quix_version(self) -> str:
        text = (HERE / "quix-requirements.txt").read_text()
        found = re.search(r"^quixstreams\S*==(\S+)", text, re.MULTILINE)
        assert found, "bench/peers/quix-requirements.txt pins no quixstreams"
        return found.group(1)

    @property
    def connect_dir(self) -> Path:
        return self.root / f"connect-{self.kafka_version}-debezium-{self.debezium_version}"

    @property
    def quix_python(self) -> Path:
        return self.root / f"quix-{self.quix_version}" / "bin" / "python"

    def require(self, mode: str) -> None:
        marker = {
            "connect": self.connect_dir / ".complete",
            "quix": self.quix_python.parent.parent / ".complete",
        }[mode]
        if not marker.is_file():
            raise PeersMissing(
                f"--modes {mode} needs the peer installed: run scripts/bench-peers "
                f"(installs into {self.root}; not found: {marker.parent})"
            )


def installed() -> Installed:
    return Installed(cache_dir())
