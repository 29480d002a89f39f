"""Loading rules files into each connection's ``Policy``.

::

    rules/default.yaml (shipped)  ──┐
                                    ├─ merge ─▶ Policy(settings, rules) per connection
    MLC_ENRICHER_RULES_PATH ────────┘            (reloaded on SIGHUP; a bad file keeps the old)
      a file: every connection's file
      a directory: <connection id>.yaml, else the default set

A connection's file ``extends: default`` (the default) or ``none``. With ``default`` its
``settings`` override the default settings key by key, a rule with the name of a default rule
replaces it, other rules are added, and ``disable``/``enable`` switch rules by name. Errors
name the file, the line and the field: ``acme.yaml:12: rules.1.channels.0: Input should be
'sms', 'email' or 'voice'``.
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from enricher.rules import LANGUAGES, Policy, RulesError, RulesFile

__all__ = ["DEFAULT_RULES", "RuleBook", "default_rules", "load_file", "load_policy"]

#: The shipped rule set's resource name inside the package.
DEFAULT_RULES = "default.yaml"


def _lines(node: yaml.Node, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], int]]:
    """(path, 1-based line) of every node: where a validation error's ``loc`` points."""
    yield path, node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            yield (*path, key.value), key.start_mark.line + 1
            for sub, line in _lines(value, (*path, key.value)):
                if sub != (*path, key.value):
                    yield sub, line
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from _lines(item, (*path, index))


def _parse(text: str, name: str) -> RulesFile:
    try:
        data = yaml.safe_load(text)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"{mark.line + 1}" if mark else "?"
        raise RulesError(f"{name}:{line}: not valid YAML: {exc}") from exc
    lines = dict(_lines(node)) if node is not None else {}
    try:
        return RulesFile.model_validate(data or {})
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = tuple(error["loc"])
            # the deepest path the file has a line for (a missing field: its parent's line)
            at = next((lines[loc[:n]] for n in range(len(loc), -1, -1) if loc[:n] in lines), 1)
            where = ".".join(str(part) for part in loc) or "(file)"
            problems.append(f"{name}:{at}: {where}: {error['msg']}")
        raise RulesError("\n".join(problems)) from exc


def load_file(path: Path) -> RulesFile:
    """Parse and validate one rules file; ``RulesError`` names file, line and field."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesError(f"{path}: cannot read: {exc.strerror}") from exc
    return _parse(text, str(path))


def default_rules() -> RulesFile:
    text = resources.files("enricher").joinpath("rules", DEFAULT_RULES).read_text("utf-8")
    return _parse(text, f"enricher/rules/{DEFAULT_RULES}")


def _merge(base: RulesFile, own: RulesFile) -> RulesFile:
    if own.extends == "none":
        return own
    overrides = {name: getattr(own.settings, name) for name in own.settings.model_fields_set}
    settings = base.settings.model_copy(update=overrides)
    own_rules = {rule.name: rule for rule in own.rules}
    rules = [own_rules.pop(rule.name, rule) for rule in base.rules] + list(own_rules.values())
    return RulesFile(
        settings=settings,
        rules=tuple(rules),
        disable=base.disable + own.disable,
        enable=base.enable + own.enable,
    )


def _policy(merged: RulesFile, source: str) -> Policy:
    names = {rule.name for rule in merged.rules}
    unknown = sorted((set(merged.disable) | set(merged.enable)) - names)
    if unknown:
        raise RulesError(f"{source}: disable/enable name no rule: {', '.join(unknown)}")
    rules = tuple(
        rule.model_copy(update={"enabled": True})
        if rule.name in merged.enable
        else rule.model_copy(update={"enabled": False})
        if rule.name in merged.disable
        else rule
        for rule in merged.rules
    )
    available = templates()
    for rule in rules:
        if rule.audience.role and rule.audience.role not in merged.settings.roles:
            raise RulesError(
                f"{source}: rule {rule.name}: role {rule.audience.role!r} is not in settings.roles"
            )
        missing = [lang for lang in LANGUAGES if (rule.template, lang) not in available]
        if missing:
            # caught here, not when a customer's document first needs it
            raise RulesError(
                f"{source}: rule {rule.name}: template {rule.template!r} has no text in "
                f"{', '.join(missing)}"
            )
    return Policy(merged.settings, rules, source)


def templates() -> set[tuple[str, str]]:
    """(message, language) of every template shipped in ``enricher/templates``."""
    folder = resources.files("enricher").joinpath("templates")
    found = set()
    for entry in folder.iterdir():
        parts = entry.name.split(".")
        if len(parts) == 3 and parts[2] == "j2":
            found.add((parts[0], parts[1]))
    return found


def load_policy(path: Path | None) -> Policy:
    """The default set merged with the file at ``path`` (None: the default set alone)."""
    base = default_rules()
    if path is None:
        return _policy(base, f"enricher/rules/{DEFAULT_RULES}")
    return _policy(_merge(base, load_file(path)), str(path))


class RuleBook:
    """Each connection's policy, read from ``path`` (a file, or a directory of
    ``<connection id>.yaml``), kept until ``reload`` reads a valid replacement."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._policies: dict[str, Policy] = {}
        self._default = load_policy(path if path and path.is_file() else None)
        errors = self.reload()
        if errors:  # refuse to start on a broken file; a reload keeps the last good one
            raise RulesError("\n".join(errors))

    def _file_of(self, connection_id: str) -> Path | None:
        if self._path is None or self._path.is_file():
            return self._path
        candidate = self._path / f"{connection_id}.yaml"
        return candidate if candidate.is_file() else None

    def reload(self) -> list[str]:
        """Read every file again; returns the errors of files that were kept as they were."""
        errors: list[str] = []
        try:
            self._default = load_policy(self._path if self._path and self._path.is_file() else None)
        except RulesError as exc:
            errors.append(str(exc))
        fresh: dict[str, Policy] = {}
        if self._path is not None and self._path.is_dir():
            for file in sorted(self._path.glob("*.yaml")):
                try:
                    fresh[file.stem] = load_policy(file)
                except RulesError as exc:
                    errors.append(str(exc))
                    if file.stem in self._policies:
                        fresh[file.stem] = self._policies[file.stem]
        self._policies = fresh
        return errors

    def for_connection(self, connection_id: str) -> Policy:
        return self._policies.get(connection_id, self._default)
