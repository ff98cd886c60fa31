"""The SIM list's ordering indexes also hold the changed flag (INCLUDE, PostgreSQL): a page of the changes is then
an index-only scan however deep. SQLite has no INCLUDE; its indexes stay as they are.

Built CONCURRENTLY beside the old index, then swapped in (outside a transaction: atomic = False), so a table of
many runs stays readable and writable while they build. The model's Meta.indexes keeps the plain declaration
(Django's `include` would warn on SQLite at every command)."""

from django.db import migrations

TABLE = "optimizer_deviceassignment"
INDEXES = {
    "assignment_run_iccid": "run_id, iccid",
    "assignment_run_saving": "run_id, saving DESC NULLS LAST, iccid",
}


def _rebuild(schema_editor, include: str) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, columns in INDEXES.items():
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}_next")  # a build interrupted before
        schema_editor.execute(f"CREATE INDEX CONCURRENTLY {name}_next ON {TABLE} ({columns}){include}")
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
        schema_editor.execute(f"ALTER INDEX {name}_next RENAME TO {name}")


def cover_changed(apps, schema_editor):
    _rebuild(schema_editor, " INCLUDE (changed)")


def uncover_changed(apps, schema_editor):
    _rebuild(schema_editor, "")


class Migration(migrations.Migration):
    atomic = False  # CREATE/DROP INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ('optimizer', '0016_assignment_move_index'),
    ]

    operations = [
        migrations.RunPython(cover_changed, uncover_changed),
    ]
