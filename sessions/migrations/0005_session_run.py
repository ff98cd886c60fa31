"""A session points down at its optimizer run (optimizer 0003 made one per instance, with the same id);
the instance model is gone from sessions."""
import django.db.models.deletion
from django.db import migrations, models


def sessions_to_runs(apps, schema_editor):
    Session = apps.get_model("optsessions", "OptimizationSession")
    Instance = apps.get_model("optsessions", "OptimizationInstance")
    Run = apps.get_model("optimizer", "OptimizationRun")
    for instance_id, session_id in Instance.objects.order_by("-pk").values_list("pk", "session_id"):
        # A session had one instance; were there more, the first one (lowest id) is the one used.
        Session.objects.filter(pk=session_id).update(run_id=instance_id)
    for session in Session.objects.filter(run__isnull=True):
        run = Run.objects.create(provider_id=session.provider_id, billing_period_id=session.billing_period_id,
                                 method=session.method)
        Session.objects.filter(pk=session.pk).update(run_id=run.pk)


class Migration(migrations.Migration):

    dependencies = [
        ("optsessions", "0004_stage_claim_heartbeat"),
        ("optimizer", "0003_optimization_run"),
    ]

    operations = [
        migrations.AddField(
            model_name="optimizationsession", name="run",
            field=models.OneToOneField(null=True, on_delete=django.db.models.deletion.CASCADE, related_name="+",
                                       to="optimizer.optimizationrun"),
        ),
        migrations.RunPython(sessions_to_runs, migrations.RunPython.noop, elidable=False),
        migrations.DeleteModel(name="OptimizationInstance"),
        migrations.AlterField(
            model_name="optimizationsession", name="run",
            field=models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name="+",
                                       to="optimizer.optimizationrun"),
        ),
    ]
