"""The CLI's generic machinery, run as a user runs it (subprocesses, real pipes, a real
`pallet serve`): usage errors, help, tables in a pipe, logins without a password, tokens kept
out of the process list, shell completion, and server text that cannot drive the terminal."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import Servers
from tests.test_cli import PASSWORD

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One `pallet serve` for the tests that need a server; its URL."""
    running = Servers(tmp_path_factory.mktemp("machinery"))
    try:
        yield running.start("cli").url
    finally:
        running.close()


def run(*args: str, input: str = "", env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess:
    """The CLI with its standard input a pipe (never this terminal) and no COLUMNS."""
    base = {k: v for k, v in os.environ.items()
            if not k.startswith("PALLET_") and k != "COLUMNS"}
    return subprocess.run([sys.executable, "-m", "pallet.cli.main", *args],
                          env={**base, **(env or {})}, capture_output=True, text=True,
                          input=input, timeout=60)


def one_error_line(result: subprocess.CompletedProcess, code: int, *words: str) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


# -- no server needed ----------------------------------------------------------------------

@pytest.mark.parametrize("args, words", [
    (["repository", "list", "--bogus"], ["--bogus", "pallet repository list --help"]),
    (["repository", "create"], ["Missing argument", "pallet repository create --help"]),
    (["repository", "lst"], ["No such command", "'list'"]),
    (["--bogus", "status"], ["--bogus", "pallet --help"]),
    (["repository", "list", "--limit", "0"], ["--limit", "greater than"]),
])
def test_usage_errors_are_one_line_with_the_documented_exit_code(args, words):
    one_error_line(run(*args), 2, *words)
    users = (ROOT / "docs" / "users.md").read_text()
    assert re.search(r"usage error[^.]*exit code 2", users, re.I)


def test_help_shows_no_type_after_flags():
    for args in (["repository", "list"], ["remote", "create"], []):
        result = run(*args, "--help")
        assert result.returncode == 0, result.stderr
        assert "--json" in result.stdout or "--url" in result.stdout
        assert "<bool>" not in result.stdout, result.stdout


def in_bash(option: str, home: Path) -> subprocess.CompletedProcess:
    """`pallet OPTION` started by bash, which the completion options detect as the shell
    (the second command keeps bash from replacing itself with the first)."""
    return subprocess.run(["bash", "-c", f'"{sys.executable}" -m pallet.cli.main {option}; '
                           "exit $?"], env={**os.environ, "HOME": str(home)},
                          capture_output=True, text=True, timeout=60)


def test_shell_completion_is_offered_and_completes(tmp_path):
    script = in_bash("--show-completion", tmp_path)
    assert script.returncode == 0 and "_PALLET_COMPLETE" in script.stdout, script.stderr
    words = run(env={"_PALLET_COMPLETE": "complete_bash", "COMP_WORDS": "pallet repos",
                     "COMP_CWORD": "1"})
    assert "repository" in words.stdout.split(), (words.stdout, words.stderr)
    installed = in_bash("--install-completion", tmp_path)
    assert installed.returncode == 0, installed.stderr
    assert "_PALLET_COMPLETE" in "".join(p.read_text() for p in tmp_path.rglob("*")
                                         if p.is_file())


def test_a_table_in_a_pipe_keeps_each_row_on_one_line():
    code = ("from pallet.cli.output import table; "
            "table([{'name': 'web', 'description': 'x' * 150 + ' end'}], "
            "['name', 'description'])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={k: v for k, v in os.environ.items() if k != "COLUMNS"},
                            timeout=60)
    rows = [line for line in result.stdout.splitlines() if "web" in line]
    assert len(rows) == 1 and rows[0].rstrip().endswith("end"), result.stdout


def test_control_characters_in_printed_text_are_escaped():
    code = ("from pallet.cli.output import record, table, say; "
            "value = 'a\\x1b[2Jb\\x00c\\x07d\\x9be\\u202ef\\ng'; "
            "record({'description': value}); table([{'d': value}], ['d']); say(value)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "COLUMNS": "200"}, timeout=60)
    assert result.returncode == 0, result.stderr
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e]", result.stdout), \
        repr(result.stdout)
    assert result.stdout.count(r"a\x1b[2Jb\x00c\x07d\x9be\u202ef\ng") == 3, result.stdout


# -- against a server ----------------------------------------------------------------------

def login(server: str, **more: str) -> dict[str, str]:
    return {"PALLET_URL": server, "PALLET_USERNAME": "admin", "PALLET_PASSWORD": PASSWORD,
            **more}


def test_a_user_name_without_a_password_and_no_terminal(server):
    result = run("repository", "list", env={"PALLET_URL": server, "PALLET_USERNAME": "admin"})
    one_error_line(result, 1, "no password given", "PALLET_PASSWORD")


def test_a_token_from_standard_input_or_a_file(server, tmp_path):
    made = run("token", "create", "stdin-login", "--json", env=login(server))
    assert made.returncode == 0, made.stderr
    token = json.loads(made.stdout)["token"]
    whoami = run("--token-stdin", "user", "whoami", "--json", input=token + "\n",
                 env={"PALLET_URL": server})
    assert whoami.returncode == 0, whoami.stderr
    assert json.loads(whoami.stdout)["username"] == "admin"
    (tmp_path / "token").write_text(token + "\n")
    from_file = run("--token-file", str(tmp_path / "token"), "user", "whoami", "--json",
                    env={"PALLET_URL": server})
    assert json.loads(from_file.stdout)["username"] == "admin", from_file.stderr
    one_error_line(run("--token-file", str(tmp_path / "missing"), "user", "whoami",
                       env={"PALLET_URL": server}), 1, "missing")
    one_error_line(run("--token", token, "--token-stdin", "user", "whoami", input=token,
                       env={"PALLET_URL": server}), 2, "--token")


def test_peer_tokens_from_standard_input_or_a_file(server, tmp_path):
    up = run("upstream", "create", "up-stdin", "--url", "http://127.0.0.1:9",
             "--repository", "web", "--token-stdin", "--json", input="secret-token\n",
             env=login(server))
    assert up.returncode == 0, up.stderr
    assert json.loads(up.stdout)["has_token"] is True
    (tmp_path / "peer-token").write_text("another-token\n")
    down = run("downstream", "create", "down-file", "--url", "http://127.0.0.1:9",
               "--importer", "im", "--repository", "web", "--token-file",
               str(tmp_path / "peer-token"), "--json", env=login(server))
    assert down.returncode == 0, down.stderr
    assert json.loads(down.stdout)["has_token"] is True
    both = run("upstream", "update", "up-stdin", "--token-stdin", "--password-stdin",
               input="a\nb\n", env=login(server))
    one_error_line(both, 2, "standard input")


def test_server_text_cannot_drive_the_terminal(server):
    evil = "a\x1b]0;owned\x07b\x1b[2Jc\u202ed"
    created = run("repository", "create", "escapes", "--description", evil,
                  env=login(server))
    assert created.returncode == 0, created.stderr
    for args in (["repository", "show", "escapes"], ["repository", "list"]):
        shown = run(*args, env=login(server))
        assert shown.returncode == 0, shown.stderr
        assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e]", shown.stdout), \
            repr(shown.stdout)
        assert r"a\x1b]0;owned\x07b\x1b[2Jc\u202ed" in shown.stdout, shown.stdout
    missing = run("repository", "show", "no\x1b[31mpe", env=login(server))
    line = one_error_line(missing, 1)
    assert "\x1b" not in line
