"""Read side of the ledger: filtered, ordered, paginated lists (contract §1.2, domain §7.1).

Every list is scoped to the caller's channel. Filters are named like the REST query parameters
(repeated fields are the comma-separated ``in`` filters); ``match`` searches key and name;
``metadata`` takes the SDK's JSON list of ``{key, type: is|contains|exists, value}``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from google.protobuf.message import Message
from sqlalchemy.orm import Session
from tessera.asset.v1 import resources_pb2 as res

from services.asset.store import sql
from services.asset.store.tables import (
    ComputePlanRow,
    ComputeTaskRow,
    DataManagerRow,
    DataSampleRow,
    EventRow,
    FunctionRow,
    ModelRow,
    OrganizationRow,
    OutputAssetRow,
    PerformanceRow,
    ProfilingStepRow,
)
from services.kit import pagination
from services.kit.errors import InvalidArgument
from services.kit.filters import parse_metadata_filter
from services.kit.pagination import Page, paginate


def _in(column, values) -> Any | None:
    values = [v for v in values if v != ""]
    return column.in_(values) if values else None


def _range(column, request: Message, name: str) -> list[Any]:
    conditions = []
    for suffix, op in (("_after", "__ge__"), ("_before", "__le__")):
        field = f"{name}{suffix}"
        if field in request.DESCRIPTOR.fields_by_name and request.HasField(field):
            try:
                value = getattr(request, field).ToDatetime(dt.UTC)
            except ValueError:  # seconds or nanos out of the Timestamp range
                raise InvalidArgument.on(field, "is not a valid timestamp") from None
            conditions.append(getattr(column, op)(value))
    return conditions


def metadata_conditions(column, raw: str) -> list[Any]:
    """The SDK's metadata filter, as SQL on a JSONB column."""
    if not raw:
        return []
    conditions = []
    for item in parse_metadata_filter(raw):
        key, kind = item["key"], item["type"]
        if kind == "exists":
            conditions.append(column.has_key(key))
        elif kind == "is":
            conditions.append(column[key].astext == str(item["value"]))
        else:
            conditions.append(column[key].astext.contains(str(item["value"]), autoescape=True))
    return conditions


def can_process_condition(column, orgs) -> Any | None:
    """Public, or every listed organization authorized (Substra's ``can_process``)."""
    orgs = [o for o in orgs if o]
    if not orgs:
        return None
    return sa.or_(
        column["process"]["public"].astext == "true",
        column["process"]["authorized_ids"].contains(orgs),
    )


def _ordering(raw: str, allowed: dict[str, Any], default: str, tiebreak: Any, metadata: Any = None) -> list[Any]:
    """ORDER BY for ``[-]field``; with a ``metadata`` column, ``metadata__<key>`` orders by that key."""
    field = raw or default
    descending = field.startswith("-")
    name = field[1:] if descending else field
    if metadata is not None and name.startswith("metadata__") and len(name) > len("metadata__"):
        column = metadata[name.removeprefix("metadata__")].astext
    elif name in allowed:
        column = allowed[name]
    else:
        extra = ", metadata__<key>" if metadata is not None else ""
        raise InvalidArgument.on("ordering", f"must be one of {', '.join(sorted(allowed))}{extra} (optionally with -)")
    order = column.desc().nulls_last() if descending else column.asc().nulls_last()
    return [order, tiebreak.desc() if descending else tiebreak.asc()]


def _by_name(column, enum) -> Any:
    """An enum column ordered by its values' names (as Substra, which stores them as text, orders them)."""
    return sa.case({number: name for name, number in enum.items()}, value=column, else_="")


def _where(query: sa.Select, *conditions) -> sa.Select:
    flat = []
    for condition in conditions:
        if isinstance(condition, list):
            flat.extend(condition)
        elif condition is not None:
            flat.append(condition)
    return query.where(*flat) if flat else query


def _match(columns, text: str) -> Any | None:
    if not text:
        return None
    # A substring search: the user's text is literal, its LIKE wildcards are escaped.
    literal = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return sa.or_(*(column.ilike(f"%{literal}%", escape="\\") for column in columns))


def _duration(start, end) -> Any:
    return sa.func.extract("epoch", sa.func.coalesce(end, sa.func.now()) - start)


class Queries:
    """The list queries of one channel."""

    def __init__(self, session: Session, channel: str) -> None:
        self.session = session
        self.channel = channel
        self.store = sql.SqlStore(session, channel)

    def organizations(self, request) -> Page:
        """The channel's organizations, oldest first. The REST route has no paging: the default page
        is large enough for every organization of a channel."""
        t = OrganizationRow
        query = sa.select(t).where(t.channel == self.channel).order_by(t.creation_date, t.id)
        return paginate(self.session, request, query, sql.organization, default_size=1000, max_size=1000)

    def data_managers(self, request) -> Page:
        t = DataManagerRow
        query = _where(
            sa.select(t).where(t.channel == self.channel),
            _in(t.key, request.key),
            _in(t.name, request.name),
            _in(t.owner, request.owner),
            _match([t.key, t.name], request.match),
            can_process_condition(t.permissions, request.can_process),
            _range(t.creation_date, request, "creation_date"),
        )
        logs_orgs = [o for o in request.can_access_logs if o]
        if logs_orgs:
            query = query.where(
                sa.or_(
                    t.logs_permission["public"].astext == "true",
                    t.logs_permission["authorized_ids"].contains(logs_orgs),
                )
            )
        if any(request.data_sample_key):
            linked = sa.select(sa.func.unnest(DataSampleRow.data_manager_keys)).where(
                DataSampleRow.channel == self.channel, DataSampleRow.key.in_(list(request.data_sample_key))
            )
            query = query.where(t.key.in_(linked))
        allowed = {"creation_date": t.creation_date, "key": t.key, "name": t.name, "owner": t.owner}
        query = query.order_by(*_ordering(request.ordering, allowed, "creation_date", t.key))
        page = paginate(self.session, request, query, lambda row: row)
        samples = self.store.sample_keys_of([row.key for row in page.items])
        page.items = [sql.data_manager(row, samples.get(row.key)) for row in page.items]
        return page

    def data_samples(self, request) -> Page:
        t = DataSampleRow
        query = _where(
            sa.select(t).where(t.channel == self.channel),
            _in(t.key, request.key),
            _in(t.owner, request.owner),
            _range(t.creation_date, request, "creation_date"),
        )
        datasets = [k for k in request.dataset_key if k]
        if datasets:
            query = query.where(t.data_manager_keys.overlap(sa.cast(datasets, t.data_manager_keys.type)))
        query = query.order_by(*_ordering(request.ordering, {"creation_date": t.creation_date}, "creation_date", t.key))
        return paginate(self.session, request, query, sql.data_sample)

    def functions(self, request) -> Page:
        t = FunctionRow
        query = _where(
            sa.select(t).where(t.channel == self.channel),
            _in(t.key, request.key),
            _in(t.owner, request.owner),
            _in(t.name, request.name),
            _match([t.key, t.name], request.match),
            can_process_condition(t.permissions, request.can_process),
            _range(t.creation_date, request, "creation_date"),
        )
        plans = [k for k in request.compute_plan_key if k]
        if plans:
            used = sa.select(ComputeTaskRow.function_key).where(
                ComputeTaskRow.channel == self.channel, ComputeTaskRow.compute_plan_key.in_(plans)
            )
            query = query.where(t.key.in_(used))
        allowed = {
            "creation_date": t.creation_date,
            "key": t.key,
            "name": t.name,
            "owner": t.owner,
            "status": _by_name(t.status, res.FunctionStatus),
        }
        query = query.order_by(*_ordering(request.ordering, allowed, "creation_date", t.key))
        return paginate(self.session, request, query, sql.function)

    def plans(self, request) -> Page:
        t = ComputePlanRow
        duration = sa.func.coalesce(_duration(t.start_date, t.end_date), 0)  # 0 until it starts, as shown
        query = _where(
            sa.select(t).where(t.channel == self.channel),
            _in(t.key, request.key),
            _in(t.owner, request.owner),
            _in(t.tag, request.tag),
            _in(t.name, request.name),
            _in(t.status, request.status),
            _in(t.creator, request.creator),
            _match([t.key, t.name], request.match),
            metadata_conditions(t.metadata_, request.metadata),
            _range(t.creation_date, request, "creation_date"),
            _range(t.start_date, request, "start_date"),
            _range(t.end_date, request, "end_date"),
            duration >= request.duration_min if request.HasField("duration_min") else None,
            duration <= request.duration_max if request.HasField("duration_max") else None,
        )
        functions = [k for k in request.function_key if k]
        if functions:
            using = sa.select(ComputeTaskRow.compute_plan_key).where(
                ComputeTaskRow.channel == self.channel, ComputeTaskRow.function_key.in_(functions)
            )
            query = query.where(t.key.in_(using))
        allowed = {
            "creation_date": t.creation_date,
            "start_date": t.start_date,
            "end_date": t.end_date,
            "key": t.key,
            "name": t.name,
            "owner": t.owner,
            "tag": t.tag,
            "status": _by_name(t.status, res.ComputePlanStatus),
            "duration": duration,
            "creator": t.creator,
        }
        query = query.order_by(*_ordering(request.ordering, allowed, "-creation_date", t.key, metadata=t.metadata_))
        return paginate(self.session, request, query, sql.plan, default_size=10, max_size=100)

    def tasks(self, request) -> Page:
        t = ComputeTaskRow
        duration = _duration(t.start_date, t.end_date)
        query = _where(
            sa.select(t).where(t.channel == self.channel),
            _in(t.key, request.key),
            _in(t.owner, request.owner),
            _in(t.worker, request.worker),
            _in(t.rank, request.rank),
            _in(t.status, request.status),
            _in(t.compute_plan_key, request.compute_plan_key),
            _in(t.function_key, request.function_key),
            _in(t.tag, request.tag),
            _match([t.key], request.match),
            metadata_conditions(t.metadata_, request.metadata),
            _range(t.creation_date, request, "creation_date"),
            _range(t.start_date, request, "start_date"),
            _range(t.end_date, request, "end_date"),
            duration >= request.duration_min if request.HasField("duration_min") else None,
            duration <= request.duration_max if request.HasField("duration_max") else None,
        )
        allowed = {
            "creation_date": t.creation_date,
            "start_date": t.start_date,
            "end_date": t.end_date,
            "key": t.key,
            "owner": t.owner,
            "rank": t.rank,
            "status": _by_name(t.status, res.ComputeTaskStatus),
            "worker": t.worker,
            "compute_plan_key": t.compute_plan_key,
            "duration": duration,
            "function__name": sa.select(FunctionRow.name)
            .where(FunctionRow.channel == t.channel, FunctionRow.key == t.function_key)
            .scalar_subquery(),
        }
        query = query.order_by(*_ordering(request.ordering, allowed, "creation_date", t.seq))
        page = paginate(self.session, request, query, lambda row: row)
        functions = self.store.get_functions({row.function_key for row in page.items})
        page.items = [sql.task(row, functions) for row in page.items]
        return page

    def models(self, request) -> Page:
        t = ModelRow
        query = _where(
            sa.select(t).where(t.channel == self.channel),
            _in(t.key, request.key),
            _in(t.owner, request.owner),
            _in(t.compute_task_key, request.compute_task_key),
            _range(t.creation_date, request, "creation_date"),
        )
        query = query.order_by(*_ordering(request.ordering, {"creation_date": t.creation_date}, "creation_date", t.key))
        return paginate(self.session, request, query, sql.model)

    def performances(self, request) -> Page:
        t = PerformanceRow
        query = _where(
            sa.select(t).where(t.channel == self.channel),
            _in(t.compute_task_key, request.compute_task_key),
            _in(t.identifier, request.compute_task_output_identifier),
        )
        plans = [k for k in request.compute_plan_key if k]
        if plans:
            query = query.where(
                t.compute_task_key.in_(
                    sa.select(ComputeTaskRow.key).where(
                        ComputeTaskRow.channel == self.channel, ComputeTaskRow.compute_plan_key.in_(plans)
                    )
                )
            )
        query = query.order_by(
            *_ordering(request.ordering, {"creation_date": t.creation_date}, "creation_date", t.identifier)
        )
        return paginate(self.session, request, query, sql.performance, default_size=1000, max_size=10000)

    def plan_performances(self, request) -> tuple[Page, list[int], list[int]]:
        """Rows of ``/compute_plan/{key}/perf``: performances with their task, plus distinct ranks and rounds."""
        p, t = PerformanceRow, ComputeTaskRow
        round_idx = t.metadata_["round_idx"].astext
        base = (
            sa.select(p, t.function_key, t.rank, t.worker, round_idx.label("round_idx"))
            .join(t, sa.and_(t.channel == p.channel, t.key == p.compute_task_key))
            .where(p.channel == self.channel, t.compute_plan_key == request.key)
        )
        query = base.order_by(t.rank, t.worker, round_idx, p.identifier)
        page = pagination.page_request(request, 1000, 10000)
        total = self.session.scalar(sa.select(sa.func.count()).select_from(base.subquery()))
        pagination.check_in_range(page, total, bool(request.page))
        rows = self.session.execute(query.offset(page.offset).limit(page.size)).all()
        ranks = sorted(
            set(
                self.session.scalars(
                    sa.select(t.rank).where(t.channel == self.channel, t.compute_plan_key == request.key).distinct()
                )
            )
        )
        rounds = sorted(
            {
                int(r)
                for r in self.session.scalars(
                    sa.select(round_idx).where(t.channel == self.channel, t.compute_plan_key == request.key).distinct()
                )
                if r is not None and r.lstrip("-").isdigit()
            }
        )
        return Page(list(rows), pagination.next_token(page, total), total), ranks, rounds

    def output_assets(self, request) -> Page:
        o = OutputAssetRow
        query = _where(
            sa.select(o).where(o.channel == self.channel, o.compute_task_key == request.key),
            o.identifier == request.identifier if request.identifier else None,
            o.asset_kind == request.kind if request.kind else None,
        ).order_by(o.position)
        page = paginate(self.session, request, query, lambda row: row)
        model_keys = [row.asset_key for row in page.items if row.asset_kind == res.ASSET_MODEL]
        models = self.store.get_models(model_keys)
        items = []
        for row in page.items:
            item = res.OutputAsset(identifier=row.identifier, kind=row.asset_kind)
            if row.asset_kind == res.ASSET_MODEL and row.asset_key in models:
                item.model.CopyFrom(models[row.asset_key])
            elif row.asset_kind == res.ASSET_PERFORMANCE:
                found = self.store.get_performance(row.compute_task_key, row.identifier)
                if found is not None:
                    item.performance.CopyFrom(found)
            items.append(item)
        page.items = items
        return page

    def profiling_steps(self, request) -> Page:
        s = ProfilingStepRow
        query = _where(
            sa.select(s).where(s.channel == self.channel),
            s.asset_key == request.asset_key if request.asset_key else None,
        ).order_by(s.asset_key, s.position)
        return paginate(
            self.session,
            request,
            query,
            lambda row: res.ProfilingStep(asset_key=row.asset_key, step=row.step, duration=row.duration),
            default_size=1000,
            max_size=10000,
        )

    def events(self, request) -> Page:
        e = EventRow
        query = _where(
            sa.select(e).where(e.channel == self.channel, e.position > request.after_position),
            e.asset_kind == request.asset_kind if request.asset_kind else None,
            e.asset_key == request.asset_key if request.asset_key else None,
            e.event_kind == request.event_kind if request.event_kind else None,
            _range(e.timestamp, request, "timestamp"),
        ).order_by(e.position.desc() if request.descending else e.position.asc())
        return paginate(self.session, request, query, sql.event, default_size=100, max_size=1000)

    def events_after(self, position: int, limit: int) -> list:
        """The channel's events after ``position``, in order (the subscription's replay)."""
        return sql.events_after(self.session, self.channel, position, limit)
