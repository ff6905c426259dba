"""Reading the deployment files the way Docker Compose and Docker read them (for the tests)."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parents[3]
COMPOSE_FILE = ROOT / "docker-compose.yml"
OVERRIDE_FILES = tuple(sorted((ROOT / "infra" / "compose").glob("*.yml")))
ALL_COMPOSE_FILES = (COMPOSE_FILE, *OVERRIDE_FILES)
DOCKERFILES = tuple(sorted((ROOT / "infra" / "docker").glob("*.Dockerfile")))
SCHEMA = Path(__file__).with_name("compose_spec") / "compose-spec.json"
ENV_EXAMPLE = ROOT / ".env.example"

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME:+alt} (Compose interpolation)
VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}")


class ComposeLoader(yaml.SafeLoader):
    """PyYAML plus Compose's merge tags (``!reset``, ``!override``), read as plain values."""


def _compose_tag(loader: ComposeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    return loader.construct_scalar(node)  # type: ignore[arg-type]


ComposeLoader.add_constructor("!reset", _compose_tag)
ComposeLoader.add_constructor("!override", _compose_tag)


@cache
def load_compose(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as stream:
        document = yaml.load(stream, Loader=ComposeLoader)  # a SafeLoader subclass
    assert isinstance(document, dict)
    return document


@cache
def compose_validator() -> Draft202012Validator:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def variables_in(text: str) -> list[re.Match[str]]:
    return list(VARIABLE.finditer(text))


def with_defaults(value: Any, environment: dict[str, str] | None = None) -> Any:
    """``value`` with every ``${...}`` replaced as Compose would with only ``environment`` set."""
    environment = environment or {}
    if isinstance(value, dict):
        return {key: with_defaults(item, environment) for key, item in value.items()}
    if isinstance(value, list):
        return [with_defaults(item, environment) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"] or "", match["arg"] or ""
        current = environment.get(name)
        if op in (":-", "-"):
            unset = current is None or (op == ":-" and current == "")
            return arg if unset else str(current)
        if current is None:
            raise KeyError(f"${{{name}}} has no default")
        return current

    return VARIABLE.sub(substitute, value)


def services(path: Path = COMPOSE_FILE) -> dict[str, dict[str, Any]]:
    resolved = with_defaults(load_compose(path))
    return dict(resolved.get("services", {}))


def duration_seconds(text: str) -> float:
    """A Compose duration (``1m30s``, ``11m``, ``15s``) in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", text)
    assert parts and "".join(a + b for a, b in parts) == text, f"not a duration: {text!r}"
    return sum(float(amount) * units[unit] for amount, unit in parts)


def documented_compose_variables() -> dict[str, str]:
    """``# NAME=default`` lines of .env.example: variables Compose reads, not the application."""
    documented = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        match = re.fullmatch(r"#\s*([A-Z][A-Z0-9_]*)=(.*)", line.strip())
        if match:
            documented[match[1]] = match[2]
    return documented


# --- Dockerfiles --------------------------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str
    arguments: str

    def exec_form(self) -> list[str]:
        parsed = json.loads(self.arguments)
        assert isinstance(parsed, list)
        return [str(item) for item in parsed]


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


@dataclass
class Dockerfile:
    path: Path
    global_args: dict[str, str]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def stage(self, name: str) -> Stage:
        return next(stage for stage in self.stages if stage.name == name)

    def base_image(self, stage: Stage) -> str:
        return re.sub(r"\$\{?(\w+)\}?", lambda m: self.global_args.get(m[1], m[0]), stage.base)

    def runs(self) -> list[str]:
        return [i.arguments for stage in self.stages for i in stage.all("RUN")]


def parse_dockerfile(path: Path) -> Dockerfile:
    logical: list[str] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, arguments = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = arguments.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=name))
        elif not stages and keyword == "ARG":
            key, _, default = arguments.partition("=")
            global_args[key.strip()] = default.strip()
        else:
            stages[-1].instructions.append(Instruction(keyword, arguments.strip()))
    return Dockerfile(path=path, global_args=global_args, stages=stages)


def copy_sources(instruction: Instruction) -> list[str]:
    words = [w for w in shlex.split(instruction.arguments) if not w.startswith("--")]
    return words[:-1]


# --- .dockerignore --------------------------------------------------------------------------


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def excluded_from_context(relative: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = relative.strip("/").split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        regex = _glob_regex(pattern.removeprefix("!").strip("/"))
        if any(re.fullmatch(regex, candidate) for candidate in candidates):
            excluded = not negated
    return excluded


def _glob_regex(pattern: str) -> str:
    """Go's filepath.Match syntax plus ``**``, as .dockerignore uses it."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out.append(pattern[i : end + 1])
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return "".join(out)
