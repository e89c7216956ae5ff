"""Secret redaction, applied to an event's JSON text before anything of it is stored.

Working on the JSON text (not the decoded object) means one pass covers everything the event
carries (tool inputs and outputs, prompts, error messages) and everything derived from it: the raw
log and the typed rows are both made from the redacted text. Each match becomes
`[REDACTED:<rule>]`, which holds no quote or backslash, so the JSON stays valid. In JSON text a
newline inside a string is the two characters `\\n`: value patterns stop at a backslash, a quote
or whitespace, so they never run past the end of a string.

Speed matters (every event passes here): a rule's regex runs only when one of its literal
triggers occurs in the text (one scan finds them all), and the secret-name rules are matched
anchored at each occurrence of a secret word rather than searched for across the whole text.

RULESET_VERSION changes whenever the built-in rules do (docs/privacy.md lists them).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["RULESET_VERSION", "Redactor", "RULES", "MARKER", "count_markers"]

RULESET_VERSION = 1
MARKER = "[REDACTED:"


@dataclass(frozen=True)
class Rule:
    name: str
    pattern: str
    triggers: tuple[
        str, ...
    ]  # lowercase substrings, one of which a match must contain; () = always
    group: int = 0  # the part replaced: 0 = the whole match (else e.g. only the value)
    ignore_case: bool = False


# A secret-looking name, matched from the secret word on (a KEY=value's name may have a prefix:
# AWS_SECRET_ACCESS_KEY, db_password; the prefix needs no matching, only the value is replaced).
_SECRET_WORDS = (
    "secret", "token", "password", "passwd", "pwd", "api_key", "api-key", "apikey",
    "private_key", "private-key", "access_key", "access-key", "auth_key", "credential",
)  # fmt: skip
_SECRET_NAME = "(?:" + "|".join(re.escape(w) for w in _SECRET_WORDS) + r")[A-Za-z0-9_.-]*"
# A value in JSON text: stops at whitespace, quotes, a backslash (an escape such as \n), a comma.
_VALUE = r"[^\s\"'\\,;&]{3,}"

RULES: tuple[Rule, ...] = (
    Rule(
        "private_key",
        r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----.*?-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----",
        ("private key",),
    ),
    Rule(
        "aws_access_key",
        r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[0-9A-Z]{16}\b",
        ("akia", "asia", "agpa", "aida", "aroa", "anpa"),
    ),
    Rule(
        "github_token",
        r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b",
        ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
    ),
    Rule("gitlab_token", r"\bglpat-[A-Za-z0-9_-]{20,}", ("glpat-",)),
    Rule("slack_token", r"\bxox[abposr]-[A-Za-z0-9-]{10,}", ("xox",)),
    Rule(
        "slack_webhook", r"https://hooks\.slack\.com/services/[A-Za-z0-9/_-]+", ("hooks.slack.com",)
    ),
    Rule("anthropic_key", r"\bsk-ant-[A-Za-z0-9_-]{20,}", ("sk-ant-",)),
    Rule("openai_key", r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}", ("sk-",)),
    Rule("jwt", r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}", ("eyj",)),
    # scheme://user:password@host: only the password goes.
    Rule("url_password", r"(?<=://)[^/\s:@\"\\]+:([^/\s@\"\\]+)(?=@)", ("://",), group=1),
    # KEY=value / KEY: value (env files, shell exports, configs, command lines).
    Rule(
        "secret_assignment",
        rf"{_SECRET_NAME}\s*[=:]\s*({_VALUE})",
        _SECRET_WORDS,
        group=1,
        ignore_case=True,
    ),
    # "key": "value" in JSON (a tool's input, an env object), also inside a JSON-encoded string.
    Rule(
        "secret_json_field",
        rf'{_SECRET_NAME}\\?"\s*:\s*\\?"((?:[^"\\]|\\[^"])*?)\\?"',
        _SECRET_WORDS,
        group=1,
        ignore_case=True,
    ),
)
_ANCHORED = {"secret_assignment", "secret_json_field"}  # matched at each secret word's occurrence


@dataclass(frozen=True)
class Redactor:
    """Applies RULES, then the user's own {name: pattern} (config.toml `[redaction] patterns`)."""

    extra: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        rules = [*RULES, *(Rule(name, p, ()) for name, p in (self.extra or {}).items())]
        compiled = []
        for rule in rules:
            flags = re.DOTALL | (re.IGNORECASE if rule.ignore_case else 0)
            try:
                compiled.append((rule, re.compile(rule.pattern, flags)))
            except re.error as e:
                raise ValueError(
                    f"redaction pattern {rule.name!r} is not a valid regex: {e}"
                ) from e
        object.__setattr__(self, "_compiled", tuple(compiled))
        # (trigger, indices of the rules it wakes), each trigger once: one comprehension tests them
        # all (a per-rule any() over a generator cost more than the substring tests themselves).
        wakes: dict[str, list[int]] = {}
        for i, (rule, _) in enumerate(compiled):
            for t in rule.triggers:
                wakes.setdefault(t, []).append(i)
        triggers = tuple((t, tuple(indices)) for t, indices in wakes.items())
        always = frozenset(i for i, (rule, _) in enumerate(compiled) if not rule.triggers)
        object.__setattr__(self, "_triggers", triggers)
        object.__setattr__(self, "_always", always)
        # One scan by a regex shaped as a trie of the triggers (a character or two tried per
        # position) finds where triggers start, the longest one at each place; the shorter ones
        # there are its prefixes. Most events hold no trigger at all, and for those that do
        # (a usage block's "..._tokens" wakes the secret-name rules) it replaced a substring
        # test per trigger and a find loop per secret word: 40% less time on a session's
        # records.
        object.__setattr__(
            self, "_any_trigger", re.compile(_trie_pattern([t for t, _ in triggers]))
        )
        # trigger -> (the rules it and the triggers it starts with wake, those triggers)
        prefixed = {}
        for t, _ in triggers:
            within = frozenset(u for u, _ in triggers if t.startswith(u))
            prefixed[t] = (
                frozenset(i for u, rules in triggers if u in within for i in rules),
                within,
            )
        object.__setattr__(self, "_prefixed", prefixed)

    def redact(self, text: str) -> tuple[str, int]:
        """(text with every secret replaced by a marker, number of replacements)."""
        hits = 0
        lower = text.lower()
        found = self._found(lower)
        if not found and not self._always:  # type: ignore[attr-defined]
            return text, 0
        prefixed = self._prefixed  # type: ignore[attr-defined]
        due: set[int] = set()
        for _, word in found:
            due |= prefixed[word][0]
        # Where the secret words occur, from the scan for both anchored rules (they share their
        # words), found again only once a replacement changes the text.
        starts: dict[tuple[str, ...], list[int]] = {}
        for rule, _ in self._compiled:  # type: ignore[attr-defined]
            if rule.name in _ANCHORED and rule.triggers not in starts:
                words = frozenset(rule.triggers)
                starts[rule.triggers] = [at for at, w in found if prefixed[w][1] & words]
        # Positions in `lower` are positions in `text` only when lowering kept the length
        # ("İ".lower() is two characters): else the anchored rules search the whole text.
        aligned = len(lower) == len(text)
        for index, (rule, regex) in enumerate(self._compiled):  # type: ignore[attr-defined]
            if index not in due and index not in self._always:  # type: ignore[attr-defined]
                continue
            if rule.name in _ANCHORED and aligned:
                positions = starts.get(rule.triggers)
                if positions is None:
                    positions = starts[rule.triggers] = _starts(lower, rule.triggers)
                text, n = _redact_anchored(text, positions, rule, regex)
            else:
                text, n = _redact_search(text, rule, regex)
            if n:
                hits += n
                lower = text.lower()
                aligned = len(lower) == len(text)
                starts.clear()
        return text, hits

    def _found(self, lower: str) -> list[tuple[int, str]]:
        """(position, longest trigger starting there) for every place a trigger starts."""
        search = self._any_trigger.search  # type: ignore[attr-defined]
        found = []
        match = search(lower)
        while match is not None:
            at = match.start()
            found.append((at, match.group()))
            match = search(lower, at + 1)  # a trigger may start inside this one
        return found


def _trie_pattern(words: list[str]) -> str:
    """A regex matching wherever one of `words` starts (for "ab", "abc", "b": `(?:ab(?:c)?|b)`).
    Matches nothing when there are no words."""
    if not words:
        return r"(?!)"
    trie: dict[str, dict] = {}  # type: ignore[type-arg]
    for word in words:
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}  # a word ends here

    def emit(node: dict[str, dict]) -> str:  # type: ignore[type-arg]
        branches = [re.escape(ch) + emit(child) for ch, child in sorted(node.items()) if ch]
        if not branches:
            return ""
        body = "(?:" + "|".join(branches) + ")"
        return body + "?" if "" in node else body

    return emit(trie)


def _replacement(match: re.Match[str], rule: Rule) -> str | None:
    """The text to put in place of the match, or None to leave it (already redacted)."""
    marker = f"{MARKER}{rule.name}]"
    if rule.group == 0:
        return marker
    if match.group(rule.group).startswith(MARKER):
        return None
    whole, start = match.group(0), match.start(0)
    a, b = match.start(rule.group) - start, match.end(rule.group) - start
    return whole[:a] + marker + whole[b:]


def _redact_search(text: str, rule: Rule, regex: re.Pattern[str]) -> tuple[str, int]:
    hits = 0

    def replace(match: re.Match[str]) -> str:
        nonlocal hits
        new = _replacement(match, rule)
        if new is None:
            return match.group(0)
        hits += 1
        return new

    return regex.sub(replace, text), hits


def _starts(lower: str, words: tuple[str, ...]) -> list[int]:
    return sorted({i for w in words for i in _occurrences(lower, w)})


def _redact_anchored(
    text: str, starts: list[int], rule: Rule, regex: re.Pattern[str]
) -> tuple[str, int]:
    pieces, last, hits = [], 0, 0
    for start in starts:
        if start < last:
            continue  # inside the previous match
        match = regex.match(text, start)
        if match is None:
            continue
        new = _replacement(match, rule)
        if new is None:
            continue
        pieces += [text[last:start], new]
        last = match.end()
        hits += 1
    return ("".join(pieces) + text[last:], hits) if hits else (text, 0)


def _occurrences(text: str, word: str) -> list[int]:
    found, i = [], text.find(word)
    while i >= 0:
        found.append(i)
        i = text.find(word, i + 1)
    return found


def count_markers(value: object) -> int:
    """Redaction markers in a row value (how many hits a stored row carries)."""
    return value.count(MARKER) if isinstance(value, str) else 0
