"""Real clusters for the backend tests, started in a temporary folder and stopped afterwards: a one-node
SLURM cluster (Debian's slurmctld and slurmd) and a Dask scheduler with worker processes (the ``dask`` CLI)."""

import contextlib
import os
import pwd
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import gumbench
from tests.conftest import require_package, require_program

SOURCE = str(Path(gumbench.__file__).resolve().parents[1])  # jobs and workers import the code under test


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def daemons(commands, folder: Path, env=None):
    """Start each command (logging to folder/<name>.log); terminate them all on exit."""
    started = []
    try:
        for name, command in commands:
            log = open(folder / f"{name}.log", "w")
            started.append((subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env), log))
        yield
    finally:
        for process, log in reversed(started):
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.close()


def wait_for(ready, what: str, folder: Path, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.2)
    logs = "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted(folder.glob("*.log")))
    pytest.fail(f"{what} not ready after {timeout:.0f} s\n{logs}", pytrace=False)


def python_path() -> str:
    return os.pathsep.join(filter(None, [SOURCE, os.environ.get("PYTHONPATH")]))


SLURM_CONF = """\
ClusterName=gumbench
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
SlurmUser={user}
SlurmdUser={user}
AuthType=auth/none
CredType=cred/none
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN
PartitionName={partition} Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


def job_steps(conf: Path) -> list[int]:
    """The slurmstepd processes of the cluster configured by ``conf`` (they inherit SLURM_CONF from its slurmd)."""
    mark = f"SLURM_CONF={conf}".encode()
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            if (proc / "comm").read_text().strip() == "slurmstepd" and mark in (proc / "environ").read_bytes().split(
                b"\0"
            ):
                pids.append(int(proc.name))
    return pids


@contextlib.contextmanager
def slurm_cluster(folder: Path, partition: str = "gumbench"):
    """A one-node SLURM cluster of this host; yields the partition name. Inside, SLURM_CONF points the
    client commands (sbatch, sinfo) at it and PYTHONPATH makes jobs import this checkout's gumbench.
    No munge (auth/none), no cgroups (processes tracked through /proc), no accounting database.
    On exit its jobs are cancelled and waited for, then the daemons stop."""
    packages = {
        "slurmctld": "slurmctld",
        "slurmd": "slurmd",
        **dict.fromkeys(["sinfo", "sbatch", "srun", "squeue", "scancel"], "slurm-client"),
    }
    path = {name: require_program(name, package) for name, package in packages.items()}
    require_package("submitit")  # the slurm backend submits through it
    for sub in ("state", "spool"):
        (folder / sub).mkdir()
    conf = folder / "slurm.conf"
    conf.write_text(
        SLURM_CONF.format(
            host=socket.gethostname().split(".")[0],
            ctld_port=free_port(),
            d_port=free_port(),
            user=pwd.getpwuid(os.getuid()).pw_name,
            folder=folder,
            cpus=os.cpu_count() or 1,
            partition=partition,
        )
    )

    def output(*command):
        return subprocess.run([path[command[0]], *command[1:]], capture_output=True, text=True).stdout.split()

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SLURM_CONF", str(conf))
        patch.setenv("PYTHONPATH", python_path())
        try:
            with daemons([(name, [path[name], "-D", "-f", str(conf)]) for name in ("slurmctld", "slurmd")], folder):
                wait_for(
                    lambda: output("sinfo", "-h", "-N", "-o", "%t") == ["idle"],
                    "SLURM node (sinfo shows it idle)",
                    folder,
                )
                try:
                    yield partition
                finally:
                    output("scancel", "--partition", partition)
                    wait_for(
                        lambda: not output("squeue", "-h") and not job_steps(conf),
                        "SLURM jobs to end",
                        folder,
                        timeout=30,
                    )
        finally:
            for pid in job_steps(conf):  # steps left behind by jobs that did not end: they would retry forever
                os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def dask_cluster(folder: Path, workers: int = 2):
    """`dask scheduler` and ``workers`` separate `dask worker` processes of one thread; yields the scheduler address."""
    Client = require_package("dask.distributed").Client

    dask = str(Path(sys.executable).with_name("dask"))  # the CLI of the dask distributed package, beside this Python
    file = str(folder / "scheduler.json")
    commands = [
        (
            "scheduler",
            [dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file", file],
        )
    ]
    commands += [(f"worker-{i}", [dask, "worker", "--scheduler-file", file, "--nthreads", "1", "--no-dashboard",
                                  "--local-directory", str(folder / f"worker-{i}")]) for i in range(workers)]
    with daemons(commands, folder, env={**os.environ, "PYTHONPATH": python_path()}):
        with Client(scheduler_file=file, timeout=60) as client:  # waits for the scheduler to write its file
            wait_for(lambda: len(client.scheduler_info()["workers"]) == workers, f"{workers} Dask workers", folder)
            address = client.scheduler.address
        yield address
