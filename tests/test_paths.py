import pytest

from pallet.errors import Invalid
from pallet.paths import validate_relative_path


@pytest.mark.parametrize("path", ["a", "a/b.txt", "deep/er/path-1.2_x", "ünïcode/файл"])
def test_accepts_plain_relative_paths(path):
    assert validate_relative_path(path) == path


@pytest.mark.parametrize("path, reason", [
    ("", "empty"), ("/etc/passwd", "relative"), ("a/../../b", "'..'"), ("..", "'..'"),
    ("a//b", "empty"), ("./a", "'.'"), ("a/", "empty"), ("a\x00b", "control"),
    ("a\nb", "control"), ("a\x85b", "control"), ("a\ud800b", "control"),
    ("a\\b", "relative"), ("x" * 1025, "longer"), ("a/" + "y" * 256, "segment"),
])
def test_refuses_unsafe_paths(path, reason):
    with pytest.raises(Invalid) as caught:
        validate_relative_path(path)
    assert reason in caught.value.message
