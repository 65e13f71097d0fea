"""The image agrees with the project: same system tools as the set-up script, an entry point
that exists, a version and user that match the manifests, the driver and nothing beside it.
(No container engine here: the Dockerfile is read, not built; the wheel its builder stage
makes is built from the same sources.)"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
BASE = REPO / "deploy" / "kubernetes" / "base"

# In .ci/setup for development only: the virtualenv tool, modprobe for loop devices and ps for
# the tests. The image gets Python from its base and never loads modules.
DEV_ONLY_PACKAGES = {"python3-venv", "kmod", "procps"}


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with line continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, rest = line.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    assert not pending, "Dockerfile ends inside a continued line"
    return out


def stages(text: str) -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for keyword, rest in instructions(text):
        if keyword == "FROM":
            result.append([])
        if result:
            result[-1].append((keyword, rest))
    return result


def apt_packages(stage: list[tuple[str, str]]) -> set[str]:
    packages: set[str] = set()
    for keyword, rest in stage:
        if keyword != "RUN":
            continue
        for command in re.split(r"&&|;", rest):
            words = shlex.split(command)
            if "apt-get" not in words or "install" not in words:
                continue
            after = words[words.index("install") + 1 :]
            packages |= {w for w in after if not w.startswith("-")}
    return packages


def setup_packages() -> set[str]:
    text = (REPO / ".ci" / "setup").read_text()
    match = re.search(r"^SYSTEM_PACKAGES=\(([^)]*)\)", text, re.MULTILINE)
    assert match, ".ci/setup has no SYSTEM_PACKAGES=(...) array"
    return set(shlex.split(match.group(1)))


def dockerfile() -> str:
    return (REPO / "Dockerfile").read_text()


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def controller_pod() -> dict:
    """The controller's pod spec as deploy/'s base writes it."""
    return yaml.safe_load((BASE / "controller.yaml").read_text())["spec"]["template"]["spec"]


def manifests_image_tag() -> str:
    """The driver image's tag, pinned under `images:` in deploy/'s base."""
    images = yaml.safe_load((BASE / "kustomization.yaml").read_text())["images"]
    (driver,) = (i for i in images if i["name"] == "csi-disk")
    return driver["newTag"]


def test_instruction_parser_joins_continuations() -> None:
    parsed = instructions("FROM a AS b\n# note\nRUN apt-get install -y \\\n    x \\\n    y\n")
    assert parsed == [("FROM", "a AS b"), ("RUN", "apt-get install -y  x  y")]
    assert apt_packages(parsed) == {"x", "y"}


def test_image_installs_the_projects_system_packages() -> None:
    final = stages(dockerfile())[-1]
    in_image = apt_packages(final)
    declared = setup_packages()
    assert in_image, "the runtime stage installs no apt packages"
    assert declared - in_image == DEV_ONLY_PACKAGES, declared - in_image
    assert in_image <= declared, in_image - declared


def test_build_is_multi_stage_on_slim_python() -> None:
    text = dockerfile()
    parts = stages(text)
    assert len(parts) >= 2
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.MULTILINE)
    assert base and base.group(1) == "python:3.11-slim-bookworm"
    minimum = pyproject()["project"]["requires-python"].removeprefix(">=")
    image_python = re.search(r"python:(\d+\.\d+)", base.group(1))
    assert image_python
    assert tuple(map(int, image_python.group(1).split("."))) >= tuple(map(int, minimum.split(".")))
    builder = parts[0]
    assert any(k == "RUN" and "pip wheel" in r for k, r in builder)
    final = parts[-1]
    assert any(k == "COPY" and r.startswith("--from=builder") for k, r in final)


def test_entrypoint_is_a_declared_console_script_running_serve() -> None:
    entry = [r for k, r in stages(dockerfile())[-1] if k == "ENTRYPOINT"]
    assert len(entry) == 1
    argv = json.loads(entry[0])  # exec form, so signals reach the driver directly
    assert argv[0] in pyproject()["project"]["scripts"]
    assert argv[1:] == ["serve"]
    # The manifests name the same program explicitly.
    (plugin,) = (c for c in controller_pod()["containers"] if c["name"] == "csi-disk")
    assert plugin["command"] == argv


def test_default_user_is_the_controllers_non_root_user() -> None:
    final = stages(dockerfile())[-1]
    users = [r for k, r in final if k == "USER"]
    assert users, "the image should not default to root"
    uid = users[-1].split(":")[0]
    security = controller_pod()["securityContext"]
    assert int(uid) == security["runAsUser"] != 0


def test_version_label_matches_project_and_manifests() -> None:
    match = re.search(r"^ARG VERSION=(\S+)$", dockerfile(), re.MULTILINE)
    assert match
    assert match.group(1) == pyproject()["project"]["version"] == manifests_image_tag()
    labels = " ".join(r for k, r in stages(dockerfile())[-1] if k == "LABEL")
    for key in ("title", "description", "version", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels, key


def test_dockerignore_keeps_what_the_build_copies() -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copied = copied_sources()
    assert {"pyproject.toml", "README.md", "csi_disk"} <= set(copied)
    for source in copied:
        assert (REPO / source).exists(), source
        assert not any(fnmatch.fnmatch(source, p) for p in patterns), source
    assert ".venv" in patterns and ".git" in patterns
    # The packages beside the driver stay out of the build context altogether.
    assert {"csi_disk_emulator", "csi_disk_demo", "csi_disk_tools"} <= set(patterns)


def copied_sources() -> list[str]:
    """What the builder stage copies from the build context."""
    copied = []
    for keyword, rest in stages(dockerfile())[0]:
        if keyword == "COPY" and not rest.startswith("--from"):
            copied.extend(rest.split()[:-1])
    return copied


def removed_in_final_stage() -> set[str]:
    removed: set[str] = set()
    for keyword, rest in stages(dockerfile())[-1]:
        if keyword != "RUN":
            continue
        for command in re.split(r"&&|;", rest):
            words = shlex.split(command)
            if words and words[0] == "rm":
                removed |= {w for w in words[1:] if not w.startswith("-")}
    return removed


def test_the_image_carries_the_driver_package_only(tmp_path: Path) -> None:
    """A wheel built from what the builder copies holds csi_disk alone; the console scripts
    pyproject declares for the packages it lacks are removed rather than left to fail."""
    context = tmp_path / "context"
    context.mkdir()
    for source in copied_sources():
        (shutil.copytree if (REPO / source).is_dir() else shutil.copy)(
            REPO / source, context / source
        )
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(tmp_path / "wheels"), str(context)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = (tmp_path / "wheels").glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        packages = {n.split("/")[0] for n in archive.namelist() if ".dist-info/" not in n}
    assert packages == {"csi_disk"}, packages
    scripts = pyproject()["project"]["scripts"]
    (entry,) = (json.loads(r) for k, r in stages(dockerfile())[-1] if k == "ENTRYPOINT")
    assert scripts[entry[0]].split(".")[0] in packages
    elsewhere = {name for name, target in scripts.items() if target.split(".")[0] not in packages}
    assert elsewhere, "pyproject declares no program beside the driver"
    assert {f"/usr/local/bin/{name}" for name in elsewhere} == removed_in_final_stage() & {
        f"/usr/local/bin/{name}" for name in scripts
    }
