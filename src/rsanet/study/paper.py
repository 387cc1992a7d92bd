"""The paper's ablations (Kim et al. 2021, Table 4; Something-Something V1, TSN-ResNet50,
top-1 %), for the report to compare orderings with.

Table 4a inserts a single RSA layer into stage 4; Tables 4b-4d use the full RSANet-R50.
``dk`` stands for C^Q, the query channels per head (the paper's default for D and G).
"""

from __future__ import annotations

#: Table 4a: (kernel, context) -> top-1
TABLE_4A: dict[tuple[str, str], float] = {
    ("basic", "basic"): 44.8,
    ("relational", "basic"): 45.4,
    ("basic+relational", "basic"): 45.7,
    ("basic", "relational"): 46.2,
    ("relational", "relational"): 46.5,
    ("basic+relational", "relational"): 46.7,
    ("basic", "basic+relational"): 46.5,
    ("relational", "basic+relational"): 46.8,
    ("basic+relational", "basic+relational"): 47.0,
}

#: Tables 4b (latent dimension D), 4c (kernel size M), 4d (groups G): value -> top-1.
#: Without the decomposition (no D) the network ran out of memory.
ABLATIONS: dict[str, dict[str, float]] = {
    "4b": {"8": 50.1, "16": 51.3, "32": 50.9, "dk/2": 51.1, "dk": 51.5},
    "4c": {
        "3x3x3": 49.4,
        "3x5x5": 50.5,
        "3x7x7": 50.7,
        "3x9x9": 51.1,
        "5x7x7": 51.5,
        "5x9x9": 51.2,
    },
    "4d": {"1": 50.4, "2": 50.9, "4": 51.2, "8": 51.2, "dk": 51.5},
}

#: the paper's wording of the forms, for tables
FORM_NAMES = {"basic": "V", "relational": "R", "basic+relational": "V+R"}
