"""The SIM list's ordering indexes also hold the changed flag (INCLUDE, PostgreSQL): a page of the changes is then
an index-only scan however deep. SQLite has no INCLUDE; its indexes stay as they are."""

from django.db import migrations

TABLE = "optimizer_deviceassignment"
INDEXES = {
    "assignment_run_iccid": "run_id, iccid",
    "assignment_run_saving": "run_id, saving DESC NULLS LAST, iccid",
}


def _recreate(schema_editor, include: str) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, columns in INDEXES.items():
        schema_editor.execute(f"DROP INDEX {name}")
        schema_editor.execute(f"CREATE INDEX {name} ON {TABLE} ({columns}){include}")


def cover_changed(apps, schema_editor):
    _recreate(schema_editor, " INCLUDE (changed)")


def uncover_changed(apps, schema_editor):
    _recreate(schema_editor, "")


class Migration(migrations.Migration):

    dependencies = [
        ('optimizer', '0016_assignment_move_index'),
    ]

    operations = [
        migrations.RunPython(cover_changed, uncover_changed),
    ]
