"""A throwaway 3-node MariaDB Galera cluster on loopback, for the multi-writer tests.

Each node is a tests.servers.MariaDB with the wsrep options added: its own datadir,
socket and ports (client, group communication, incremental and full state
transfer). State transfers use rsync, which runs as mariadbd's own user; so when
the suite runs as root the nodes run as `mysql`, under a base directory it can
reach (pytest's temp dirs are root's, mode 0700).
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from sqlalchemy.engine import URL

from tests.servers import HOSTILE_PASSWORD, MariaDB, ServerUnavailable, free_ports

PROVIDER = Path("/usr/lib/galera/libgalera_smm.so")
NODES = 3


class GaleraNode(MariaDB):
    """One node: a MariaDB whose options make it a member of the cluster."""

    run_as = "mysql"

    def __init__(self, base: Path, number: int, ports: list[int]) -> None:
        super().__init__(base)
        self.number = number
        # The client port, the group's, incremental and full state transfer: four
        # distinct ports, none another node's (the cluster takes them all at once).
        self.port, self.gcomm_port, self.ist_port, self.sst_port = ports
        self.members = ""  # gcomm://… of every node, set by the cluster
        # Only the first start of the first node founds the cluster; any later start
        # (a restart after a kill) joins the cluster that is there.
        self.bootstrap = False
        # Where its data left off, for a restart (see restart()).
        self.start_position: str | None = None

    def options(self) -> list[str]:
        here = f"127.0.0.1:{self.gcomm_port}"
        provider = ";".join(
            [
                f"gmcast.listen_addr=tcp://{here}",
                f"ist.recv_addr=127.0.0.1:{self.ist_port}",
                "gcache.size=64M",
            ]
        )
        return [
            *super().options(),
            "--wsrep-on=ON",
            f"--wsrep-provider={PROVIDER}",
            "--wsrep-cluster-name=imgwatch-test",
            f"--wsrep-cluster-address={self.members}",
            f"--wsrep-node-address={here}",
            f"--wsrep-node-name=node{self.number}",
            f"--wsrep-provider-options={provider}",
            "--wsrep-sst-method=rsync",
            f"--wsrep-sst-receive-address=127.0.0.1:{self.sst_port}",
            # Galera replicates row events only, and needs the interleaved
            # auto-increment mode: a table-level AUTO-INC lock can deadlock its appliers.
            "--binlog-format=ROW",
            "--innodb-autoinc-lock-mode=2",
            *(["--wsrep-new-cluster"] if self.bootstrap else []),
            *([f"--wsrep-start-position={self.start_position}"] if self.start_position else []),
        ]

    def install(self) -> None:
        # A joiner's datadir is filled by the state transfer from a member.
        if self.bootstrap:
            super().install()

    def status(self, name: str) -> str:
        """One of SHOW STATUS's values ('' when the node does not answer)."""
        try:
            conn = self.admin()
        except Exception:  # noqa: BLE001 - down, or not accepting connections yet
            return ""
        try:
            with conn.cursor() as cur:
                cur.execute("SHOW STATUS LIKE %s", (name,))
                row = cur.fetchone()
        finally:
            conn.close()
        return str(row[1]) if row else ""

    def kill(self) -> None:
        """SIGKILL: the node's process is gone at once, as in a crash."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def restart(self) -> None:
        """Start it again on its ports and data, as Debian's galera_recovery does under
        systemd: the position its data reached is recovered first, so that it rejoins
        by an incremental transfer of what it missed rather than a copy of it all."""
        recovery = subprocess.run(
            [self._mariadbd, *self.options(), "--wsrep-recover", "--disable-log-error"],
            capture_output=True,
            check=False,
            timeout=120,
        )
        found = re.search(rb"WSREP: Recovered position: (\S+)", recovery.stderr)
        self.start_position = found[1].decode() if found else None
        self._launch()


class GaleraCluster:
    """Three nodes; database URLs for one database and user, one per node."""

    def __init__(self) -> None:
        # Under /tmp, whose parents everyone may enter; removed by stop().
        self.base = Path(tempfile.mkdtemp(prefix="imgwatch-galera-", dir="/tmp"))
        self.base.chmod(0o755)
        ports = free_ports(4 * NODES)
        self.nodes = [
            GaleraNode(self.base / f"node{n}", n, ports[4 * (n - 1) : 4 * n])
            for n in range(1, NODES + 1)
        ]
        members = ",".join(f"127.0.0.1:{node.gcomm_port}" for node in self.nodes)
        for node in self.nodes:
            node.members = f"gcomm://{members}"

    def start(self) -> None:
        if not PROVIDER.exists():
            raise ServerUnavailable(f"{PROVIDER} not found (Debian package galera-4)")
        if shutil.which("rsync") is None:
            raise ServerUnavailable("rsync not found (Debian package rsync)")
        owner = self._owner()
        for node in self.nodes:
            node.base.mkdir()
            node.datadir.mkdir()
            if owner is not None:
                for path in (node.base, node.datadir):
                    os.chown(path, *owner)
        first = self.nodes[0]
        first.bootstrap = True
        # The other nodes' datadirs are filled by the state transfer from the first.
        first.start()
        first.bootstrap = False
        for node in self.nodes[1:]:
            node.start()
        self.wait_synced()

    @staticmethod
    def _owner() -> tuple[int, int] | None:
        """(uid, gid) the nodes run as when the suite is root; None otherwise."""
        if os.geteuid() != 0:
            return None
        try:
            entry = pwd.getpwnam(GaleraNode.run_as)
        except KeyError:
            raise ServerUnavailable("no `mysql` user (Debian package mariadb-server)") from None
        return entry.pw_uid, entry.pw_gid

    def live(self) -> list[GaleraNode]:
        return [n for n in self.nodes if n.process is not None and n.process.poll() is None]

    def wait_synced(self, timeout: float = 120.0) -> None:
        """Every running node is Synced, in a cluster of all the running nodes."""
        deadline = time.monotonic() + timeout
        while True:
            live = self.live()
            states = [
                (n.status("wsrep_local_state_comment"), n.status("wsrep_cluster_size"))
                for n in live
            ]
            if all(s == ("Synced", str(len(live))) for s in states):
                return
            if time.monotonic() > deadline:
                tails = "\n".join(f"node{n.number}: {n.log_tail()[-600:]}" for n in live)
                raise ServerUnavailable(f"cluster not synced: {states}\n{tails}")
            time.sleep(0.2)

    def create_database(self, password: str = HOSTILE_PASSWORD) -> list[URL]:
        """A fresh database and a user that may use only it, made on the first node and
        replicated (waited for on every running node); its URL on each node, in node
        order."""
        url = self.nodes[0].create_database(password)
        user, name = str(url.username), str(url.database)
        deadline = time.monotonic() + 30
        for node in self.live():
            while not _has_database(node, user, name):
                if time.monotonic() > deadline:
                    raise AssertionError(f"database {name} not on node{node.number}")
                time.sleep(0.1)
        return [url.set(port=node.port) for node in self.nodes]

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        shutil.rmtree(self.base, ignore_errors=True)


def _has_database(node: GaleraNode, user: str, name: str) -> bool:
    conn = node.admin()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM mysql.user WHERE User = %s", (user,))
            users = cur.fetchone()
            cur.execute("SHOW DATABASES LIKE %s", (name,))
            return bool(users and users[0]) and cur.fetchone() is not None
    finally:
        conn.close()
