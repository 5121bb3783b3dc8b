"""Short messages for config errors: jsonargparse's report of a typo or a wrong type, in one or two lines.

jsonargparse explains a bad value through every level of nesting (the task's union with None, the
strategy's class, the option); the user needs the option's flag, what was given, what is accepted and,
for a near miss, the option or value meant. `explain` reads those out of the report's text.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from pathlib import Path

from .errors import InputError

PROG = "python -m dip_lightning"
VERBOSE_HINT = "(add --verbose for the parser's full report)"


def check_yaml(path: str) -> str:
    """`path`, once its text parses as YAML; else an InputError naming the file, the line and column, the fault,
    and the line's text (the parser's own report names neither the file nor the fault)."""
    import yaml

    text = Path(path).read_text()
    try:
        yaml.safe_load(text)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        fault = err.problem or err.context or "not valid YAML"
        if err.context and err.context_mark is not None and err.problem:
            fault += f" ({err.context} at line {err.context_mark.line + 1})"
        if fault == "mapping values are not allowed here":
            fault += " (is a ':' missing on a line above, or this line's indentation off?)"
        lines = text.splitlines()
        shown = lines[mark.line].strip() if mark.line < len(lines) else ""
        raise InputError(f"{path}, line {mark.line + 1}, column {mark.column + 1}: {fault}"
                         + (f"\n  line {mark.line + 1}: {shown}" if shown else "")) from None
    except yaml.YAMLError as err:
        raise InputError(f"{path} is not valid YAML: {' '.join(str(err).split())}") from None
    return path


def _close(word: str, candidates: Iterable[str]) -> str | None:
    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None


def _type_words(text: str) -> str:
    """`<class 'float'>` -> `a float`; `typing.Literal['a', 'b']` -> `one of a, b`; a class -> its name."""
    literal = re.search(r"Literal\[(.*)\]", text)
    if literal:
        return "one of " + ", ".join(value.strip(" '\"") for value in literal.group(1).split(","))
    names = [name.rsplit(".", 1)[-1] for name in re.findall(r"<class '([\w.]+)'>", text)] or [text.strip()]
    words = ["null" if name == "NoneType" else f"an {name}" if name[0] in "aeiou" else f"a {name}" for name in names]
    return " or ".join(words)


def _given(report: str) -> str | None:
    """The value the user gave on the command line, from the innermost `NestedArg(key=..., val=...)`."""
    nested = re.search(r"NestedArg\(key='[^']*', val='([^']*)'\)", report)
    return nested.group(1) if nested else None


def _unknown_option(report: str, path: list[str], option: str) -> str:
    from .options import find_class

    classes = re.findall(r"class_path[ =]'([\w.]+)'", report)
    name = classes[-1].rsplit(".", 1)[-1] if classes else "it"
    flag = "--" + ".".join([*path, option])
    given = _given(report)
    line = f"{name} has no option {option!r} ({flag}{'=' + given if given is not None else ''} given)"
    accepted: list[str] = []
    if classes:
        try:
            accepted = [o.name for o in find_class(classes[-1]).options]
        except Exception:  # noqa: BLE001  (the names only add a hint)
            accepted = []
    close = _close(option, accepted)
    if close:
        line += f": did you mean --{'.'.join([*path, close])}?"
    if not accepted:
        return line
    shown = name if classes[-1].startswith("dip_lightning.") else classes[-1]  # what `options` finds
    return f"{line}\n{name}'s options: {', '.join(accepted)} (with their meaning: {PROG} options {shown})"


def _unknown_class(path: list[str], given: str) -> str:
    from .options import KINDS, shipped

    kind = next((k for k in KINDS if k.key == ".".join(path)), None)
    known = list(shipped(kind)) if kind else []
    close = _close(given, known)
    hint = f"did you mean {close}? " if close else ""
    choices = f"choose {', '.join(known)} or" if known else "give"
    return f"--{'.'.join(path)}={given}: no such class: {hint}{choices} a class path module.Class"


def explain(report: str, options: Iterable[str] = ()) -> str:
    """One or two lines for jsonargparse's error `report`; `options` are the parser's flags, for near misses."""
    report = report.strip()
    unrecognized = re.match(r"unrecognized arguments: (.*)", report, re.IGNORECASE | re.DOTALL)
    if unrecognized:
        given = unrecognized.group(1).split()[0]
        close = _close(given.split("=", 1)[0], options)
        return (f"unknown option {given}" + (f": did you mean {close}?" if close else "")
                + f"\n{PROG} COMMAND --help lists a command's options, {PROG} options a task's or a strategy's")
    path = re.findall(r'Parser key "([^"]+)"', report)
    unknown = re.findall(r"Option '([^']+)' is not accepted", report)
    if unknown:
        return _unknown_option(report, path, unknown[-1])
    flag = "--" + ".".join(path) if path else "the config"
    not_a_class = re.search(r"Expected a dot import path string: (\S+)", report)
    if not_a_class and path:
        return _unknown_class(path, not_a_class.group(1))
    inner = report[report.rfind(f'Parser key "{path[-1]}"'):] if path else report
    expected = re.search(r"Expected a (.+?)\. Got value: (.*)", inner)
    if expected:
        wanted, got = _type_words(expected.group(1)), expected.group(2).strip()
        values = re.search(r"Literal\[(.*)\]", expected.group(1))
        close = _close(got, [v.strip(" '\"") for v in values.group(1).split(",")]) if values else None
        return f"{flag} expects {wanted}, got {got!r}" + (f": did you mean {close}?" if close else "")
    subtypes = re.search(r"Subtypes: \[(.*?)\]", inner)
    given = re.search(r"Given value: (.*)", inner)
    if subtypes and given:
        return f"{flag} expects {_type_words(subtypes.group(1))}, got {given.group(1).strip()!r}"
    lines = [line.strip(" -") for line in inner.splitlines() if line.strip(" -")]
    return f"{flag}: {lines[-1] if lines else report}\n{VERBOSE_HINT}"
