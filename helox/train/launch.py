"""Starting a training stage's processes: in this process, through `torchrun --standalone` on
one node, or one torchrun per node under `srun` meeting at a c10d rendezvous on the first node
of the Slurm allocation.

The scheduler request of a training job (`scheduler_request`) and the launch read the same
config section, so the nodes, tasks and GPUs a job asks for always match what it starts.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import logging
import os
import subprocess
import sys
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

from helox.common.config_files import section_from_dict
from helox.common.distributed import DistributedEnv
from helox.common.io import read_json
from helox.common.logs import FORMAT, setup_logging
from helox.train.config import TrainingConfig
from helox.train.lineage import stage_job_arguments

log = logging.getLogger(__name__)


# The rendezvous port is derived from the Slurm job id, so that two jobs whose allocations share
# a first node do not collide; the range lies below Linux's ephemeral ports (32768 and up).
PORT_BASE, PORT_SPAN = 20000, 10000


class LaunchError(RuntimeError):
    """The training processes could not be started, or one of them failed."""


@dataclass(frozen=True)
class Rendezvous:
    """Where the torchrun agents of a several-node job meet (`--rdzv-*`)."""

    nodes: int
    host: str
    port: int
    run_id: str  # the same on every node of one job, different for every job
    join_timeout: int  # seconds a node waits for the others before the job fails

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"


def torchrun_command(
    nproc: int, module: str, arguments: list[str], rendezvous: Rendezvous | None = None
) -> list[str]:
    """`torchrun ... --nproc-per-node N -m module arguments...` with this Python: standalone
    on one node, else joining `rendezvous` through the c10d backend, with no restarts."""
    if rendezvous is None:
        placement = ["--standalone"]
    else:
        placement = [
            f"--nnodes={rendezvous.nodes}",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint={rendezvous.endpoint}",
            f"--rdzv-id={rendezvous.run_id}",
            f"--rdzv-conf=join_timeout={rendezvous.join_timeout}",
            "--max-restarts=0",
        ]
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        *placement,
        f"--nproc-per-node={nproc}",
        "-m",
        module,
        *arguments,
    ]


def slurm_hosts(nodelist: str) -> list[str]:
    """The host names of a Slurm node list such as `gpu[01-02,07]`, as scontrol expands them."""
    try:
        result = subprocess.run(
            ["scontrol", "show", "hostnames", nodelist],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except FileNotFoundError:
        raise LaunchError(
            "scontrol is not installed here: training on several nodes runs inside a Slurm "
            "allocation, with Slurm's client commands on the node"
        ) from None
    if result.returncode != 0:
        raise LaunchError(f"scontrol show hostnames {nodelist!r} failed: {result.stderr.strip()}")
    return result.stdout.split()


def rendezvous_port(job_id: str) -> int:
    return PORT_BASE + int(job_id) % PORT_SPAN


def slurm_rendezvous(
    stage: str, config: TrainingConfig, environ: Mapping[str, str] = os.environ
) -> Rendezvous:
    """The rendezvous of this Slurm job: its first node, a port and run id from its job id."""
    job_id, nodelist = environ.get("SLURM_JOB_ID"), environ.get("SLURM_JOB_NODELIST")
    if not job_id or not nodelist:
        raise LaunchError(
            f"{stage}.nodes is {config.nodes}: training on several nodes runs inside a Slurm "
            f"allocation of that many nodes (snakemake --workflow-profile "
            f"workflow/profiles/slurm), but SLURM_JOB_ID or SLURM_JOB_NODELIST is not set; "
            f"set {stage}.nodes to 1 to train on this machine"
        )
    hosts = slurm_hosts(nodelist)
    if len(hosts) != config.nodes:
        raise LaunchError(
            f"{stage}.nodes is {config.nodes} but Slurm job {job_id} holds {len(hosts)} "
            f"node(s) ({nodelist}); the job's request comes from the same key, so a profile "
            f"or --set-resources overrides `nodes` for rule {stage}: remove that override"
        )
    return Rendezvous(
        nodes=config.nodes,
        host=hosts[0],
        port=rendezvous_port(job_id),
        run_id=f"helox-{stage}-{job_id}",
        join_timeout=config.rendezvous_timeout,
    )


def srun_command(nodes: int, gpus_per_node: int, command: list[str]) -> list[str]:
    """`command` once on each of `nodes` nodes of the current allocation.

    `--overlap` lets it share the first node with the job step that runs Snakemake's job, and
    `--kill-on-bad-exit` ends every node's torchrun as soon as one fails.
    """
    gpus = [f"--gpus-per-node={gpus_per_node}"] if gpus_per_node else []
    return [
        "srun",
        "--overlap",
        f"--nodes={nodes}",
        f"--ntasks={nodes}",
        "--ntasks-per-node=1",
        "--kill-on-bad-exit=1",
        *gpus,
        *command,
    ]


def uses_gpus(config: TrainingConfig | Mapping[str, Any]) -> bool:
    device = config.get("device") if isinstance(config, Mapping) else config.device
    return device == "cuda"


def launch_processes(
    stage: str,
    module: str,
    job_json: str,
    config: TrainingConfig,
    log_path: str | os.PathLike | None = None,
    environ: Mapping[str, str] = os.environ,
) -> None:
    """Run `python -m module JOB_JSON [LOG]` in `config.nodes` × `config.nproc` processes:
    through torchrun on one node, under srun with one torchrun per node on several."""
    arguments = [job_json] + ([str(log_path)] if log_path else [])
    if config.nodes == 1:
        command = torchrun_command(config.nproc, module, arguments)
        where = "this node"
    else:
        rendezvous = slurm_rendezvous(stage, config, environ)
        gpus_per_node = config.nproc if uses_gpus(config) else 0
        node_command = torchrun_command(config.nproc, module, arguments, rendezvous)
        command = srun_command(config.nodes, gpus_per_node, node_command)
        where = (
            f"{config.nodes} nodes meeting at {rendezvous.endpoint} "
            f"(rendezvous {rendezvous.run_id})"
        )
    log.info("launching %d training processes per node on %s", config.nproc, where)
    result = subprocess.run(command)
    if result.returncode != 0:
        timeout = (
            f"; a node that did not join within {stage}.rendezvous_timeout = "
            f"{config.rendezvous_timeout} s fails with RendezvousTimeoutError"
            if config.nodes > 1
            else ""
        )
        raise LaunchError(
            f"{stage}: the training processes on {where} failed (exit status "
            f"{result.returncode}); their errors are in the job's output above{timeout}. "
            f"Rerun to resume from the newest checkpoint"
        )


def scheduler_request(section: Mapping[str, Any]) -> dict[str, int | str]:
    """What a training rule asks of the scheduler, from its config section: `nodes`, one task
    per node (its torchrun), and on device cuda `nproc` GPUs on each node.

    snakemake-executor-plugin-slurm turns `gpu: N` into `sbatch --gpus=N`, which counts the
    whole job's GPUs and is repeated on the job's one-task `srun` step; so one node asks
    `gpu: nproc`, and several ask `gres: gpu:nproc`, which sbatch counts per node. On a GPU job
    the plugin would read `tasks` as tasks per GPU: `tasks_per_gpu: 0` stops that.
    """
    nodes, nproc = section.get("nodes", 1), section.get("nproc", 1)
    request: dict[str, int | str] = {"nodes": nodes, "tasks": nodes}
    if uses_gpus(section):
        request["tasks_per_gpu"] = 0
        if nodes == 1:
            request["gpu"] = nproc
        else:
            request["gres"] = f"gpu:{nproc}"
    return request


# ---------------------------------------------------------------------------- the workers


class StageJob:
    """A stage's arguments as data (`stage_job` makes one dataclass of them per stage), which
    a torchrun worker reads back from JSON."""

    run: ClassVar[Callable[..., dict]]  # the stage's run, whose parameters are the fields

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Self:
        """A job from `to_json`, its config sections rebuilt and checked."""
        types = {field.name: field.type for field in dataclasses.fields(cls)}
        return cls(
            **{
                name: section_from_dict(types[name], value, name)
                if dataclasses.is_dataclass(types[name])
                else value
                for name, value in json.loads(text).items()
            }
        )


def stage_job(name: str, run: Callable[..., dict]) -> type[StageJob]:
    """A `StageJob` dataclass named `name` whose fields are `run`'s parameters, with their
    types and defaults."""
    hints = typing.get_type_hints(run)
    fields = [
        (parameter.name, hints[parameter.name])
        if parameter.default is parameter.empty
        else (parameter.name, hints[parameter.name], dataclasses.field(default=parameter.default))
        for parameter in inspect.signature(run).parameters.values()
    ]
    namespace = {"run": staticmethod(run), "__module__": run.__module__}
    return dataclasses.make_dataclass(name, fields, bases=(StageJob,), namespace=namespace)


def stage_config(job: StageJob) -> TrainingConfig:
    """The job's training section: SFT's and DPO's `config`, pretraining's `training_config`."""
    return next(value for value in vars(job).values() if isinstance(value, TrainingConfig))


def launch_stage(job: StageJob, log_path: str | os.PathLike | None = None) -> dict:
    """`job.run(**job)` here, or with its config's `nproc` or `nodes` above 1 in that many
    processes of the module that defines `job.run` (`launch_processes`), whose rank 0 appends
    to `log_path`; the metrics the stage wrote to `job.output_dir/metrics.json`."""
    config = stage_config(job)
    if config.nproc == 1 and config.nodes == 1:
        return job.run(**vars(job))
    launch_processes(config.SECTION, job.run.__module__, job.to_json(), config, log_path)
    return read_json(Path(job.output_dir) / "metrics.json")


def launch_snakemake_job(smk: Any, job_type: type[StageJob], **inputs: Any) -> dict:
    """What a training rule's `script:` launches: a `job_type` of `inputs` and the output
    folder and `stage_job_arguments` of its Snakemake job (`smk`), whose rank 0 appends to the
    job's log."""
    job = job_type(**inputs, output_dir=smk.output[0], **stage_job_arguments(smk))
    return launch_stage(job, log_path=smk.log[0])


def worker_main(job_type: type[StageJob], argv: list[str] | None = None) -> int:
    """One torchrun worker: `python -m <module of job_type.run> JOB_JSON [LOG_FILE]` runs the
    job; rank 0 logs at INFO and appends to LOG_FILE, the others log warnings only."""
    parser = argparse.ArgumentParser(prog=f"python -m {job_type.run.__module__}")
    parser.add_argument("job", help=f"a {job_type.__name__} as JSON")
    parser.add_argument("log", nargs="?", default=None, help="a file rank 0 appends its log to")
    args = parser.parse_args(argv)
    env = DistributedEnv.from_environ()
    setup_logging(level=logging.INFO if env.is_main else logging.WARNING)
    if env.is_main and args.log:
        handler = logging.FileHandler(Path(args.log), mode="a", encoding="utf-8")
        handler.setFormatter(logging.Formatter(FORMAT))
        logging.getLogger().addHandler(handler)
    job = job_type.from_json(args.job)
    job.run(**vars(job))
    return 0
