"""The images, checked statically: base tag = the Ray pin, the package installed from the
repository with torch (the CPU build on CPU images), a non-root user, a small build context.
Where a Docker engine runs, the `cluster` test at the end builds the CPU image and checks it."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.cluster.k8s_schema import CLUSTER, REPO, pyproject, ray_pin

DOCKERFILE = CLUSTER / "docker" / "Dockerfile"


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order: continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(
        line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")))
    return [(parts[0].upper(), parts[1].strip() if len(parts) > 1 else "")
            for line in text.splitlines() if (parts := line.strip().split(None, 1))]


def resolved_from(path: Path, build_args: dict[str, str] | None = None) -> str:
    ins = instructions(path)
    args = {k: v for op, a in ins if op == "ARG" and "=" in a for k, v in [a.split("=", 1)]}
    args |= build_args or {}
    (base,) = [a for op, a in ins if op == "FROM"]
    return re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], base.split()[0])


def test_base_image_is_the_pinned_ray_for_python_311() -> None:
    pin = ray_pin()
    assert resolved_from(DOCKERFILE) == f"rayproject/ray:{pin}-py311"
    assert resolved_from(DOCKERFILE, {"RAY_VARIANT": "py311-gpu"}) == f"rayproject/ray:{pin}-py311-gpu"


def test_package_is_installed_from_the_repository() -> None:
    ins = instructions(DOCKERFILE)
    copied = {src for op, a in ins if op == "COPY" for src in a.split()[:-1] if not src.startswith("--")}
    for needed in ("pyproject.toml", "README.md", "pipelines/", "ray_jobs/"):  # README: the package's readme
        assert needed in copied, f"Dockerfile does not copy {needed}"
    runs = [a for op, a in ins if op == "RUN"]
    assert any(re.search(r"pip install --no-cache-dir (--no-deps )?\.(\s|$)", r) for r in runs[-1:]), \
        "the last RUN must install the package itself: pip install --no-cache-dir [--no-deps] ."
    assert all("--no-cache-dir" in r for r in runs if "pip install" in r), "pip caches bloat the image"
    assert ("WORKDIR", "/home/ray/app") in ins


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "mlflow.Dockerfile"])
def test_image_runs_as_a_numeric_non_root_user(dockerfile: str) -> None:
    users = [a for op, a in instructions(CLUSTER / "docker" / dockerfile) if op == "USER"]
    assert users, f"{dockerfile}: no USER (the base image's user would decide)"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, \
        f"{dockerfile}: USER {users[-1]} must be numeric and not 0 for Kubernetes' runAsNonRoot"


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule: the last pattern matching the path or a parent decides."""
    def regex(pattern: str) -> re.Pattern[str]:
        out = ""
        for part in re.split(r"(\*\*|\*|\?)", pattern.strip("/")):
            out += {"**": ".*", "*": "[^/]*", "?": "[^/]"}.get(part, re.escape(part))
        return re.compile(out + "$")

    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    ignored = False
    for raw in patterns:
        negate, pattern = raw.startswith("!"), raw.lstrip("!")
        if any(regex(pattern).match(p) for p in prefixes):
            ignored = not negate
    return ignored


def test_build_context_holds_only_what_the_image_needs() -> None:
    patterns = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    for path in (".venv/bin/python", ".raypipe/mlflow.db", "tests/unit/test_config.py", ".git/HEAD",
                 ".mypy_cache/3.11/x.json", "pipelines/__pycache__/config.cpython-311.pyc",
                 "benchmarks/RESULTS.md", "cluster/kuberay/rayjob.train.yaml", "mlruns/0/meta.yaml"):
        assert dockerignored(path, patterns), f"{path} would be sent to the Docker build"
    for path in ("pyproject.toml", "README.md", "pipelines/config/pipeline.py", "pipelines/configs/demo.yaml",
                 "pipelines/stages/train.py", "ray_jobs/run_pipeline.py", "ray_jobs/batch_predict.py"):
        assert not dockerignored(path, patterns), f"{path} is excluded but the image needs it"


def test_app_code_is_root_owned_and_read_only_for_the_runtime_user() -> None:
    """COPY gives root ownership unless --chown says otherwise; the package must be installed
    by root (so its site-packages files are root's) and the app folder made read-only."""
    ins = instructions(DOCKERFILE)
    user, workdir = "root", "/"
    for op, args in ins:
        if op == "USER":
            user = args.split(":")[0]
        elif op == "WORKDIR":
            workdir = args
        elif op == "COPY" and workdir == "/home/ray/app":
            chown = re.search(r"--chown=(\S+)", args)
            assert chown is None or chown.group(1).split(":")[0] in ("root", "0"), \
                f"COPY {args}: the app code must stay root's, not the runtime user's"
        elif op == "RUN" and re.search(r"pip install [^&]*--no-deps \.", args):
            assert user in ("root", "0"), "install the package as root: its files then are root's"
            assert re.search(r"chmod -R a-w /home/ray/app", args), "make the app folder read-only"
    assert user not in ("root", "0"), "the image must end as its non-root runtime user"
    copied = [a for op, a in ins if op == "COPY" and a.split()[-2:] == ["pipelines/", "pipelines/"]]
    assert copied, "the app code is copied into /home/ray/app"


def torch_pin() -> str:
    """The exact torch version of pyproject.toml's `torch` extra (the MLP family)."""
    (pin,) = [d.split("==", 1)[1] for d in pyproject()["project"]["optional-dependencies"]["torch"]
              if d.replace(" ", "").startswith("torch==")]
    return pin


def torch_index(variant: str) -> str:
    """The index the dependency layer takes torch from for RAY_VARIANT=variant: its shell
    `case` run as the build would run it."""
    (run,) = [a for op, a in instructions(DOCKERFILE) if op == "RUN" and "torch==" in a]
    case = re.search(r"case .*?esac", run)
    assert case, "the torch index is chosen by a `case` on RAY_VARIANT"
    script = f'{case.group(0)}; printf %s "$torch_index"'
    out = subprocess.run(["sh", "-c", script], env={"RAY_VARIANT": variant},
                         capture_output=True, text=True, check=True)
    return out.stdout


def test_image_installs_torch_for_the_mlp_family() -> None:
    ins = instructions(DOCKERFILE)
    args = {k: v for op, a in ins if op == "ARG" and "=" in a for k, v in [a.split("=", 1)]}
    assert args["TORCH_VERSION"] == torch_pin(), "Dockerfile TORCH_VERSION != pyproject's torch extra"
    (run,) = [a for op, a in ins if op == "RUN" and "torch==" in a]
    pinned = r'pip install --no-cache-dir --index-url "\$\{torch_index\}" "torch==\$\{TORCH_VERSION\}"'
    assert re.search(pinned, run), "torch is installed, pinned, from the chosen index alone"
    assert "--extra-index-url" not in run, "an extra index could substitute any other package"
    assert re.search(r'pip install --no-cache-dir "\.\[torch\]"', run), "the package's torch extra"
    assert run.index("torch==") < run.index(".[torch]"), "the chosen build first, then the extra"


@pytest.mark.parametrize(("variant", "index"), [
    ("py311", "https://download.pytorch.org/whl/cpu"),     # CPU image: the CPU wheel, no CUDA libraries
    ("py311-gpu", "https://pypi.org/simple"),              # GPU image: PyPI's CUDA build
])
def test_torch_build_follows_the_image_variant(variant: str, index: str) -> None:
    assert torch_index(variant) == index


def _docker_engine() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0


@pytest.mark.cluster
@pytest.mark.slow
def test_cpu_image_builds_with_the_cpu_torch_and_the_cli() -> None:
    if not _docker_engine():
        pytest.skip("no Docker engine")
    tag = "raypipe:test-build"
    subprocess.run(["docker", "build", "-f", str(DOCKERFILE), "-t", tag, str(REPO)], check=True)
    probe = ("import torch, importlib.metadata as m; "
             "print(torch.__version__, torch.version.cuda, m.version('raypipe-tabular'))")
    out = subprocess.run(["docker", "run", "--rm", tag, "python", "-c", probe],
                         capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == f"{torch_pin()}+cpu" and out[1] == "None", out
    cli = subprocess.run(["docker", "run", "--rm", tag, "raypipe", "--version"],
                         capture_output=True, text=True, check=True).stdout
    assert cli.strip() == f"raypipe {out[2]}"
