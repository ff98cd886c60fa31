"""The run of a session moves into the optimizer: optsessions.OptimizationInstance becomes
optimizer.OptimizationRun (same ids), and groups, work items and assignments point at it as `run`.

The session's side (session.run, dropping the instance) is optsessions 0005, which runs next.
"""
import django.db.models.deletion
from django.core.management.color import no_style
from django.db import migrations, models
from django.db.models import F

RELATED = ("CommGroup", "OptimizationQueue", "DeviceAssignment")


def instances_to_runs(apps, schema_editor):
    Instance = apps.get_model("optsessions", "OptimizationInstance")
    Run = apps.get_model("optimizer", "OptimizationRun")
    instances = list(Instance.objects.select_related("session").order_by("pk"))
    Run.objects.bulk_create([
        Run(pk=i.pk, provider_id=i.session.provider_id, billing_period_id=i.session.billing_period_id,
            method=i.session.method, status=i.status, started_at=i.started_at, finished_at=i.finished_at)
        for i in instances
    ], batch_size=1000)
    for i in instances:  # auto_now_add stamped them now; keep when the instance was made
        Run.objects.filter(pk=i.pk).update(created_at=i.created_at)
    with schema_editor.connection.cursor() as cursor:
        for sql in schema_editor.connection.ops.sequence_reset_sql(no_style(), [Run]):
            cursor.execute(sql)
    for name in RELATED:
        apps.get_model("optimizer", name).objects.update(run_id=F("instance_id"))


class Migration(migrations.Migration):

    dependencies = [
        ("optimizer", "0002_result_snapshot"),
        ("optsessions", "0004_stage_claim_heartbeat"),
        ("rateplans", "0002_carrier_url_https"),
    ]

    operations = [
        migrations.CreateModel(
            name="OptimizationRun",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("method", models.CharField(choices=[("certified", "Certified (optimal with lower bound)"), ("legacy", "Legacy strategies")], default="certified", max_length=20)),
                ("status", models.CharField(choices=[("NotStarted", "Not started"), ("CommGroupSetup", "Communication group setup"), ("RunningPermutations", "Running permutations"), ("CleaningUp", "Cleaning up"), ("CompleteWithSuccess", "Complete with success"), ("CompleteWithErrors", "Complete with errors")], default="NotStarted", max_length=30)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("started_at", models.DateTimeField(blank=True, null=True)),
                ("finished_at", models.DateTimeField(blank=True, null=True)),
                ("billing_period", models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="optimization_runs", to="rateplans.billingperiod")),
                ("provider", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="optimization_runs", to="rateplans.serviceprovider")),
            ],
            options={"ordering": ["-pk"]},
        ),
        *[migrations.AddField(
            model_name=model, name="run",
            field=models.ForeignKey(null=True, on_delete=django.db.models.deletion.CASCADE, related_name=related,
                                    to="optimizer.optimizationrun"),
        ) for model, related in (("commgroup", "comm_groups"), ("optimizationqueue", "queues"),
                                 ("deviceassignment", "assignments"))],
        migrations.RunPython(instances_to_runs, migrations.RunPython.noop, elidable=False),
        migrations.RemoveConstraint(model_name="commgroup", name="commgroup_unique_plans_per_instance"),
        migrations.RemoveConstraint(model_name="deviceassignment", name="assignment_unique_device_per_instance"),
        migrations.RemoveIndex(model_name="deviceassignment", name="assignment_changed"),
        migrations.AlterModelOptions(name="commgroup", options={"ordering": ["run", "name"]}),
        migrations.AlterModelOptions(name="deviceassignment", options={"ordering": ["run", "iccid"]}),
        *[migrations.RemoveField(model_name=model, name="instance")
          for model in ("commgroup", "optimizationqueue", "deviceassignment")],
        *[migrations.AlterField(
            model_name=model, name="run",
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name=related,
                                    to="optimizer.optimizationrun"),
        ) for model, related in (("commgroup", "comm_groups"), ("optimizationqueue", "queues"),
                                 ("deviceassignment", "assignments"))],
        migrations.AddConstraint(
            model_name="commgroup",
            constraint=models.UniqueConstraint(fields=("run", "plan_key"), name="commgroup_unique_plans_per_run"),
        ),
        migrations.AddConstraint(
            model_name="deviceassignment",
            constraint=models.UniqueConstraint(fields=("run", "device"), name="assignment_unique_device_per_run"),
        ),
        migrations.AddIndex(
            model_name="deviceassignment",
            index=models.Index(fields=["run", "changed"], name="assignment_run_changed"),
        ),
        *[migrations.AlterField(
            model_name=model, name="method",
            field=models.CharField(choices=[("certified", "Certified (optimal with lower bound)"), ("legacy", "Legacy strategies")], max_length=20),
        ) for model in ("optimizationqueue", "optimizationresult")],
    ]
