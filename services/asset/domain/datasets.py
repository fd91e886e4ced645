"""Data managers and data samples (domain §1.4, §1.5)."""

from __future__ import annotations

from dataclasses import dataclass, field

from tessera.asset.v1 import events_pb2 as ev
from tessera.asset.v1 import resources_pb2 as res

from services.asset.domain.common import (
    Context,
    Violations,
    check_authorized_ids,
    get_one,
    make_permission,
    make_permissions,
    timestamp,
)
from services.kit.errors import AlreadyExists, InvalidArgument, NotFound, PermissionDenied


@dataclass
class NewDataManager:
    """A data manager as its owner asks to register it. ``logs_permission`` is required (None: missing)."""

    key: str
    name: str
    description: res.Addressable = field(default_factory=res.Addressable)
    opener: res.Addressable = field(default_factory=res.Addressable)
    type: str = ""
    permissions: res.NewPermissions = field(default_factory=res.NewPermissions)
    logs_permission: res.NewPermissions | None = None
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass
class NewDataSample:
    """A data sample as its owner asks to register it."""

    key: str
    data_manager_keys: list[str]
    checksum: str


def register_data_manager(ctx: Context, new: NewDataManager) -> res.DataManager:
    """Register a data manager owned by the caller."""
    v = Violations()
    key = v.key("key", new.key)
    v.name("name", new.name)
    v.addressable("description", new.description)
    v.addressable("opener", new.opener)
    v.metadata("metadata", dict(new.metadata))
    if len(new.type) > 100:
        v.add("type", "must be at most 100 characters")
    logs = new.logs_permission
    if logs is None:
        v.add("logs_permission", "is required")
        logs = res.NewPermissions()
    known = ctx.store.organization_ids()
    check_authorized_ids(v, "permissions", new.permissions, known)
    check_authorized_ids(v, "logs_permission", logs, known)
    v.raise_if_any()
    if ctx.store.get_data_managers([key]):
        raise AlreadyExists(f"data manager {key} already exists", metadata={"keys": key})
    manager = res.DataManager(
        key=key,
        name=new.name,
        owner=ctx.org,
        permissions=make_permissions(new.permissions, ctx.org),
        description=new.description,
        opener=new.opener,
        type=new.type,
        logs_permission=make_permission(logs, ctx.org),
        metadata=dict(new.metadata),
        metadata_order=list(new.metadata),
        creation_date=timestamp(ctx.now),
    )
    ctx.store.add_data_manager(manager)
    ctx.emit(res.ASSET_DATA_MANAGER, key, ev.EVENT_ASSET_CREATED, manager)
    return manager


def get_data_manager(ctx: Context, key: str, *, with_samples: bool = False) -> res.DataManager:
    """A data manager of the channel (with its linked sample keys if asked), or NOT_FOUND."""
    return get_one(key, "data manager", lambda keys: ctx.store.get_data_managers(keys, with_samples=with_samples))


def update_data_manager(ctx: Context, key: str, name: str) -> res.DataManager:
    """Rename a data manager (owner only)."""
    manager = get_data_manager(ctx, key)
    v = Violations()
    v.name("name", name)
    v.raise_if_any()
    if manager.owner != ctx.org:
        raise PermissionDenied(f"only {manager.owner} may update data manager {manager.key}")
    manager.name = name
    ctx.store.update_data_manager(manager)
    ctx.emit(res.ASSET_DATA_MANAGER, manager.key, ev.EVENT_ASSET_UPDATED, manager)
    return manager


def _owned_managers(ctx: Context, v: Violations, keys: list[str], path: str) -> list[str]:
    normalized = [v.key(f"{path}[{i}]", k) for i, k in enumerate(keys)]
    if not normalized:
        v.add(path, "at least one data manager is required")
    v.raise_if_any()
    found = ctx.store.get_data_managers(normalized)
    missing = [k for k in normalized if k not in found]
    if missing:
        raise NotFound(f"data manager {missing[0]} not found", metadata={"keys": ",".join(missing)})
    foreign = [k for k in normalized if found[k].owner != ctx.org]
    if foreign:
        raise PermissionDenied(f"data manager {foreign[0]} is not owned by {ctx.org}")
    return list(dict.fromkeys(normalized))


def register_data_samples(ctx: Context, samples: list[NewDataSample]) -> list[res.DataSample]:
    """Register a batch of data samples; the caller must own every data manager they link to."""
    if not samples:
        raise InvalidArgument.on("data_samples", "at least one data sample is required")
    v = Violations()
    keys = [v.key(f"data_samples[{i}].key", s.key) for i, s in enumerate(samples)]
    for i, sample in enumerate(samples):
        if len(sample.checksum) != 64 or any(c not in "0123456789abcdef" for c in sample.checksum):
            v.add(f"data_samples[{i}].checksum", "must be a sha256 hex digest")
    if len(set(keys)) != len(keys):
        v.add("data_samples", "keys must be unique")
    v.raise_if_any()
    created = []
    for i, sample in enumerate(samples):
        managers = _owned_managers(ctx, v, list(sample.data_manager_keys), f"data_samples[{i}].data_manager_keys")
        created.append(
            res.DataSample(
                key=keys[i],
                data_manager_keys=managers,
                owner=ctx.org,
                checksum=sample.checksum,
                creation_date=timestamp(ctx.now),
            )
        )
    existing = ctx.store.get_data_samples(keys)
    if existing:
        raise AlreadyExists("data samples already exist", metadata={"keys": ",".join(sorted(existing))})
    ctx.store.add_data_samples(created)
    for sample in created:
        ctx.emit(res.ASSET_DATA_SAMPLE, sample.key, ev.EVENT_ASSET_CREATED, sample)
    return created


def link_data_samples(ctx: Context, manager_keys: list[str], sample_keys: list[str]) -> list[res.DataSample]:
    """Add links from samples to more data managers (never removes one); owner of both only."""
    v = Violations()
    managers = _owned_managers(ctx, v, manager_keys, "data_manager_keys")
    keys = [v.key(f"data_sample_keys[{i}]", k) for i, k in enumerate(sample_keys)]
    if not keys:
        v.add("data_sample_keys", "at least one data sample is required")
    v.raise_if_any()
    found = ctx.store.get_data_samples(keys)
    missing = [k for k in keys if k not in found]
    if missing:
        raise NotFound(f"data sample {missing[0]} not found", metadata={"keys": ",".join(missing)})
    updated = []
    for key in dict.fromkeys(keys):
        sample = found[key]
        if sample.owner != ctx.org:
            raise PermissionDenied(f"data sample {key} is not owned by {ctx.org}")
        merged = list(dict.fromkeys([*sample.data_manager_keys, *managers]))
        if merged != list(sample.data_manager_keys):
            del sample.data_manager_keys[:]
            sample.data_manager_keys.extend(merged)
            ctx.store.update_data_sample(sample)
            ctx.emit(res.ASSET_DATA_SAMPLE, key, ev.EVENT_ASSET_UPDATED, sample)
        updated.append(sample)
    return updated


def get_data_sample(ctx: Context, key: str) -> res.DataSample:
    """A data sample of the channel, or NOT_FOUND."""
    return get_one(key, "data sample", ctx.store.get_data_samples)
