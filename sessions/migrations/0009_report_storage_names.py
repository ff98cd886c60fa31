"""Reports moved to Django's storage API: a session's report_path is now the report's name in
STORAGES["reports"], no longer an absolute path on the machine that wrote it. Paths under the old folder
(MEDIA_ROOT/reports) become names; any other path is left as it was (and is never served). Reversible."""
from pathlib import Path, PurePosixPath

from django.conf import settings
from django.db import migrations


def _old_folder() -> Path:
    return Path(settings.MEDIA_ROOT) / "reports"


def paths_to_names(apps, schema_editor):
    Session = apps.get_model("optsessions", "OptimizationSession")
    folder = _old_folder()
    db = schema_editor.connection.alias
    for pk, stored in Session.objects.using(db).exclude(report_path="").values_list("pk", "report_path").iterator():
        path = Path(stored)
        if path.is_absolute() and path.is_relative_to(folder):
            Session.objects.using(db).filter(pk=pk).update(report_path=path.relative_to(folder).as_posix())


def names_to_paths(apps, schema_editor):
    Session = apps.get_model("optsessions", "OptimizationSession")
    folder = _old_folder()
    db = schema_editor.connection.alias
    for pk, stored in Session.objects.using(db).exclude(report_path="").values_list("pk", "report_path").iterator():
        if not PurePosixPath(stored).is_absolute():
            Session.objects.using(db).filter(pk=pk).update(report_path=str(folder / stored))


class Migration(migrations.Migration):

    dependencies = [
        ("optsessions", "0008_session_started_cancelled_by"),
    ]

    operations = [
        migrations.RunPython(paths_to_names, names_to_paths, elidable=False),
    ]
