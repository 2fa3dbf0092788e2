"""Which packages a copy needs: the wanted packages and everything needed to install them,
chosen by libsolv as dnf would (newest version that fits, the machine's own arch before a
compatible one), minus what the destination already has.

    solution = closure(source_packages, wanted_ids, target=destination_packages)
    solution.content_ids   # the wanted ids and the ids of every package they need
    solution.problems      # ("a-1.0-1.x86_64 requires libbar.so.1()(64bit), which nothing
                           #   provides", ...)

A pure function over plain values: (content id, package fields) pairs shaped like
`package.Package`, streamed once. The pool holds what libsolv needs (names, EVRs, arches,
dependencies, file lists) and one content id per solvable; the fields themselves are dropped
as they are read.

How the solver sees the repositories:

- Every package may be "installed" beside other versions of its name (multiversion for
  all): a repository holds many builds of one name, and copying foo-2 does not remove foo-1.
- The destination's packages are a second repository of higher priority, not installed
  ones: a dependency they satisfy is taken from them and so not copied, yet their own
  conflicts, and the dependencies of a destination that is already incomplete, never stop a
  copy (as they would if the solver had to keep them all installed; it would also build
  rules for every one of them, which costs time proportional to the destination).
- Wanted packages that cannot be installed together (one conflicts with or obsoletes
  another) are solved in further rounds: a round installs what it can, the ones libsolv had
  to leave out go to the next.
- A requirement nothing provides is reported, then taken from the package that has it (in
  this pool only) and the round solved again: the package still brings the rest of its
  dependencies, so the copy is as complete as the source allows.
- Only hard requirements (Requires) are followed; Recommends and Supplements are not read
  (dnf installs them by default; a copy of what packages need does not).
"""

from __future__ import annotations

from array import array
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping, Sequence

import solv

from pallet.plugin import Closure
from pallet.plugins.rpm.package import TYPE as PACKAGE

# createrepo_c's flags as libsolv relations
_FLAGS = {"EQ": solv.REL_EQ, "LT": solv.REL_LT, "GT": solv.REL_GT,
          "LE": solv.REL_EQ | solv.REL_LT, "GE": solv.REL_EQ | solv.REL_GT}
_DEPENDENCIES = (("provides", solv.SOLVABLE_PROVIDES), ("requires", solv.SOLVABLE_REQUIRES),
                 ("conflicts", solv.SOLVABLE_CONFLICTS), ("obsoletes", solv.SOLVABLE_OBSOLETES))
_NOT_INSTALLABLE = frozenset({"src", "nosrc"})  # source packages: copied, never solved
_INSTALL = solv.Job.SOLVER_INSTALL | solv.Job.SOLVER_SOLVABLE
_MULTIVERSION_ALL = solv.Job.SOLVER_MULTIVERSION | solv.Job.SOLVER_SOLVABLE_ALL
_NOTHING_PROVIDES = (solv.Solver.SOLVER_RULE_PKG_NOTHING_PROVIDES_DEP,
                     solv.Solver.SOLVER_RULE_JOB_NOTHING_PROVIDES_DEP)


@dataclass(frozen=True)
class Solution:
    content_ids: frozenset[int]  # the wanted packages and every package they need
    problems: tuple[str, ...]    # one sentence per dependency that cannot be satisfied


def closure(available: Iterable[tuple[int, Mapping[str, Any]]], wanted: Iterable[int], *,
            target: Iterable[tuple[int, Mapping[str, Any]]] = (),
            arch: str | None = None) -> Solution:
    """The packages to copy from `available` (the source's (content id, fields) pairs) so
    that every `wanted` content id can be installed, with `target` (the destination's pairs)
    also at hand. `arch` is the machine the packages are for (x86_64 takes i686 too); by
    default each wanted package is solved for its own arch, the commonest arch first.
    Wanted ids that `available` does not hold are left out of the solving, not of the
    result (a copy's selection holds advisories and groups too)."""
    wanted = set(wanted)
    pool = _new_pool()
    source = _Repo(pool, "source", available, wanted)
    _Repo(pool, "target", target, set(), priority=1)
    pool.addfileprovides()
    chosen, problems = _solve(pool, source.wanted_solvables, source.arches(arch))
    return Solution(frozenset(wanted | {source.content_id(s) for s in chosen
                                        if s.repo.id == source.repo.id}),
                    tuple(problems))


def _new_pool() -> solv.Pool:
    pool = solv.Pool()
    pool.setdisttype(solv.Pool.DISTTYPE_RPM)
    pool.set_flag(solv.Pool.POOL_FLAG_IMPLICITOBSOLETEUSESCOLORS, 1)  # multiarch repositories
    return pool


class _Repo:
    """A libsolv repository filled from (content id, fields) pairs, read once."""

    def __init__(self, pool: solv.Pool, name: str,
                 packages: Iterable[tuple[int, Mapping[str, Any]]], wanted: set[int], *,
                 priority: int = 0) -> None:
        self.repo = pool.add_repo(name)
        self.repo.priority = priority
        data = self.repo.add_repodata()
        self.first = 0  # the first solvable's id: those of one repository added in a row follow
        self.ids = array("q")
        self.wanted_solvables: list[solv.XSolvable] = []
        self.wanted_ids: set[int] = set()
        self._arches: Counter[str] = Counter()  # of the wanted packages
        self._all_arches: Counter[str] = Counter()
        directories: dict[str, int] = {}  # libsolv's str2dir is a third of the load time
        for content_id, fields in packages:
            solvable = _add(pool, self.repo, data, directories, fields)
            self.first = self.first or solvable.id
            assert solvable.id == self.first + len(self.ids)
            self.ids.append(content_id)
            self._all_arches[fields["arch"]] += 1
            if content_id in wanted and content_id not in self.wanted_ids:
                self.wanted_ids.add(content_id)
                if fields["arch"] not in _NOT_INSTALLABLE:
                    self.wanted_solvables.append(solvable)
                    self._arches[fields["arch"]] += 1
        data.internalize()

    def content_id(self, solvable: solv.XSolvable) -> int:
        return self.ids[solvable.id - self.first]

    def arches(self, arch: str | None) -> list[str]:
        """The arches to solve for, in turn: `arch`, or the wanted packages' own ones, the
        commonest first (when only noarch ones are wanted, the source's commonest arch)."""
        if arch is not None:
            return [arch]
        for counts in (self._arches, self._all_arches):
            ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
            machines = [a for a, _ in ordered if a not in _NOT_INSTALLABLE | {"noarch"}]
            if machines:
                return machines if counts is self._arches else machines[:1]
        return ["noarch"]


def _add(pool: solv.Pool, repo: solv.Repo, data: solv.XRepodata, directories: dict[str, int],
         fields: Mapping[str, Any]) -> solv.XSolvable:
    solvable = repo.add_solvable()
    name = fields["name"]
    evr = _evr(fields.get("epoch"), fields["version"], fields["release"])
    solvable.name, solvable.evr, solvable.arch = name, evr, fields["arch"]
    solvable.add_deparray(solv.SOLVABLE_PROVIDES,
                          pool.rel2id(pool.str2id(name), pool.str2id(evr), solv.REL_EQ))
    for field, key in _DEPENDENCIES:
        for dependency in fields.get(field) or ():
            dep_id = _dep_id(pool, dependency)
            if dep_id:
                solvable.add_deparray(key, dep_id)
    for _type, directory, filename in fields.get("files") or ():
        if not directory:  # libsolv refuses an empty directory
            continue
        directory_id = directories.get(directory)
        if directory_id is None:
            directory_id = directories[directory] = data.str2dir(directory)
        data.add_dirstr(solvable.id, solv.SOLVABLE_FILELIST, directory_id, filename)
    return solvable


def _evr(epoch: str | None, version: str | None, release: str | None) -> str:
    """libsolv's "epoch:version-release", the epoch left out when it is 0 (as libsolv's own
    repomd reader does, so "1.0" and "0:1.0" compare equal)."""
    evr = version or ""
    if epoch and epoch != "0":
        evr = f"{epoch}:{evr}"
    return f"{evr}-{release}" if release else evr


def _dep_id(pool: solv.Pool, dependency: Sequence[Any]) -> int:
    """The libsolv id of a (name, flags, epoch, version, release, pre) dependency; a rich
    dependency ("(a or b)") is parsed by libsolv. 0 when libsolv cannot parse it."""
    name, flags, epoch, version, release = dependency[:5]
    if name.startswith("("):
        parsed = pool.parserpmrichdep(name)
        return parsed.id if parsed else 0
    name_id = pool.str2id(name)
    if not flags or version is None:
        return name_id
    if flags not in _FLAGS:
        raise ValueError(f"unknown dependency flags {flags!r} in {name!r}")
    return pool.rel2id(name_id, pool.str2id(_evr(epoch, version, release)), _FLAGS[flags])


# -- solving ----------------------------------------------------------------------------------

def _solve(pool: solv.Pool, wanted: list[solv.XSolvable],
           arches: list[str]) -> tuple[set[solv.XSolvable], list[str]]:
    """The solvables installing `wanted` takes, and the problems met, arch by arch: each
    wanted solvable is solved with the first of `arches` that can install it."""
    chosen: set[solv.XSolvable] = set()
    problems: dict[str, None] = {}  # sentences in the order met, once each
    remaining = wanted
    for arch in arches:
        pool.setarch(arch)
        pool.createwhatprovides()
        batch = [s for s in remaining if s.installable()]
        remaining = [s for s in remaining if not s.installable()]
        _solve_rounds(pool, batch, chosen, problems)
    for solvable in remaining:
        problems[f"{solvable} cannot be installed on {' or '.join(arches)}"] = None
    return chosen, list(problems)


def _solve_rounds(pool: solv.Pool, batch: list[solv.XSolvable], chosen: set[solv.XSolvable],
                  problems: dict[str, None]) -> None:
    """Install `batch` together. When libsolv finds that some cannot be (it then installs none
    of those a problem involves), leave out the ones its first solution to each problem
    names, install the rest, and solve those left out as the next batch; a package that
    cannot be installed even alone is named in `problems` with its reasons."""
    while batch:
        pending, later = batch, []
        while pending:
            solver = pool.Solver()
            found = solver.solve([pool.Job(_MULTIVERSION_ALL, 0)]
                                 + [pool.Job(_INSTALL, s.id) for s in pending])
            if found and _drop_unsatisfiable(_nothing_provides(found), problems):
                continue  # again, without the requirements nothing provides
            left_out = _left_out(found, pending)
            if left_out is None or len(left_out) == len(pending):
                for problem in found:  # nothing to leave out that would help: the reasons
                    problems.update(dict.fromkeys(_sentences(problem)))
            elif left_out:
                later += left_out
                leaving = set(left_out)
                pending = [s for s in pending if s not in leaving]
                continue
            chosen.update(solver.transaction().newsolvables())
            break
        batch = later


def _left_out(found: list[solv.Problem], pending: list[solv.XSolvable]) -> list | None:
    """The wanted solvables that libsolv's first solution to each problem would not install
    (job 0 is the multiversion one); None when a problem has no such solution."""
    left_out: dict[solv.XSolvable, None] = {}
    for problem in found:
        for solution in problem.solutions():
            elements = solution.elements()
            if elements and all(e.type == solv.Solver.SOLVER_SOLUTION_JOB and e.jobidx > 0
                                for e in elements):
                left_out.update(dict.fromkeys(pending[e.jobidx - 1] for e in elements))
                break
        else:
            return None
    return list(left_out)


def _nothing_provides(problems: list[solv.Problem]) -> list[solv.Ruleinfo]:
    return [info for problem in problems for rule in problem.findallproblemrules()
            for info in rule.allinfos() if info.type in _NOTHING_PROVIDES]


def _drop_unsatisfiable(infos: list[solv.Ruleinfo], problems: dict[str, None]) -> bool:
    """Name each requirement of `infos` in `problems` and take it from the package that has
    it; False when none was left to take."""
    dropped = False
    for info in infos:
        problems[_sentence(info)] = None
        solvable = info.solvable
        requires = solvable.lookup_deparray(solv.SOLVABLE_REQUIRES, 0) if solvable else []
        kept = [dep.id for dep in requires if dep.id != info.dep_id]
        if len(kept) < len(requires):
            solvable.unset(solv.SOLVABLE_REQUIRES)
            for dep_id in kept:
                solvable.add_deparray(solv.SOLVABLE_REQUIRES, dep_id)
            dropped = True
    return dropped


def _sentences(problem: solv.Problem) -> list[str]:
    infos = [info for rule in problem.findallproblemrules() for info in rule.allinfos()
             if info.type != solv.Solver.SOLVER_RULE_JOB]
    return [_sentence(info) for info in infos] or [str(problem)]


def _sentence(info: solv.Ruleinfo) -> str:
    """A problem of libsolv's in a sentence that starts with the package it is about."""
    Solver = solv.Solver
    package, other, dep = info.solvable, info.othersolvable, info.dep
    if info.type in _NOTHING_PROVIDES and package is not None:
        return f"{package} requires {dep}, which nothing provides"
    if info.type == Solver.SOLVER_RULE_PKG_REQUIRES:
        return f"{package} requires {dep}, but no package that provides it can be installed"
    if info.type == Solver.SOLVER_RULE_PKG_CONFLICTS:
        return f"{package} conflicts with {dep}, which {other} provides"
    if info.type in (Solver.SOLVER_RULE_PKG_OBSOLETES, Solver.SOLVER_RULE_PKG_IMPLICIT_OBSOLETES,
                     Solver.SOLVER_RULE_PKG_INSTALLED_OBSOLETES):
        return f"{package} obsoletes {dep}, which {other} provides"
    if info.type == Solver.SOLVER_RULE_PKG_SELF_CONFLICT:
        return f"{package} conflicts with {dep}, which it provides itself"
    return info.problemstr()


def dependencies(available: Iterable[tuple[int, str, Mapping[str, Any]]],
                 selected: frozenset[int],
                 present: Iterable[tuple[int, str, Mapping[str, Any]]]) -> Closure:
    """The rpm repository type's `dependencies`: the packages the selected ones need, from
    the source version's packages, given the destination's."""
    solution = closure(_packages(available), selected, target=_packages(present))
    return Closure(add=solution.content_ids - selected, unresolved=solution.problems)


def _packages(units: Iterable[tuple[int, str, Mapping[str, Any]]]
              ) -> Iterator[tuple[int, Mapping[str, Any]]]:
    return ((unit, fields) for unit, type_, fields in units if type_ == PACKAGE)
