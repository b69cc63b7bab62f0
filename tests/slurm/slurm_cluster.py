"""A throw-away single-node SLURM cluster built from Debian's packages, for tests and by hand.

What runs (all as children of the calling process, all state under one folder):

- ``munged`` with its own key and socket (SLURM authenticates every message through it);
- ``mariadbd`` on a private port and socket, the database behind ``slurmdbd``;
- ``slurmdbd`` (job accounting, so that ``sacct`` answers as on a real cluster);
- ``slurmctld`` and ``slurmd`` for one node with the machine's CPUs and memory, a CPU
  partition and a GPU partition, and fake GPUs (``gres.conf`` with ``Count=`` and no device
  file: SLURM allocates and accounts them, the jobs run on the CPU).

No systemd and no cgroups are needed (``proctrack/linuxproc``, ``task/none``), so it also
starts inside containers. The daemons and the clients started here find it through
``SLURM_CONF`` (see :meth:`env`). A copy of ``slurm.conf`` also goes to
``/etc/slurm/slurm.conf``, SLURM's compiled-in default, because the executor plugin's job
step strips every ``SLURM_*`` variable (``SLURM_CONF`` included) before its nested ``srun``;
an existing ``/etc/slurm/slurm.conf`` that this module did not write is never touched (the
cluster then refuses to start, see ``ClusterUnavailable``), and ours is removed on stop.

By hand::

    python tests/slurm/slurm_cluster.py start /tmp/slurm   # prints the export line, stays up
    export SLURM_CONF=/tmp/slurm/etc/slurm.conf; sinfo; sbatch --wrap hostname; sacct
"""

from __future__ import annotations

import getpass
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import string
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

TEMPLATES = Path(__file__).resolve().parent / "templates"
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")
# First line of every slurm.conf written here; marks a system copy as ours to replace/remove.
MARKER = "# genomelab SLURM test cluster"
# Debian package names (bookworm: SLURM 22.05, MariaDB 10.11, munge 0.5).
APT_PACKAGES = ("slurmctld", "slurmd", "slurmdbd", "slurm-client", "munge", "mariadb-server")
BINARIES = (
    "slurmctld",
    "slurmd",
    "slurmdbd",
    "sbatch",
    "sacct",
    "sacctmgr",
    "scontrol",
    "munged",
    "mariadbd",
    "mariadb-install-db",
    "mariadb",
)


class ClusterUnavailable(RuntimeError):
    """The cluster cannot be installed or started here; the message says why."""


def which(name: str) -> str | None:
    """``shutil.which`` that also looks in the sbin folders (not on every user's PATH)."""
    found = shutil.which(name)
    if found:
        return found
    for folder in ("/usr/sbin", "/sbin", "/usr/local/sbin"):
        path = Path(folder) / name
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    return None


def missing_binaries() -> list[str]:
    return [b for b in BINARIES if which(b) is None]


def ensure_packages(install: bool = True, timeout: int = 900) -> None:
    """Make sure SLURM, munge and MariaDB are installed, with apt-get when allowed.

    Raises ``ClusterUnavailable`` naming what is missing and why it could not be installed.
    """
    missing = missing_binaries()
    if not missing:
        return
    if not install:
        raise ClusterUnavailable(f"SLURM/munge/MariaDB programs missing: {missing} (installation disabled)")
    if os.geteuid() != 0:
        raise ClusterUnavailable(f"SLURM/munge/MariaDB programs missing: {missing}; installing needs root")
    apt = shutil.which("apt-get")
    if apt is None:
        raise ClusterUnavailable(f"SLURM/munge/MariaDB programs missing: {missing}; no apt-get here")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    logger.info("installing %s with apt-get", " ".join(APT_PACKAGES))
    for cmd in (
        [apt, "update", "-qq"],
        [apt, "install", "-y", "-qq", "--no-install-recommends", *APT_PACKAGES],
    ):
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired as exc:
            raise ClusterUnavailable(f"{' '.join(cmd)} timed out after {timeout} s") from exc
        if res.returncode != 0:
            raise ClusterUnavailable(
                f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr.strip()[-1500:]}"
            )
    still = missing_binaries()
    if still:
        raise ClusterUnavailable(f"still missing after apt-get install: {still}")


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports that are free right now (held open together while chosen)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _tail(path: Path, n_chars: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-n_chars:]
    except OSError:
        return f"({path} not written)"


@dataclass
class SlurmCluster:
    """One node, two partitions (``cpu_partition`` default, ``gpu_partition``), fake GPUs.

    ``mem_mb`` defaults to what ``slurmd -C`` reports for this machine, ``cpus`` to
    ``oversubscribe`` times its CPUs: a Snakemake job spends most of its life starting Python
    and waiting on the scheduler, so a test node that admits only as many jobs as cores runs
    a workflow several times slower than a local run (SLURM accepts the larger count through
    ``SlurmdParameters=config_overrides``).
    """

    base: Path
    cluster: str = "genomelab"
    account: str = "genomelab"
    cpu_partition: str = "debug"
    gpu_partition: str = "gpu"
    n_gpus: int = 2
    oversubscribe: int = 4
    cpus: int | None = None
    mem_mb: int | None = None
    host: str = field(default_factory=lambda: socket.gethostname().split(".")[0])
    system_conf: Path | None = SYSTEM_CONF
    _procs: dict[str, subprocess.Popen] = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ paths
    @property
    def conf(self) -> Path:
        return self.base / "etc" / "slurm.conf"

    @property
    def munge_socket(self) -> Path:
        return self.base / "munge" / "munge.socket.2"

    def log(self, daemon: str) -> Path:
        return self.base / "log" / f"{daemon}.log"

    def env(self) -> dict[str, str]:
        """The environment SLURM clients (and jobs, through ``--export=ALL``) need."""
        return dict(os.environ, SLURM_CONF=str(self.conf))

    # ---------------------------------------------------------------- helpers
    def run(self, *cmd: str, check: bool = True, timeout: int = 60) -> subprocess.CompletedProcess:
        """Run a SLURM client command against this cluster."""
        exe = which(cmd[0]) or cmd[0]
        res = subprocess.run([exe, *cmd[1:]], capture_output=True, text=True, timeout=timeout, env=self.env())
        if check and res.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr.strip()}")
        return res

    def _spawn(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> None:
        out = open(self.base / "log" / f"{name}.stdout", "ab")  # noqa: SIM115 - owned by the process
        self._procs[name] = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env or self.env(),
            # Own session: a Ctrl-C in the terminal reaches pytest, which then stops these.
            start_new_session=True,
        )
        out.close()

    def _wait(self, what: str, ready, daemon: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = self._procs.get(daemon)
            if proc is not None and proc.poll() is not None:
                raise ClusterUnavailable(
                    f"{daemon} exited with {proc.returncode} while waiting for {what}:\n"
                    f"{_tail(self.log(daemon))}\n{_tail(self.base / 'log' / f'{daemon}.stdout')}"
                )
            try:
                if ready():
                    return
            except (OSError, subprocess.SubprocessError):
                pass
            time.sleep(0.3)
        raise ClusterUnavailable(
            f"timed out after {timeout:.0f} s waiting for {what}:\n{_tail(self.log(daemon))}\n"
            f"{_tail(self.base / 'log' / f'{daemon}.stdout')}"
        )

    def _render(self, name: str, values: dict[str, object], mode: int = 0o644) -> Path:
        text = string.Template((TEMPLATES / f"{name}.in").read_text()).substitute(values)
        path = self.base / "etc" / name
        path.write_text(text)
        path.chmod(mode)
        return path

    def _machine(self) -> tuple[int, int]:
        """CPUs and memory (MB) as slurmd itself sees them, so the node registers cleanly."""
        res = subprocess.run([which("slurmd") or "slurmd", "-C"], capture_output=True, text=True, timeout=30)
        fields = dict(kv.split("=", 1) for kv in res.stdout.split() if "=" in kv)
        cpus = int(fields.get("CPUs", os.cpu_count() or 1))
        mem = int(fields.get("RealMemory", 1000))
        return cpus, mem

    # --------------------------------------------------------------- start-up
    def start(self, timeout: float = 90.0) -> SlurmCluster:
        """Start every daemon and register the account; raises ``ClusterUnavailable``."""
        missing = missing_binaries()
        if missing:
            raise ClusterUnavailable(f"programs missing: {missing}")
        if self.system_conf is not None and self.system_conf.exists():
            if not self._ours(self.system_conf):
                raise ClusterUnavailable(
                    f"{self.system_conf} exists and was not written by this test cluster: a real "
                    "SLURM is configured on this machine; not touching it"
                )
            owner = self._owner(self.system_conf)
            if owner is not None and owner != os.getpid():
                raise ClusterUnavailable(
                    f"another genomelab test cluster (pid {owner}) is using {self.system_conf}"
                )
        for sub in ("etc", "log", "run", "munge", "db", "spool/ctld", "spool/d"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        # munged refuses group/world-accessible key folders.
        (self.base / "munge").chmod(0o700)
        real_cpus, real_mem = self._machine()
        self.cpus = self.cpus or real_cpus * self.oversubscribe
        self.mem_mb = self.mem_mb or real_mem
        gpu_dir = self.base / "dev"
        gpu_dir.mkdir(exist_ok=True)
        for i in range(self.n_gpus):
            # slurmd wants character devices; /dev/null is one that every machine has.
            fake = gpu_dir / f"gpu{i}"
            if not fake.is_symlink():
                fake.symlink_to("/dev/null")
        ctld_port, slurmd_port, dbd_port, db_port = free_ports(4)
        db_user, db_pass = "slurm", secrets.token_hex(12)
        values = {
            "base": self.base,
            "pid": os.getpid(),
            "cluster": self.cluster,
            "host": self.host,
            "user": getpass.getuser(),
            "ctld_port": ctld_port,
            "slurmd_port": slurmd_port,
            "dbd_port": dbd_port,
            "db_port": db_port,
            "db_user": db_user,
            "db_pass": db_pass,
            "munge_socket": self.munge_socket,
            "cpus": self.cpus,
            # Needed only when the node claims more than slurmd detects.
            "slurmd_parameters": (
                "SlurmdParameters=config_overrides"
                if self.cpus > real_cpus or self.mem_mb > real_mem
                else "# the node is described as slurmd detects it"
            ),
            "mem_mb": self.mem_mb,
            "n_gpus": self.n_gpus,
            "gpu_files": f"{gpu_dir}/gpu[0-{self.n_gpus - 1}]" if self.n_gpus > 1 else f"{gpu_dir}/gpu0",
            "cpu_partition": self.cpu_partition,
            "gpu_partition": self.gpu_partition,
        }
        try:
            self._start_munge()
            self._start_mariadb(db_port, db_user, db_pass, timeout)
            conf = self._render("slurm.conf", values)
            if self.system_conf is not None:
                try:
                    self.system_conf.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(conf, self.system_conf)
                except OSError as exc:
                    raise ClusterUnavailable(f"cannot write {self.system_conf}: {exc}") from exc
            self._render("gres.conf", values)
            # slurmdbd refuses a config readable by others (it holds the DB password).
            self._render("slurmdbd.conf", values, mode=0o600)
            self._spawn("slurmdbd", [which("slurmdbd"), "-D"])
            self._wait(f"slurmdbd on port {dbd_port}", lambda: _port_open(dbd_port), "slurmdbd", timeout)
            self._sacctmgr("add", "cluster", self.cluster)
            self._spawn("slurmctld", [which("slurmctld"), "-D", "-i"])
            self._wait(
                "slurmctld to answer",
                lambda: "UP" in self.run("scontrol", "ping", check=False).stdout,
                "slurmctld",
                timeout,
            )
            self._spawn("slurmd", [which("slurmd"), "-D", "-N", self.host])
            self._wait("the node to be idle", self._node_idle, "slurmd", timeout)
            self._sacctmgr(
                "add", "account", self.account, "Description=genomelab tests", "Organization=genomelab"
            )
            self._sacctmgr("add", "user", getpass.getuser(), f"Account={self.account}")
        except BaseException:
            self.stop()
            raise
        logger.info("SLURM test cluster up: SLURM_CONF=%s", self.conf)
        return self

    def _start_munge(self) -> None:
        key = self.base / "munge" / "munge.key"
        key.write_bytes(secrets.token_bytes(1024))
        key.chmod(0o600)
        self._spawn(
            "munged",
            [
                which("munged"),
                "--foreground",
                "--force",
                f"--socket={self.munge_socket}",
                f"--key-file={key}",
                f"--pid-file={self.base / 'run' / 'munged.pid'}",
                f"--log-file={self.log('munged')}",
                f"--seed-file={self.base / 'munge' / 'munged.seed'}",
            ],
        )
        self._wait("the munge socket", self.munge_socket.exists, "munged", 30)

    def _start_mariadb(self, port: int, user: str, password: str, timeout: float) -> None:
        datadir = self.base / "db" / "data"
        sock = self.base / "db" / "mysqld.sock"
        res = subprocess.run(
            [
                which("mariadb-install-db"),
                "--no-defaults",
                "--user=root",
                f"--datadir={datadir}",
                "--auth-root-authentication-method=socket",
                "--skip-test-db",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if res.returncode != 0:
            raise ClusterUnavailable(f"mariadb-install-db failed: {res.stderr.strip()[-1500:]}")
        self._spawn(
            "mariadbd",
            [
                which("mariadbd"),
                "--no-defaults",
                "--user=root",
                f"--datadir={datadir}",
                f"--socket={sock}",
                f"--port={port}",
                "--bind-address=127.0.0.1",
                f"--pid-file={self.base / 'run' / 'mariadbd.pid'}",
                f"--log-error={self.log('mariadbd')}",
                "--skip-name-resolve",
                # Small and lax: a test database, not a production one.
                "--innodb-buffer-pool-size=64M",
                "--innodb-flush-log-at-trx-commit=0",
                "--innodb-lock-wait-timeout=900",
            ],
        )

        def client(*sql: str) -> subprocess.CompletedProcess:
            return subprocess.run(
                [which("mariadb"), f"--socket={sock}", "-uroot", "-e", ";".join(sql)],
                capture_output=True,
                text=True,
                timeout=30,
            )

        self._wait("MariaDB", lambda: client("SELECT 1").returncode == 0, "mariadbd", timeout)
        res = client(
            f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY '{password}'",
            f"GRANT ALL ON slurm_acct_db.* TO '{user}'@'127.0.0.1'",
            "FLUSH PRIVILEGES",
        )
        if res.returncode != 0:
            raise ClusterUnavailable(f"could not create the slurmdbd database user: {res.stderr.strip()}")

    @staticmethod
    def _ours(path: Path) -> bool:
        try:
            with open(path) as fh:
                return fh.readline().startswith(MARKER)
        except OSError:
            return False

    @staticmethod
    def _owner(path: Path) -> int | None:
        """The live process that wrote our ``slurm.conf`` there, if any."""
        try:
            with open(path) as fh:
                match = re.search(r"\(pid (\d+)\)", fh.readline())
        except OSError:
            return None
        if match is None:
            return None
        pid = int(match.group(1))
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return pid

    def _sacctmgr(self, *args: str) -> None:
        res = self.run("sacctmgr", "-i", *args, check=False)
        # "Nothing new added" when it exists already: fine.
        if res.returncode != 0 and "Nothing new added" not in res.stdout + res.stderr:
            raise ClusterUnavailable(f"sacctmgr {' '.join(args)} failed: {res.stdout}{res.stderr}")

    def _node_idle(self) -> bool:
        state = self.run("sinfo", "-h", "-N", "-o", "%t", "-n", self.host, check=False).stdout.strip()
        if state.startswith(("down", "drain", "drng", "unk")) and "*" not in state:
            # ReturnToService=2 normally does this; a fresh node may need the nudge.
            self.run("scontrol", "update", f"NodeName={self.host}", "State=RESUME", check=False)
        return state.startswith("idle")

    # -------------------------------------------------------------- shut-down
    def job_processes(self) -> list[int]:
        """PIDs of live processes that this cluster's jobs started, and their slurmstepd: their
        environment holds ``SLURM_CONF`` of this cluster (slurmstepd sets it for every step)
        and, but for slurmstepd, a ``SLURM_JOB_ID``. This process and its ancestors are never
        listed, nor a shell that only exported ``SLURM_CONF``."""
        marker, job = f"SLURM_CONF={self.conf}".encode(), b"SLURM_JOB_ID="
        keep, pid = set(), os.getpid()
        while pid > 1:  # the ancestors: a shell that exported SLURM_CONF must survive
            keep.add(pid)
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                break
            pid = int(re.search(r"^PPid:\s*(\d+)", status, re.MULTILINE).group(1))
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) in keep:
                continue
            try:
                env = (entry / "environ").read_bytes().split(b"\0")
            except OSError:  # gone, or not ours to read
                continue
            if marker not in env:
                continue
            try:
                name = (entry / "cmdline").read_bytes().split(b"\0")[0]
            except OSError:
                continue
            if any(v.startswith(job) for v in env) or name.startswith(b"slurmstepd"):
                found.append(int(entry.name))
        return found

    def stop(self) -> None:
        """Stop the daemons this object started, newest first, then kill what their jobs left:
        a step process that ``proctrack/linuxproc`` lost track of (one was seen outliving the
        requeue test, asleep and deaf to SIGTERM) would otherwise outlive the cluster."""
        self._stop_daemons()
        for pid in self.job_processes():
            logger.info("killing process %d left by a job of the test cluster", pid)
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

    def _stop_daemons(self) -> None:
        for name in reversed(list(self._procs)):
            proc = self._procs.pop(name)
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
        if (
            self.system_conf is not None
            and self._ours(self.system_conf)
            and self._owner(self.system_conf) in (None, os.getpid())
        ):
            self.system_conf.unlink()

    def __enter__(self) -> SlurmCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] != "start":
        sys.stderr.write(f"usage: {argv[0]} start FOLDER   (stops on Ctrl-C)\n")
        return 2
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # A background job ignores SIGINT; let `kill PID` (SIGTERM) stop the cluster cleanly.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    ensure_packages()
    cluster = SlurmCluster(Path(argv[2]).resolve()).start()
    sys.stdout.write(f"export SLURM_CONF={cluster.conf}\n")
    sys.stdout.flush()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
