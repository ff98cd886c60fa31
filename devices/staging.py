"""Bulk SQL of the sync: rows into staging, the staging -> Device merge, usage upserts (PostgreSQL COPY, SQLite multi-row)."""
from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from django.db import connection

from devices.models import STOPPED_STATUSES, Customer, Device, DeviceStaging, DeviceUsage
from rateplans.models import CommunicationPlan, RatePlan, ServiceProvider

STAGING_COLUMNS = ("provider_id", "sync_run_id", "iccid", "status", "rate_plan_code", "communication_plan_name",
                   "msisdn", "date_activated", "date_added", "date_updated", "page", "reject_reason", "customer")
STAGING_DATES = (7, 8, 9)
USAGE_COLUMNS = ("device_id", "billing_period_id", "ctd_bytes", "usage_mb", "projected_mb", "usage_date", "synced_at")
USAGE_DATES = (5, 6)

STAGING = DeviceStaging._meta.db_table
DEVICE = Device._meta.db_table
USAGE = DeviceUsage._meta.db_table
RATE_PLAN = RatePlan._meta.db_table
COMM_PLAN = CommunicationPlan._meta.db_table
CUSTOMER = Customer._meta.db_table
STOPPED_SQL = "(" + ", ".join(f"'{status}'" for status in STOPPED_STATUSES) + ")"


@dataclass(frozen=True)
class MergeCounts:
    inserted: int
    updated: int
    missing: int
    new_communication_plans: list[str]


def _is_postgres() -> bool:
    return connection.vendor == "postgresql"


def _sqlite_rows_per_statement(columns: int) -> int:
    raw = connection.connection
    limit = raw.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) if hasattr(raw, "getlimit") else 999
    return max(1, min(limit, 32_000) // columns)


def _adapt_dates(rows: Sequence[tuple], positions: tuple[int, ...]) -> list[tuple]:
    adapt = connection.ops.adapt_datetimefield_value
    return [tuple(adapt(v) if i in positions else v for i, v in enumerate(row)) for row in rows]


def _copy_upsert(*, rows: Sequence[tuple], load_table: str, load_ddl: str, columns: Sequence[str], target: str,
                 conflict: str, update_sql: str) -> None:
    """PostgreSQL: COPY into a session temp table, then one INSERT ... SELECT ... ON CONFLICT."""
    cols = ", ".join(columns)
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TEMP TABLE IF NOT EXISTS {load_table} ({load_ddl})")
        cursor.execute(f"TRUNCATE {load_table}")
        with cursor.copy(f"COPY {load_table} ({cols}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        cursor.execute(f"INSERT INTO {target} ({cols}) SELECT {cols} FROM {load_table} "  # noqa: S608 - names are ours
                       f"ON CONFLICT ({conflict}) DO UPDATE SET {update_sql}")
        cursor.execute(f"TRUNCATE {load_table}")


def _values_upsert(*, rows: Sequence[tuple], columns: Sequence[str], target: str, conflict: str,
                   update_sql: str) -> None:
    """SQLite: multi-row INSERT ... VALUES (...), (...) ON CONFLICT, as many rows per statement as it allows."""
    cols = ", ".join(columns)
    one = "(" + ", ".join(["%s"] * len(columns)) + ")"
    step = _sqlite_rows_per_statement(len(columns))
    with connection.cursor() as cursor:
        for start in range(0, len(rows), step):
            chunk = rows[start:start + step]
            params = [value for row in chunk for value in row]
            cursor.execute(f"INSERT INTO {target} ({cols}) VALUES {', '.join([one] * len(chunk))} "  # noqa: S608
                           f"ON CONFLICT ({conflict}) DO UPDATE SET {update_sql}", params)


def staging_clear(*, provider_id: int) -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {STAGING} WHERE provider_id = %s", [provider_id])  # noqa: S608
        return cursor.rowcount


def staging_write(*, rows: Sequence[tuple]) -> None:
    """Stage rows (STAGING_COLUMNS order, one per ICCID). A later page replaces an earlier row of the same SIM:
    the carrier lists the oldest change first, so the later row is the newer state."""
    if not rows:
        return
    update = ", ".join(f"{c} = excluded.{c}" for c in STAGING_COLUMNS if c not in ("provider_id", "iccid"))
    if _is_postgres():
        update_sql = f"{update} WHERE excluded.page >= {STAGING}.page"
        _copy_upsert(rows=rows, load_table="carrieropt_staging_load", columns=STAGING_COLUMNS, target=STAGING,
                     conflict="provider_id, iccid", update_sql=update_sql, load_ddl=(
                         "provider_id bigint, sync_run_id bigint, iccid varchar(20), status varchar(20), "
                         "rate_plan_code varchar(120), communication_plan_name varchar(200), msisdn varchar(20), "
                         "date_activated timestamptz, date_added timestamptz, date_updated timestamptz, "
                         "page integer, reject_reason varchar(300), customer varchar(200)"))
    else:
        _values_upsert(rows=_adapt_dates(rows, STAGING_DATES), columns=STAGING_COLUMNS, target=STAGING,
                       conflict="provider_id, iccid", update_sql=f"{update} WHERE excluded.page >= {STAGING}.page")


def staging_counts(*, run_id: int) -> tuple[int, int]:
    """(staged SIMs, of which rejected) for one run."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*), COUNT(CASE WHEN reject_reason <> '' THEN 1 END) "  # noqa: S608
                       f"FROM {STAGING} WHERE sync_run_id = %s", [run_id])
        staged, rejected = cursor.fetchone()
    return int(staged), int(rejected or 0)


def staging_rejects(*, run_id: int, limit: int) -> list[dict]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT iccid, page, reject_reason FROM {STAGING} "  # noqa: S608
                       f"WHERE sync_run_id = %s AND reject_reason <> '' ORDER BY page, iccid LIMIT %s", [run_id, limit])
        return [{"iccid": iccid, "page": page, "reason": reason} for iccid, page, reason in cursor.fetchall()]


def staging_customers_to_read(*, run_id: int, limit: int, all_listed: bool) -> list[str]:
    """ICCIDs of the run's staged SIMs whose customer must be read (Get Device Details; the device list does not
    name it, nor when a SIM last changed): with `all_listed` (an incremental sync lists only SIMs that changed,
    a customer change among them) every one, else new SIMs and those whose customer is still to be read.
    Oldest change first (the device list's order), at most `limit`."""
    wanted = "" if all_listed else "AND (d.id IS NULL OR d.customer_name IS NULL) "
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT s.iccid FROM {STAGING} s LEFT JOIN {DEVICE} d ON d.provider_id = s.provider_id "  # noqa: S608
            f"AND d.iccid = s.iccid WHERE s.sync_run_id = %s AND s.reject_reason = '' AND s.customer IS NULL "
            f"{wanted}ORDER BY s.page, s.iccid LIMIT %s", [run_id, limit])
        return [iccid for (iccid,) in cursor.fetchall()]


def staging_customers_write(*, provider_id: int, run_id: int, customers: dict[str, str]) -> None:
    """The customer Get Device Details named for each ICCID ("" for none), onto the run's staged rows.

    Each row is found through the unique (provider, ICCID) index: by run and ICCID alone the planner takes the run
    index, which every staged row of the sync shares (a scan of the whole fleet per SIM: hours at 1M)."""
    with connection.cursor() as cursor:
        cursor.executemany(f"UPDATE {STAGING} SET customer = %s "  # noqa: S608
                           f"WHERE provider_id = %s AND iccid = %s AND sync_run_id = %s",
                           [(name, provider_id, iccid, run_id) for iccid, name in customers.items()])


def staging_merge(*, provider_id: int, run_id: int, now: dt.datetime, mark_missing: bool,
                  all_listed_changed: bool = False) -> MergeCounts:
    """Staging -> Device with four set-based statements. Call inside the merge transaction.

    Rows whose data did not change are not written at all, so an incremental
    sync touches only the SIMs the carrier changed.
    """
    pg = _is_postgres()
    distinct = "IS DISTINCT FROM" if pg else "IS NOT"
    stamp = connection.ops.adapt_datetimefield_value(now)
    tenant_id = ServiceProvider.objects.filter(pk=provider_id).values_list("tenant_id", flat=True).get()
    joins = (f"LEFT JOIN {RATE_PLAN} rp ON rp.provider_id = s.provider_id AND rp.code = s.rate_plan_code "
             f"LEFT JOIN {COMM_PLAN} cp ON cp.provider_id = s.provider_id AND cp.name = s.communication_plan_name "
             f"LEFT JOIN {CUSTOMER} cu ON cu.tenant_id = {int(tenant_id)} AND cu.name = s.customer")
    # The customer: as read in this sync (s.customer; "" is none), else the one known before. A SIM that changed
    # (`all_listed_changed`: every SIM an incremental sync lists) and was not read keeps its customer but is
    # marked to be read again (customer_name NULL).
    customer_id = f"CASE WHEN s.customer IS NULL THEN {DEVICE}.customer_id ELSE cu.id END"
    customer_name = (f"CASE WHEN s.customer IS NOT NULL THEN s.customer "
                     f"ELSE {'NULL' if all_listed_changed else f'{DEVICE}.customer_name'} END")
    with connection.cursor() as cursor:
        if pg:
            # Staging was empty when autovacuum last looked: without fresh statistics the planner
            # probes it with a nested loop per device row (seconds at 10k rows, hours at 1M).
            cursor.execute(f"ANALYZE {STAGING}")
        # The carrier's new communication plans become catalogue rows (allowing no rate plan until someone says which).
        cursor.execute(
            f"INSERT INTO {COMM_PLAN} (provider_id, name, created_at) "  # noqa: S608
            f"SELECT DISTINCT s.provider_id, s.communication_plan_name, %s FROM {STAGING} s "
            f"WHERE s.sync_run_id = %s AND s.reject_reason = '' AND NOT EXISTS ("
            f"SELECT 1 FROM {COMM_PLAN} c WHERE c.provider_id = s.provider_id AND c.name = s.communication_plan_name) "
            f"ON CONFLICT (provider_id, name) DO NOTHING RETURNING name", [stamp, run_id])
        new_plans = sorted(name for (name,) in cursor.fetchall())
        # The tenant's customers the carrier named for the first time.
        cursor.execute(
            f"INSERT INTO {CUSTOMER} (tenant_id, name, amop_customer_id, amop_site_id, created_at) "  # noqa: S608
            f"SELECT DISTINCT %s, s.customer, '', '', %s FROM {STAGING} s WHERE s.sync_run_id = %s "
            f"AND s.reject_reason = '' AND s.customer IS NOT NULL AND s.customer <> '' AND NOT EXISTS ("
            f"SELECT 1 FROM {CUSTOMER} c WHERE c.tenant_id = %s AND c.name = s.customer) "
            f"ON CONFLICT (tenant_id, name) DO NOTHING", [tenant_id, stamp, run_id, tenant_id])

        changed = " OR ".join([
            f"{DEVICE}.status <> s.status", f"{DEVICE}.rate_plan_code <> s.rate_plan_code",
            f"{DEVICE}.communication_plan_name <> s.communication_plan_name",
            f"{DEVICE}.rate_plan_id {distinct} rp.id", f"{DEVICE}.communication_plan_id {distinct} cp.id",
            f"{DEVICE}.missing_since IS NOT NULL",
            f"{DEVICE}.customer_id {distinct} ({customer_id})",
            f"{DEVICE}.customer_name {distinct} ({customer_name})",
            f"(s.msisdn <> '' AND {DEVICE}.msisdn <> s.msisdn)",
            *(f"(s.{c} IS NOT NULL AND {DEVICE}.{c} {distinct} s.{c})" for c in ("date_activated", "date_added",
                                                                               "date_updated")),
        ])
        cursor.execute(
            f"UPDATE {DEVICE} SET status = s.status, rate_plan_id = rp.id, rate_plan_code = s.rate_plan_code, "  # noqa: S608
            f"communication_plan_id = cp.id, communication_plan_name = s.communication_plan_name, "
            f"msisdn = CASE WHEN s.msisdn <> '' THEN s.msisdn ELSE {DEVICE}.msisdn END, "
            f"customer_id = {customer_id}, customer_name = {customer_name}, "
            f"date_activated = COALESCE(s.date_activated, {DEVICE}.date_activated), "
            f"date_added = COALESCE(s.date_added, {DEVICE}.date_added), "
            f"date_updated = COALESCE(s.date_updated, {DEVICE}.date_updated), "
            f"missing_since = NULL, synced_at = %s, "
            f"plan_changed_at = CASE WHEN {DEVICE}.rate_plan_code <> s.rate_plan_code THEN %s "
            f"ELSE {DEVICE}.plan_changed_at END, "
            # The moment a SIM stops is kept from the first sync that sees it stopped; a SIM activated again clears it.
            f"deactivated_at = CASE WHEN s.status IN {STOPPED_SQL} THEN CASE WHEN {DEVICE}.status IN {STOPPED_SQL} "
            f"THEN COALESCE({DEVICE}.deactivated_at, s.date_updated, %s) ELSE COALESCE(s.date_updated, %s) END "
            f"ELSE NULL END "
            f"FROM {STAGING} s {joins} "
            f"WHERE s.sync_run_id = %s AND s.reject_reason = '' AND {DEVICE}.provider_id = s.provider_id "
            f"AND {DEVICE}.iccid = s.iccid AND ({changed})", [stamp, stamp, stamp, stamp, run_id])
        updated = cursor.rowcount

        cursor.execute(
            f"INSERT INTO {DEVICE} (provider_id, iccid, status, rate_plan_id, rate_plan_code, communication_plan_id, "  # noqa: S608
            f"communication_plan_name, msisdn, customer_id, customer_name, sim_notes, date_activated, date_added, "
            f"date_updated, missing_since, synced_at, deactivated_at) SELECT s.provider_id, s.iccid, s.status, rp.id, "
            f"s.rate_plan_code, cp.id, s.communication_plan_name, s.msisdn, cu.id, s.customer, '', s.date_activated, s.date_added, s.date_updated, NULL, %s, "
            f"CASE WHEN s.status IN {STOPPED_SQL} THEN COALESCE(s.date_updated, %s) ELSE NULL END "
            f"FROM {STAGING} s {joins} WHERE s.sync_run_id = %s AND s.reject_reason = '' AND NOT EXISTS ("
            f"SELECT 1 FROM {DEVICE} d WHERE d.provider_id = s.provider_id AND d.iccid = s.iccid)",
            [stamp, stamp, run_id])
        inserted = cursor.rowcount

        missing = 0
        if mark_missing:
            # Rejected rows are staged too: a SIM the carrier reported badly still exists.
            cursor.execute(
                f"UPDATE {DEVICE} SET missing_since = %s WHERE provider_id = %s AND missing_since IS NULL "  # noqa: S608
                f"AND NOT EXISTS (SELECT 1 FROM {STAGING} s WHERE s.provider_id = {DEVICE}.provider_id "
                f"AND s.iccid = {DEVICE}.iccid AND s.sync_run_id = %s)", [stamp, provider_id, run_id])
            missing = cursor.rowcount
    if inserted + updated + missing >= ANALYZE_AFTER_ROWS:
        statistics_refresh(usage=False)
    return MergeCounts(inserted=inserted, updated=updated, missing=missing, new_communication_plans=new_plans)


# A merge or usage write that changed at least this many rows refreshes the planner's statistics of the table.
ANALYZE_AFTER_ROWS = 10_000


def statistics_refresh(*, devices: bool = True, usage: bool = True) -> None:
    """ANALYZE the SIM and usage tables (PostgreSQL). After a bulk change the planner's estimates are of the table
    as it was: with a fleet synced or seeded since, it estimates one row per account and probes the usage of a
    million SIMs one index lookup each (4.5 s for a 460k-SIM group, 1.3 s with fresh statistics)."""
    if not _is_postgres():
        return
    with connection.cursor() as cursor:
        for table, wanted in ((DEVICE, devices), (USAGE, usage)):
            if wanted:
                cursor.execute(f"ANALYZE {table}")


def usage_write(*, rows: Sequence[tuple]) -> None:
    """Upsert DeviceUsage rows (USAGE_COLUMNS order), one per (device, billing period)."""
    if not rows:
        return
    update_sql = ", ".join(f"{c} = excluded.{c}" for c in USAGE_COLUMNS[2:])
    if _is_postgres():
        _copy_upsert(rows=rows, load_table="carrieropt_usage_load", columns=USAGE_COLUMNS, target=USAGE,
                     conflict="device_id, billing_period_id", update_sql=update_sql, load_ddl=(
                         "device_id bigint, billing_period_id bigint, ctd_bytes bigint, usage_mb numeric(16, 3), "
                         "projected_mb numeric(16, 3), usage_date timestamptz, synced_at timestamptz"))
    else:
        _values_upsert(rows=_adapt_dates(rows, USAGE_DATES), columns=USAGE_COLUMNS, target=USAGE,
                       conflict="device_id, billing_period_id", update_sql=update_sql)
