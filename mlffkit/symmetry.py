"""Permutational symmetries of a molecule, found from its geometries (as sGDML does).

Swapping two like atoms (two hydrogens of a methyl group) leaves the energy
unchanged, but it reorders a descriptor such as the inverse distances. sGDML sums
its kernel over a group of such permutations. This module finds that group:

1. **Candidates**: the automorphisms of the molecular graph (atoms coloured by
   element, bonds from covalent radii, kept only if present in every sampled frame)
   — the permutations that could be symmetries at all. They are enumerated by
   colour refinement and backtracking.
2. **Realised**: a candidate is kept only if the data show it: for pairs of frames,
   the candidate that best maps one onto the other (in descriptor space, which is
   blind to rotation and reflection) is taken along the edges of a minimum spanning
   tree, like sGDML's permutation synchronisation, if it brings them markedly closer
   than no permutation does. For ethanol this keeps the 6
   permutations of the methyl rotor combined with reflections, not all 12 graph
   automorphisms: relabellings that no motion of the molecule reaches only cost time.
3. **Closure**: the kept permutations are composed until they form a group.

A permutation ``p`` maps a frame to ``positions[p]``.

>>> perms = find_permutations(ds.positions, ds.numbers)     # doctest: +SKIP
>>> [format_permutation(p, ds.numbers) for p in perms]       # doctest: +SKIP
"""

from __future__ import annotations

import warnings
from collections import deque

import numpy as np
from ase.data import chemical_symbols, covalent_radii
from scipy.sparse.csgraph import minimum_spanning_tree

#: bonded when the distance is below this factor times the sum of covalent radii
BOND_SCALE = 1.25


# ----------------------------------------------------------------------------- graphs
def bond_graph(numbers, positions, scale: float = BOND_SCALE) -> np.ndarray:
    """Adjacency matrix of the bonds present in every given frame.

    Parameters
    ----------
    numbers : array_like of int, shape (n_atoms,)
    positions : array_like, shape (n_atoms, 3) or (n_frames, n_atoms, 3)
        Positions in Å.
    scale : float
        Atoms are bonded when closer than ``scale`` × the sum of their covalent
        radii (:data:`ase.data.covalent_radii`).

    Returns
    -------
    numpy.ndarray of bool, shape (n_atoms, n_atoms)
        Symmetric, False on the diagonal.
    """
    numbers = np.asarray(numbers)
    pos = np.asarray(positions, dtype=np.float64)
    if pos.ndim == 2:
        pos = pos[None]
    radii = covalent_radii[numbers]
    cutoff = scale * (radii[:, None] + radii[None, :])
    dist = np.linalg.norm(pos[:, :, None, :] - pos[:, None, :, :], axis=-1)
    bonded = np.all(dist < cutoff, axis=0)
    np.fill_diagonal(bonded, False)
    return bonded


def refine_colors(adjacency: np.ndarray, colors) -> np.ndarray:
    """Colour refinement (1-dimensional Weisfeiler–Leman) of a coloured graph.

    Atoms keep equal colours only while they have equal colours and equal
    multisets of neighbour colours; automorphisms map atoms onto atoms of the
    same refined colour.

    Returns
    -------
    numpy.ndarray of int, shape (n_atoms,)
        Refined colours, numbered 0, 1, ...
    """
    adj = np.asarray(adjacency, dtype=bool)
    neighbours = [np.flatnonzero(row) for row in adj]
    _, current = np.unique(np.asarray(colors), return_inverse=True)
    while True:
        signatures = [
            (int(current[i]), tuple(sorted(current[neighbours[i]].tolist())))
            for i in range(len(adj))
        ]
        keys = {s: k for k, s in enumerate(sorted(set(signatures)))}
        refined = np.array([keys[s] for s in signatures], dtype=np.int64)
        if len(keys) == len(np.unique(current)):
            return refined
        current = refined


def _search_order(neighbours: list[set], colors: np.ndarray) -> tuple[list[int], list[int]]:
    """Atoms in breadth-first order per component, each with an earlier neighbour (or -1).

    Components start at an atom of the rarest colour, so that the search branches
    as little as possible; every later atom can only map onto a neighbour of the
    image of its anchor.
    """
    n = len(neighbours)
    counts = np.bincount(colors)
    seen = np.zeros(n, dtype=bool)
    order, anchor = [], []
    for start in sorted(range(n), key=lambda i: (counts[colors[i]], i)):
        if seen[start]:
            continue
        seen[start] = True
        queue = deque([(start, -1)])
        while queue:
            atom, parent = queue.popleft()
            order.append(atom)
            anchor.append(parent)
            for nb in sorted(neighbours[atom]):
                if not seen[nb]:
                    seen[nb] = True
                    queue.append((nb, atom))
    return order, anchor


def graph_automorphisms(adjacency, colors, max_count: int = 20_000) -> np.ndarray:
    """All colour-preserving automorphisms of a graph.

    Parameters
    ----------
    adjacency : array_like of bool, shape (n_atoms, n_atoms)
    colors : array_like, shape (n_atoms,)
        Atom colours (atomic numbers); automorphisms map each atom onto one of
        the same colour.
    max_count : int
        Stop with an error beyond this many (a safeguard for graphs such as long
        chains of methyl groups, whose groups grow exponentially).

    Returns
    -------
    numpy.ndarray of int, shape (n_automorphisms, n_atoms)
        The identity first; rows are permutations ``p`` with
        ``adjacency[p][:, p] == adjacency`` and ``colors[p] == colors``.

    Raises
    ------
    ValueError
        If there are more than ``max_count``.
    """
    adj = np.asarray(adjacency, dtype=bool)
    n = len(adj)
    colors = refine_colors(adj, colors)
    neighbours = [set(np.flatnonzero(row).tolist()) for row in adj]
    order, anchor = _search_order(neighbours, colors)
    position = np.empty(n, dtype=np.int64)
    position[order] = np.arange(n)
    # neighbours of each atom that come earlier in the search order
    earlier = [[j for j in neighbours[i] if position[j] < position[i]] for i in order]
    members = {c: np.flatnonzero(colors == c).tolist() for c in np.unique(colors)}

    image = np.full(n, -1, dtype=np.int64)
    used = np.zeros(n, dtype=bool)
    assigned_neighbours = np.zeros(n, dtype=np.int64)  # of each target atom, among used targets
    found = []

    def candidates(depth: int) -> list[int]:
        atom = order[depth]
        pool = (
            sorted(neighbours[image[anchor[depth]]])
            if anchor[depth] >= 0
            else members[colors[atom]]
        )
        out = []
        for t in pool:
            if used[t] or colors[t] != colors[atom]:
                continue
            # bonds to atoms placed so far must map onto bonds, and no others may appear
            if assigned_neighbours[t] != len(earlier[depth]):
                continue
            if all(image[j] in neighbours[t] for j in earlier[depth]):
                out.append(t)
        return out

    def place(depth: int, t: int, on: bool) -> None:
        atom = order[depth]
        image[atom] = t if on else -1
        used[t] = on
        for nb in neighbours[t]:
            assigned_neighbours[nb] += 1 if on else -1

    # Depth-first search without recursion: stack[d] holds the untried targets of the
    # atom at depth d, chosen[d] the target it is currently mapped to.
    stack = [candidates(0)]
    chosen: list[int] = []
    while stack:
        depth = len(stack) - 1
        if len(chosen) > depth:  # back at this depth: undo its last choice first
            place(depth, chosen.pop(), on=False)
        if not stack[-1]:
            stack.pop()
            continue
        t = stack[-1].pop(0)
        place(depth, t, on=True)
        chosen.append(t)
        if depth + 1 == n:
            found.append(image.copy())
            if len(found) > max_count:
                raise ValueError(
                    f"the molecular graph has more than {max_count} automorphisms; pass the "
                    "permutations to use explicitly, or switch symmetries off (permutations=None)"
                )
            continue
        stack.append(candidates(depth + 1))
    perms = np.array(found, dtype=np.int64)
    identity = np.flatnonzero((perms == np.arange(n)).all(axis=1))
    return np.concatenate([perms[identity], np.delete(perms, identity, axis=0)])


# ----------------------------------------------------------------------------- groups
def close_group(perms, max_size: int | None = None) -> np.ndarray | None:
    """The group generated by ``perms``: compose until nothing new appears.

    Parameters
    ----------
    perms : array_like of int, shape (n_perms, n_atoms)
    max_size : int, optional
        Give up (return None) once the group would be larger.

    Returns
    -------
    numpy.ndarray of int, shape (group_size, n_atoms) or None
        The identity first, the rest in the order found.
    """
    gens = [tuple(int(v) for v in p) for p in np.atleast_2d(np.asarray(perms, dtype=np.int64))]
    n = len(gens[0])
    identity = tuple(range(n))
    group = {identity: None}
    queue = deque([identity])
    while queue:
        g = queue.popleft()
        for s in gens:
            h = tuple(g[i] for i in s)  # positions[g][s] == positions[g[s]]
            if h not in group:
                group[h] = None
                if max_size is not None and len(group) > max_size:
                    return None
                queue.append(h)
    return np.array(list(group), dtype=np.int64)


def resolve_permutations(spec, numbers, find_auto, auto_meaning: str = "found from the data"):
    """The permutation group a model's ``permutations`` parameter asks for.

    Parameters
    ----------
    spec : "auto", None, "none" or array_like of int (n_perms, n_atoms)
        ``"auto"``: ``find_auto()``; None or ``"none"``: the identity alone; an array:
        these permutations (or generators of a group), checked by :func:`check_permutations`.
    numbers : array_like of int, shape (n_atoms,)
        Atomic numbers.
    find_auto : callable
        ``() -> (n_perms, n_atoms)`` the model's own symmetry search.
    auto_meaning : str
        What ``"auto"`` means for this model, for the error message.

    Returns
    -------
    numpy.ndarray of int, shape (n_perms, n_atoms)
    """
    if spec is None or (isinstance(spec, str) and spec == "none"):
        return np.arange(len(numbers))[None]
    if isinstance(spec, str):
        if spec != "auto":
            raise ValueError(
                f"permutations={spec!r} is not understood; use 'auto' ({auto_meaning}), None "
                "(or 'none'), or an integer array of shape (n_perms, n_atoms)"
            )
        return find_auto()
    return check_permutations(spec, numbers)


def check_permutations(perms, numbers) -> np.ndarray:
    """Validate user-given permutations and close them into a group.

    Parameters
    ----------
    perms : array_like of int, shape (n_perms, n_atoms)
        Permutations (or generators of the group); the identity may be omitted.
    numbers : array_like of int, shape (n_atoms,)

    Returns
    -------
    numpy.ndarray of int, shape (group_size, n_atoms)
        The identity first.

    Raises
    ------
    ValueError
        If a row is not a permutation of the atoms or swaps atoms of different elements.
    """
    numbers = np.asarray(numbers)
    arr = np.atleast_2d(np.asarray(perms))
    n = len(numbers)
    if arr.ndim != 2 or arr.shape[1] != n or arr.dtype.kind not in "iu":
        raise ValueError(
            f"permutations must be integers of shape (n_perms, {n}), one row per permutation "
            f"of the {n} atoms; got shape {np.shape(perms)}"
        )
    for k, p in enumerate(arr):
        if not np.array_equal(np.sort(p), np.arange(n)):
            raise ValueError(
                f"permutation {k} is not a permutation of the atoms 0..{n - 1}: {p.tolist()}"
            )
        if not np.array_equal(numbers[p], numbers):
            bad = int(np.flatnonzero(numbers[p] != numbers)[0])
            raise ValueError(
                f"permutation {k} puts atom {p[bad]} ({chemical_symbols[numbers[p[bad]]]}) in the place "
                f"of atom {bad} ({chemical_symbols[numbers[bad]]}); only like atoms may be swapped"
            )
    return close_group(arr)


def cycles(perm) -> list[list[int]]:
    """The cycles of length > 1 of a permutation, e.g. ``[[5, 6, 7]]`` for a methyl rotation."""
    perm = np.asarray(perm)
    seen = np.zeros(len(perm), dtype=bool)
    out = []
    for start in range(len(perm)):
        if seen[start]:
            continue
        cycle, i = [], start
        while not seen[i]:
            seen[i] = True
            cycle.append(i)
            i = int(perm[i])
        if len(cycle) > 1:
            out.append(cycle)
    return out


def format_permutation(perm, numbers) -> str:
    """A permutation in cycle notation with element labels, e.g. ``"(H5 H6 H7)"``; ``"()"`` is the identity."""
    numbers = np.asarray(numbers)
    parts = [
        "(" + " ".join(f"{chemical_symbols[numbers[i]]}{i}" for i in c) + ")" for c in cycles(perm)
    ]
    return " ".join(parts) or "()"


# ----------------------------------------------------------------------------- search
def _best_matches(desc: np.ndarray, pair_perms: np.ndarray, chunk: int = 64):
    """For every pair of frames, the candidate that maps frame a closest to frame b.

    Returns the squared descriptor distances under the best candidate and under the
    identity (both ``(S, S)``) and the best candidate's index.
    """
    sq = (desc * desc).sum(1)
    base = sq[:, None] + sq[None, :]  # permutations keep the norm of a descriptor
    best = np.full(base.shape, np.inf)
    which = np.zeros(base.shape, dtype=np.int64)
    for c0 in range(0, len(pair_perms), chunk):
        permuted = desc[:, pair_perms[c0 : c0 + chunk]]  # (S, c, d)
        d2 = base[:, None, :] - 2.0 * np.einsum("scd,td->sct", permuted, desc)
        k = np.argmin(d2, axis=1)
        val = np.take_along_axis(d2, k[:, None, :], axis=1)[:, 0]
        better = val < best
        best[better] = val[better]
        which[better] = k[better] + c0
    identity = base - 2.0 * desc @ desc.T
    return np.maximum(best, 0.0), np.maximum(identity, 0.0), which


def find_permutations(
    positions,
    numbers,
    *,
    max_frames: int = 300,
    max_group_size: int = 100,
    bond_scale: float = BOND_SCALE,
    max_candidates: int = 20_000,
    min_improvement: float = 0.1,
) -> np.ndarray:
    """The permutational symmetry group that the geometries show (sGDML's automatic search).

    Parameters
    ----------
    positions : array_like, shape (n_frames, n_atoms, 3)
        Geometries in Å, e.g. the training frames.
    numbers : array_like of int, shape (n_atoms,)
    max_frames : int
        At most this many frames are compared (evenly spaced through the input).
    max_group_size : int
        Largest group to return. If the realised permutations generate a larger
        one, generators are added most-frequent first while the group stays within
        this size, and a warning says so (the kernel's cost grows with the size).
    bond_scale : float
        Bond criterion of :func:`bond_graph`.
    max_candidates : int
        Largest number of graph automorphisms to enumerate; beyond it the search
        warns and returns the identity alone.
    min_improvement : float
        A permutation counts as shown by a pair of frames only if it brings them
        at least this fraction closer (in descriptor distance) than no permutation;
        sparse data otherwise yield chance matches.

    Returns
    -------
    numpy.ndarray of int, shape (group_size, n_atoms)
        The identity first. One frame alone shows no symmetry: the identity.
    """
    from mlffkit.descriptors.inverse_distances import pair_permutation

    numbers = np.asarray(numbers)
    pos = np.asarray(positions, dtype=np.float64)
    if pos.ndim == 2:
        pos = pos[None]
    n_atoms = pos.shape[1]
    identity = np.arange(n_atoms)[None]
    if len(pos) > max_frames:
        pos = pos[np.linspace(0, len(pos) - 1, max_frames).round().astype(int)]
    if len(pos) < 2 or n_atoms < 2:
        return identity

    try:
        candidates = graph_automorphisms(
            bond_graph(numbers, pos, bond_scale), numbers, max_candidates
        )
    except ValueError as err:
        warnings.warn(f"{err}; continuing without permutational symmetries", stacklevel=2)
        return identity
    if len(candidates) == 1:
        return identity

    i, j = np.tril_indices(n_atoms, k=-1)
    desc = 1.0 / np.linalg.norm(pos[:, i] - pos[:, j], axis=-1)
    pair_perms = np.stack([pair_permutation(p) for p in candidates])
    best, ident, which = _best_matches(desc, pair_perms)

    # Minimum spanning tree over the best-match distances: the most reliable links
    # between frames; a tiny offset keeps exact duplicates (distance 0) as edges.
    weights = np.triu(np.sqrt(best) + 1e-12, k=1)
    tree = minimum_spanning_tree(weights).tocoo()
    realised: dict[int, int] = {}
    for a, b in zip(tree.row, tree.col, strict=True):
        k = int(which[a, b])
        if k != 0 and np.sqrt(best[a, b]) < (1.0 - min_improvement) * np.sqrt(ident[a, b]):
            realised[k] = realised.get(k, 0) + 1
    group = identity
    for k in sorted(realised, key=lambda k: (-realised[k], k)):
        trial = close_group(np.vstack([group, candidates[k]]), max_size=max_group_size)
        if trial is None:
            warnings.warn(
                f"the permutations found generate a group of more than {max_group_size}; "
                f"kept a subgroup of {len(group)}. Raise max_group_size or pass permutations "
                "explicitly to use more",
                stacklevel=2,
            )
            continue
        group = trial
    return group
