"""Answer extraction shared by every reward: the last `\\boxed{...}` of a response."""

from __future__ import annotations

import re

_BOX_COMMANDS = ("\\boxed", "\\fbox")


def completion_text(completion) -> str:
    """TRL passes completions as plain strings or, for conversational data, as a list of message dicts."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        return "".join(m.get("content", "") for m in completion if isinstance(m, dict))
    raise TypeError(f"unsupported completion type {type(completion).__name__}")


def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` / `\\fbox{...}` (nested braces allowed) or `\\boxed x`; None if absent."""
    start = max(text.rfind(cmd) for cmd in _BOX_COMMANDS)
    if start < 0:
        return None
    cmd = next(c for c in _BOX_COMMANDS if text.startswith(c, start))
    rest = text[start + len(cmd) :]
    if rest.startswith(" ") and not rest.lstrip().startswith("{"):
        match = re.match(r"\s+([^\s$]+)", rest)  # `\boxed 5` form: up to the next space or `$`
        return match.group(1) if match else None
    rest = rest.lstrip()
    if not rest.startswith("{"):
        return None
    depth = 0
    for i, char in enumerate(rest):
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return rest[1:i].strip()
    return None  # unbalanced: the response was cut off inside the box


_FENCE = re.compile(r"^[ \t]*```+[ \t]*([\w+.-]*)[ \t]*$")
_PYTHON_TAGS = ("python", "py", "python3")


def last_code_block(text: str) -> str | None:
    """Code of the last fenced block tagged python/py/python3 (or, when none is tagged, the last untagged block).

    None when there is no closed block, or when the response ends inside an open block (it was cut off).
    """
    blocks: list[tuple[str, str]] = []
    tag, lines = None, []
    for line in text.splitlines():
        fence = _FENCE.match(line)
        if tag is None:
            if fence:
                tag, lines = fence.group(1).lower(), []
        elif fence and not fence.group(1):
            blocks.append((tag, "\n".join(lines)))
            tag = None
        else:
            lines.append(line)
    if tag is not None:
        return None
    for wanted in (_PYTHON_TAGS, ("",)):
        tagged = [code for block_tag, code in blocks if block_tag in wanted]
        if tagged:
            return tagged[-1]
    return None
