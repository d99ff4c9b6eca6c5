"""Which rankings moved between two published boards (e.g. a committed one and a re-run):

    python tools/compare_boards.py OLD_FOLDER NEW_FOLDER

Per dataset x detector x family, the Borda order of the explainers (`ranks.csv`; top three shown, old -> new),
and per headline column the explainers tied at the top (`neighbours.csv`: the leader and each next neighbour
until the first pair the paired test separates; `-` left the group, `+` joined). Markdown on stdout."""
import sys
from pathlib import Path

import pandas as pd


def short(name: str) -> str:
    return name.replace("synthetic-", "")


def borda(folder: Path) -> dict[tuple, list[str]]:
    ranks = pd.read_csv(folder / "ranks.csv")
    return {k: list(g.sort_values(["borda_rank", "explainer"]).explainer)
            for k, g in ranks.groupby(["dataset", "detector", "family"])}


def top_groups(folder: Path) -> dict[tuple, set[str]]:
    out = {}
    for k, g in pd.read_csv(folder / "neighbours.csv").groupby(["dataset", "detector", "metric"]):
        g = g.sort_values("position")
        group = {g["better"].iloc[0]}
        for _, row in g.iterrows():
            if str(row["distinguishable"]).lower() in ("true", "1"):
                break
            group.add(row["worse"])
        out[k] = group
    return out


def main(old: Path, new: Path) -> None:
    a, b = borda(old), borda(new)
    moved = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    print(f"Borda orders that changed: {len(moved)} of {len(set(a) | set(b))} (top three, old -> new)")
    for k in moved:
        print(f"- {short('/'.join(k))}: {', '.join(a.get(k, ['-'])[:3])} -> {', '.join(b.get(k, ['-'])[:3])}")
    ta, tb = top_groups(old), top_groups(new)
    moved = [k for k in sorted(set(ta) | set(tb)) if ta.get(k) != tb.get(k)]
    print(f"\nTied-at-the-top groups that changed: {len(moved)} of {len(set(ta) | set(tb))} (- left, + joined)")
    for k in moved:
        x, y = ta.get(k, set()), tb.get(k, set())
        changes = [f"-{e}" for e in sorted(x - y)] + [f"+{e}" for e in sorted(y - x)]
        print(f"- {short('/'.join(k))}: " + " ".join(changes))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2]))
