"""Container names: validation and docker-style random names ("adjective_surname").

The word lists are pyrt's own: adjectives of temperament and weather, and the surnames of
people who shaped computing, mathematics and the sciences.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable

from pyrt.errors import InvalidArgument

NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")

ADJECTIVES: tuple[str, ...] = (
    "agile", "airy", "amber", "ardent", "balmy", "bold", "brave", "breezy", "bright",
    "brisk", "calm", "candid", "cheerful", "clever", "cloudy", "cosmic", "crisp", "curious",
    "dapper", "daring", "dazzling", "eager", "earnest", "elated", "fearless", "festive",
    "fluent", "frosty", "gallant", "gentle", "gleaming", "glowing", "graceful", "hardy",
    "hazy", "humble", "jolly", "jovial", "keen", "kind", "lively", "lucid", "mellow",
    "merry", "misty", "modest", "nimble", "noble", "patient", "placid", "plucky", "polite",
    "proud", "quiet", "quirky", "radiant", "rainy", "restless", "rustic", "serene", "sharp",
    "shy", "sincere", "snowy", "spirited", "steady", "stormy", "sturdy", "sunny", "swift",
    "tender", "thrifty", "tidy", "tranquil", "upbeat", "valiant", "vivid", "wary", "windy",
    "witty", "zealous", "zesty",
)  # fmt: skip

SURNAMES: tuple[str, ...] = (
    "agnesi", "aiken", "allen", "babbage", "backus", "banach", "bardeen", "bartik", "bohr",
    "boole", "borg", "brattain", "cantor", "cerf", "chebyshev", "church", "codd", "conway",
    "curie", "dijkstra", "easley", "engelbart", "erdos", "euler", "faraday", "fermat",
    "feynman", "floyd", "fourier", "franklin", "galois", "gauss", "germain", "goldberg",
    "goldwasser", "hamilton", "hamming", "hawking", "hilbert", "hoare", "hodgkin", "hopper",
    "huffman", "hypatia", "jacobi", "johnson", "kahan", "kepler", "kilby", "knuth",
    "kolmogorov", "lamarr", "lamport", "laplace", "leibniz", "liskov", "lovelace", "markov",
    "maxwell", "mcnulty", "meitner", "minsky", "mirzakhani", "moore", "napier", "neumann",
    "newton", "noether", "noyce", "pascal", "perlman", "poincare", "ramanujan", "ritchie",
    "riemann", "shannon", "sammet", "somerville", "stallman", "tarjan", "tesla", "thompson",
    "torvalds", "turing", "vaughan", "wilkes", "wirth", "wozniak", "yonath", "zuse",
)  # fmt: skip


def validate_name(name: str) -> str:
    """A user-given name without its leading slash; InvalidArgument when it is not valid."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidArgument(
            f"Invalid container name ({name!r}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed "
            "(at least two characters)"
        )
    return name.lstrip("/")


def random_name(retry: int = 0) -> str:
    """"adjective_surname"; from the second retry on a digit is appended, as docker does."""
    name = f"{secrets.choice(ADJECTIVES)}_{secrets.choice(SURNAMES)}"
    if retry > 0:
        name += str(secrets.randbelow(10))
    return name


def generate_unique(taken: Callable[[str], bool], attempts: int = 100) -> str:
    """A random name for which taken(name) is False."""
    for i in range(attempts):
        name = random_name(i // 10)
        if not taken(name):
            return name
    raise InvalidArgument(f"no free random container name after {attempts} attempts")


__all__ = ["ADJECTIVES", "NAME_RE", "SURNAMES", "generate_unique", "random_name",
           "validate_name"]
