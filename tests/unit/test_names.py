from __future__ import annotations

import pytest

from pyrt.containers.names import (
    ADJECTIVES,
    SURNAMES,
    generate_unique,
    random_name,
    validate_name,
)
from pyrt.errors import InvalidArgument


def test_random_names_have_docker_shape() -> None:
    for _ in range(200):
        adj, _, who = random_name().partition("_")
        assert adj in ADJECTIVES and who in SURNAMES
    assert random_name(retry=1)[-1].isdigit()


def test_word_lists_are_clean() -> None:
    for word in ADJECTIVES + SURNAMES:
        assert word.isalpha() and word.islower()
    assert len(set(ADJECTIVES)) == len(ADJECTIVES) and len(set(SURNAMES)) == len(SURNAMES)


@pytest.mark.parametrize("name", ["web", "/web", "a1", "my.app-1_x", "0abc"])
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name.lstrip("/")


@pytest.mark.parametrize("name", ["", "a", "/", "-x", "_x", ".x", "a b", "a/b", "ümlaut", "x!"])
def test_invalid_names(name: str) -> None:
    with pytest.raises(InvalidArgument, match="Invalid container name"):
        validate_name(name)


def test_generate_unique_skips_taken_names() -> None:
    taken = set()
    for _ in range(50):
        n = generate_unique(lambda x: x in taken)
        assert n not in taken
        taken.add(n)
    with pytest.raises(InvalidArgument, match="no free random container name"):
        generate_unique(lambda x: True, attempts=5)
