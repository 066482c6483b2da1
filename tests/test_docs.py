"""The docs stay true to the code: every relative link resolves (anchors included), every
`ofa-coord`/`ofa-agent` line in a ```sh block names a real command and only options it has,
and every `make` target the docs name exists. The command lines are checked against the
click command tree itself, so a renamed flag fails here and not in a newcomer's shell."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from agent.cli import main as agent_main
from coordinator.cli.app import main as coord_main

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PROGRAMS = {"ofa-coord": coord_main, "ofa-agent": agent_main}
MODULES = {"coordinator": "ofa-coord", "agent": "ofa-agent"}  # `python -m X`, `torchrun -m X`
PREFIXES = {"sudo", "time", "exec", "nohup", "env"}
SEPARATORS = {"&&", "||", ";", "&"}
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.M)
REDIRECT = re.compile(r"^\d*(>>?|<)(&\d+)?$")


def _doc_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


def code_blocks(text: str, languages: tuple[str, ...]) -> list[str]:
    return [body for lang, body in FENCE.findall(text) if lang in languages]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lowercased, punctuation removed,
    spaces turned into hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "").lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """The anchors of a page's headings; a repeated heading gets -1, -2, ... as on GitHub."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for heading in HEADING.findall(FENCE.sub("", text)):
        base = slug(heading)
        count = seen.get(base, 0)
        found.add(f"{base}-{count}" if count else base)
        seen[base] = count + 1
    return found


def broken_links(path: Path) -> list[str]:
    """Each relative link of a Markdown file whose file or #anchor does not exist."""
    text = path.read_text()
    problems = []
    for target in LINK.findall(FENCE.sub("", text)):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            problems.append(f"{path.name}: link to missing file {target}")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked.read_text()):
            problems.append(f"{path.name}: link to missing heading {target}")
    return problems


def shell_lines(block: str) -> list[str]:
    """Logical lines of a shell block: continuations joined."""
    return block.replace("\\\n", " ").splitlines()


def segments(line: str) -> list[list[str]]:
    """The simple commands of one shell line: comments dropped, split at `&&`, `;`, `&`
    and at a pipe `|` (one followed by an option is a synopsis's `a | b`, kept), with
    redirections removed."""
    lexer = shlex.shlex(line, posix=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        tokens = list(lexer)
    except ValueError:  # unbalanced quotes: not a command line
        return []
    result: list[list[str]] = [[]]
    skip_next = False
    for i, token in enumerate(tokens):
        if skip_next:
            skip_next = False
        elif token in SEPARATORS or (
            token == "|" and not _optionish(tokens[i + 1] if i + 1 < len(tokens) else "")
        ):
            result.append([])
        elif REDIRECT.match(token):
            skip_next = not token.endswith(("&1", "&2"))
        else:
            result[-1].append(token)
    return [segment for segment in result if segment]


def _optionish(token: str) -> bool:
    return token.lstrip("[(").startswith("-")


def _command_start(segment: list[str]) -> tuple[str, list[str]] | None:
    """The program a segment runs (ofa-coord or ofa-agent) and the words after it."""
    words = list(segment)
    while words and (words[0] in PREFIXES or re.fullmatch(r"[A-Za-z_]\w*=.*", words[0])):
        words.pop(0)
    if words and Path(words[0]).name in PROGRAMS:
        return Path(words[0]).name, words[1:]
    for i, word in enumerate(words[:-1]):
        if word == "-m" and words[i + 1] in MODULES:
            return MODULES[words[i + 1]], words[i + 2 :]
    return None


def _options(command: click.Command, ctx: click.Context) -> set[str]:
    return {
        name
        for param in command.get_params(ctx)
        if isinstance(param, click.Option)
        for name in param.opts + param.secondary_opts
    }


def command_problems(line: str) -> list[str]:
    """What is wrong with one documented command line: an unknown (sub)command or an option
    the command does not have. A synopsis's `a|b` must hold for each alternative."""
    problems = []
    for segment in segments(line):
        start = _command_start(segment)
        if start is None:
            continue
        program, words = start
        root = PROGRAMS[program]
        current = [(program, root, click.Context(root, info_name=program, **root.context_settings))]
        for word in words:
            token = word.strip("[]()")
            if token in {"", "...", "|"} or re.fullmatch(r"-\d.*", token):
                continue
            if token.startswith("-"):
                option = token.split("=", 1)[0]
                for path, command, ctx in current:
                    if option not in _options(command, ctx):
                        problems.append(f"{path}: no option {option}")
                continue
            groups = [entry for entry in current if isinstance(entry[1], click.Group)]
            if not groups or token.startswith("$"):
                if token.startswith("$"):
                    break  # a subcommand chosen at run time: nothing more to check
                continue  # an argument or an option's value
            following = []
            for path, group, ctx in groups:
                for name in token.split("|"):
                    sub = group.get_command(ctx, name)  # type: ignore[attr-defined]
                    if sub is None:
                        problems.append(f"{path}: no command {name!r}")
                    else:
                        following.append((f"{path} {name}", sub, click.Context(sub, ctx, name)))
            if not following:
                break
            current = following
    return problems


def documented_command_lines() -> list[tuple[str, str]]:
    return [
        (_doc_id(path), line)
        for path in DOCS
        for block in code_blocks(path.read_text(), ("sh", "bash", "shell", "console"))
        for line in shell_lines(block)
        if any(_command_start(segment) for segment in segments(line))
    ]


def make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return {
        target
        for match in re.finditer(r"^([\w.-]+(?:[ \t]+[\w.-]+)*)[ \t]*:(?!=)", text, re.M)
        for target in match.group(1).split()
    }


def named_make_targets(text: str) -> set[str]:
    """Targets of every `make ...` in code: fenced blocks and inline code spans."""
    code = [
        line
        for block in code_blocks(text, ("sh", "bash", "shell", ""))
        for line in shell_lines(block)
    ]
    code += re.findall(r"`([^`\n]+)`", FENCE.sub("", text))
    named = set()
    for line in code:
        for segment in segments(line):
            if segment[0] == "make":
                named |= {
                    word for word in segment[1:] if "=" not in word and not word.startswith("-")
                }
    return named


def test_every_relative_link_resolves() -> None:
    assert [problem for path in DOCS for problem in broken_links(path)] == []


def test_link_checker_reports_a_missing_file_and_a_missing_heading(tmp_path: Path) -> None:
    (tmp_path / "guide.md").write_text("# A guide\n\n## Set `up` the fleet\n")
    page = tmp_path / "README.md"
    page.write_text(
        "[ok](guide.md#set-up-the-fleet) [gone](missing.md) [typo](guide.md#setup)\n"
        "```sh\n[not a link](nowhere.md)\n```\n"
    )
    assert broken_links(page) == [
        "README.md: link to missing file missing.md",
        "README.md: link to missing heading guide.md#setup",
    ]


def test_documented_commands_exist_with_their_options() -> None:
    lines = documented_command_lines()
    assert len(lines) > 50, "the checker no longer finds the docs' command lines"
    assert [f"{doc}: {problem}" for doc, line in lines for problem in command_problems(line)] == []


@pytest.mark.parametrize(
    ("line", "problems"),
    [
        (
            "ofa-coord lut export --db fleet.db --devcie pixel7 --out luts",
            ["ofa-coord lut export: no option --devcie"],
        ),
        ("ofa-coord lut exprot --db fleet.db", ["ofa-coord lut: no command 'exprot'"]),
        (
            "sudo /opt/ofa-agent/bin/ofa-agent run --tls-ca=ca.pem --no-pinning -v  # a comment",
            ["ofa-agent run: no option --no-pinning"],
        ),
        (
            "ofa-coord token list|revoke --db fleet.db [--name NAME]",
            ["ofa-coord token list: no option --name"],
        ),
        (
            "torchrun --nproc_per_node 8 -m coordinator train chian x.json",
            ["ofa-coord train: no command 'chian'"],
        ),
    ],
)
def test_checker_reports_a_wrong_command_or_flag(line: str, problems: list[str]) -> None:
    assert command_problems(line) == problems


def test_checker_accepts_continuations_pipes_comments_and_variables() -> None:
    block = (
        'ofa-coord campaign create --db "$DB" --name x --label pi \\\n'
        "    --workload lut --start   # start at once\n"
        "ofa-coord sample -n 3 --seed=0 | head -1 > subnets.jsonl && ofa-agent info -h\n"
        "ofa-coord token create --db f --name n (--label L [--label L2 ...] | --any-label)\n"
        "journalctl -u ofa-agent -f\n"
    )
    lines = shell_lines(block)
    assert len(lines) == 4
    assert [problem for line in lines for problem in command_problems(line)] == []
    assert command_problems("ofa-coord sample -n 3 | head && ofa-agent info --jsn") == [
        "ofa-agent info: no option --jsn"
    ]


def test_make_targets_named_in_the_docs_exist() -> None:
    targets = make_targets()
    assert {"demo", "test", "test-arm"} <= named_make_targets((ROOT / "README.md").read_text())
    for path in DOCS:
        missing = named_make_targets(path.read_text()) - targets
        assert not missing, f"{_doc_id(path)} names make targets the Makefile lacks: {missing}"


def test_make_target_finder_sees_code_only() -> None:
    text = "To make the tables, run `make demo DEMO_ARGS=x` or:\n```sh\nmake tset  # typo\n```\n"
    assert named_make_targets(text) == {"demo", "tset"}
