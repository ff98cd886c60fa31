"""Pool scopes: groups whose SIMs can share a pool are priced, solved and bounded as one problem.

A carrier account says how its pooled plans pool (ServiceProvider.pooling): per communication-plan group (the
legacy rule), per customer or account-wide. Each SIM then has a pool key (cost-model.md, the `pool` column):
the group, its customer (a SIM without a customer pools with the others of its group that have none) or the
account. Two groups are in one scope when a SIM of each can end on the same pooled plan with the same key:
one that either group allows, or one a SIM of either group is on now (a SIM that cannot move stays there).
That is more than the pools an answer can form, never less, so pricing each scope on its own is exact.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from carrieropt.options import Pooling
from optimizer import engine
from optimizer.models import CommGroup
from optimizer.selectors import GroupData, catalogue_from_plans, group_devices, pool_key_of


def pool_scopes(*, pooling: str, groups: list[CommGroup]) -> list[list[CommGroup]]:
    """The groups (in the order given) split into scopes, each in that order too; per group: one scope each."""
    if pooling == Pooling.GROUP or len(groups) <= 1:
        return [[g] for g in groups]
    parent = list(range(len(groups)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[tuple[int, int], int] = {}
    for i, group in enumerate(groups):
        devices = group_devices(group=group)
        pooled = set(group.rate_plans.filter(pooled=True).values_list("pk", flat=True))
        pooled |= set(devices.filter(rate_plan__pooled=True).order_by().values_list("rate_plan_id", flat=True).distinct())
        if not pooled:
            continue
        if pooling == Pooling.ACCOUNT:
            keys = {0}
        else:
            keys = {pool_key_of(pooling=pooling, group_pk=group.pk, customer_id=c) for c in
                    devices.order_by().values_list("customer_id", flat=True).distinct()}
        for node in ((k, p) for k in keys for p in pooled):
            if node in owner:
                a, b = find(owner[node]), find(i)
                if a != b:
                    parent[max(a, b)] = min(a, b)
            else:
                owner[node] = i
    scopes: dict[int, list[CommGroup]] = {}
    for i, group in enumerate(groups):
        scopes.setdefault(find(i), []).append(group)
    return list(scopes.values())


def scope_fingerprint(datas: list[GroupData], groups: list[CommGroup]) -> str:
    """Identifies the data of a whole scope (its groups and each group's data)."""
    digest = hashlib.sha256(b"scope")
    for group, data in zip(groups, datas, strict=True):
        digest.update(f"{group.pk}:{data.fingerprint};".encode())
    return digest.hexdigest()


@dataclass(frozen=True, eq=False)
class Scope:
    """The covered SIMs of several groups as one problem (group g of the problem = datas[g]), plans united.

    SIMs are the groups' in order, each group's in its data's order; plan index i is plan pk plan_pks[i]."""

    problem: engine.Problem
    plan_pks: np.ndarray  # ascending
    starts: np.ndarray  # SIM offset of each group, and the end
    to_union: list[np.ndarray]  # per group: its data's plan index -> the scope's

    def split(self, assignment: np.ndarray, g: int) -> np.ndarray:
        """Group g's part of a scope assignment, in its data's plan indices."""
        part = np.asarray(assignment[self.starts[g] : self.starts[g + 1]], dtype=np.int64)
        back = np.full(len(self.plan_pks), -1, dtype=np.int64)
        back[self.to_union[g]] = np.arange(len(self.to_union[g]))
        local = back[part]
        if (local < 0).any():
            raise ValueError(f"group {g}: an assigned plan is neither allowed nor a current plan of the group")
        return local.astype(np.int32)

    def join(self, g: int, local: np.ndarray, into: np.ndarray) -> np.ndarray:
        """`into` with group g's part replaced by `local` (its data's plan indices)."""
        out = np.array(into, dtype=np.int32, copy=True)
        out[self.starts[g] : self.starts[g + 1]] = self.to_union[g][np.asarray(local, dtype=np.int64)]
        return out

    def blob(self, assignment: np.ndarray) -> bytes:
        return self.plan_pks[np.asarray(assignment, dtype=np.int64)].astype("<i8").tobytes()

    def from_blob(self, blob: bytes) -> np.ndarray:
        return np.searchsorted(self.plan_pks, np.frombuffer(blob, dtype="<i8")).astype(np.int32)


def scope_problem(datas: list[GroupData]) -> Scope:
    """One problem of the groups' covered SIMs, each SIM keeping its group's plans and its pool key."""
    plans = {}
    for data in datas:
        for plan in data.plans:
            plans.setdefault(plan.pk, plan)
    pks = np.array(sorted(plans), dtype=np.int64)
    where = {int(pk): i for i, pk in enumerate(pks)}
    G = len(datas)
    allowed = np.zeros((G, len(pks)), dtype=bool)
    to_union, usage, group, current, factor, movable, comm, pool = [], [], [], [], [], [], [], []
    comm_offset = 0
    for g, data in enumerate(datas):
        pr = data.problem
        tu = np.array([where[int(pk)] for pk in data.plan_ids], dtype=np.int64)
        to_union.append(tu)
        allowed[g, tu[np.flatnonzero(pr.allowed[0])]] = True
        usage.append(pr.usage_mb)
        group.append(np.full(pr.n_sims, g, dtype=np.int32))
        current.append(np.where(pr.current_plan >= 0, tu[np.maximum(pr.current_plan, 0)], -1))
        factor.append(pr.factors)
        movable.append(pr.movable_mask)
        comm.append((pr.comm_plan if pr.comm_plan is not None else np.zeros(pr.n_sims, np.int32)) + comm_offset)
        comm_offset += max(len(data.comm_plan_ids), 1)
        pool.append(data.pool_key if data.pool_key is not None
                    else np.full(pr.n_sims, -int(data.group_pk), dtype=np.int64))
    first = datas[0].problem
    prorated = any(d.problem.factor is not None for d in datas)
    movable_all = np.concatenate(movable)
    problem = engine.Problem(
        catalogue=catalogue_from_plans([plans[int(pk)] for pk in pks]), usage_mb=np.concatenate(usage),
        group=np.concatenate(group), allowed=allowed, billing=first.billing, charge_type=first.charge_type,
        group_names=tuple(d.problem.group_name(0) for d in datas),
        current_plan=np.concatenate(current).astype(np.int32), comm_plan=np.concatenate(comm).astype(np.int32),
        factor=np.concatenate(factor) if prorated else None, movable=None if movable_all.all() else movable_all,
        pool=np.concatenate(pool).astype(np.int64))
    starts = np.cumsum([0] + [d.problem.n_sims for d in datas])
    return Scope(problem=problem, plan_pks=pks, starts=starts, to_union=to_union)
