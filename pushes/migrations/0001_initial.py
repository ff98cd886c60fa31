import django.db.models.deletion
from django.db import migrations, models


MODELS = ['rateplanpush', 'rateplanpushbatch', 'rateplanchange']


def _move_content_types(apps, schema_editor, *, old, new):
    ContentType = apps.get_model('contenttypes', 'ContentType')
    db = schema_editor.connection.alias
    taken = set(ContentType.objects.using(db).filter(app_label=new, model__in=MODELS).values_list('model', flat=True))
    ContentType.objects.using(db).filter(app_label=old, model__in=set(MODELS) - taken).update(app_label=new)


def content_types_forward(apps, schema_editor):
    _move_content_types(apps, schema_editor, old='devices', new='pushes')


def content_types_backward(apps, schema_editor):
    _move_content_types(apps, schema_editor, old='pushes', new='devices')


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('contenttypes', '0002_remove_content_type_name'),
        ('devices', '0004_rate_plan_push_moved_to_pushes'),
        ('optsessions', '0002_session_created_at_default'),
        ('rateplans', '0001_initial'),
    ]

    # Until this migration the push lived in devices (devices/migrations/0003_rate_plan_push.py created its
    # tables). Take the models over without touching the database, then rename the tables to this app's
    # names: rows, keys and constraints stay as they are.
    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='RatePlanPush',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('trigger', models.CharField(default='manual', help_text='auto, api, admin or command', max_length=20)),
                        ('status', models.CharField(choices=[('running', 'Sending changes'), ('verifying', 'Verifying'), ('succeeded', 'Succeeded'), ('finished_with_errors', 'Finished, some SIMs need attention'), ('failed', 'Failed'), ('no_go', 'Not started (No-Go)')], default='running', max_length=30)),
                        ('decision', models.CharField(choices=[('go', 'Go'), ('no_go', 'No-Go')], max_length=10)),
                        ('decision_reason', models.TextField(blank=True)),
                        ('period_ends_at', models.DateTimeField(help_text='When the billing period ends (midnight, account time zone).')),
                        ('minutes_left', models.FloatField(help_text='Minutes between the decision and the end of the billing period.')),
                        ('minutes_needed', models.FloatField(help_text='min(changes, batch size) / rate.')),
                        ('rate_per_minute', models.FloatField(help_text='SIMs per minute the decision assumed.')),
                        ('rate_source', models.CharField(blank=True, max_length=200)),
                        ('batch_size', models.PositiveIntegerField(default=250)),
                        ('total', models.PositiveIntegerField(default=0, help_text='Changes in this push.')),
                        ('applied', models.PositiveIntegerField(default=0)),
                        ('rejected', models.PositiveIntegerField(default=0)),
                        ('discrepancies', models.PositiveIntegerField(default=0)),
                        ('failed', models.PositiveIntegerField(default=0)),
                        ('verify_mismatches', models.PositiveIntegerField(default=0)),
                        ('send_seconds', models.FloatField(default=0, help_text='Time spent sending, summed over batch runs.')),
                        ('measured_rate', models.FloatField(blank=True, help_text='SIMs per minute this push achieved.', null=True)),
                        ('tuning', models.JSONField(blank=True, default=dict, help_text='Call timeouts, attempts and leases every worker of this push uses.')),
                        ('claimed_by', models.CharField(blank=True, help_text='Worker verifying the push.', max_length=100)),
                        ('lease_expires_at', models.DateTimeField(blank=True, null=True)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('started_at', models.DateTimeField(blank=True, null=True)),
                        ('verify_started_at', models.DateTimeField(blank=True, null=True)),
                        ('finished_at', models.DateTimeField(blank=True, null=True)),
                        ('error', models.TextField(blank=True)),
                        ('provider', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='rate_plan_pushes', to='rateplans.serviceprovider')),
                        ('session', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='rate_plan_pushes', to='optsessions.optimizationsession')),
                    ],
                    options={
                        'db_table': 'devices_rateplanpush',
                        'ordering': ['-created_at', '-pk'],
                    },
                ),
                migrations.CreateModel(
                    name='RatePlanChange',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('iccid', models.CharField(max_length=20, verbose_name='ICCID')),
                        ('from_plan_code', models.CharField(blank=True, help_text='The plan the optimization saw.', max_length=120)),
                        ('to_plan_code', models.CharField(max_length=120)),
                        ('batch', models.PositiveIntegerField(help_text='Number of the push batch this change belongs to.')),
                        ('status', models.CharField(choices=[('pending', 'Pending'), ('sending', 'Sending'), ('applied', 'Applied'), ('rejected', 'Rejected by the carrier'), ('discrepancy', 'Skipped: plan changed on the carrier'), ('failed', 'Failed')], default='pending', max_length=20)),
                        ('attempts', models.PositiveSmallIntegerField(default=0, help_text='Times a worker claimed this change.')),
                        ('sends', models.PositiveSmallIntegerField(default=0, help_text='PUTs recorded before being sent.')),
                        ('sent_at', models.DateTimeField(blank=True, help_text='Last claim or PUT of this change.', null=True)),
                        ('carrier_plan', models.CharField(blank=True, help_text='The plan the carrier showed when last read.', max_length=120)),
                        ('error', models.TextField(blank=True, help_text="The carrier's answer when it refused, or why it failed.")),
                        ('finished_at', models.DateTimeField(blank=True, null=True)),
                        ('verified', models.BooleanField(blank=True, help_text='Verification read: the carrier shows the new plan.', null=True)),
                        ('verified_plan', models.CharField(blank=True, max_length=120)),
                        ('verify_reads', models.PositiveSmallIntegerField(default=0, help_text='Verification reads done (a mismatch is read twice).')),
                        ('device', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='rate_plan_changes', to='devices.device')),
                        ('from_plan', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='rateplans.rateplan')),
                        ('to_plan', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to='rateplans.rateplan')),
                        ('push', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='changes', to='pushes.rateplanpush')),
                    ],
                    options={
                        'db_table': 'devices_rateplanchange',
                        'ordering': ['push', 'batch', 'iccid'],
                    },
                ),
                migrations.CreateModel(
                    name='RatePlanPushBatch',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('number', models.PositiveIntegerField()),
                        ('status', models.CharField(choices=[('pending', 'Pending'), ('running', 'Running'), ('done', 'Done')], default='pending', max_length=20)),
                        ('attempts', models.PositiveSmallIntegerField(default=0)),
                        ('claimed_by', models.CharField(blank=True, max_length=100)),
                        ('lease_expires_at', models.DateTimeField(blank=True, null=True)),
                        ('started_at', models.DateTimeField(blank=True, null=True)),
                        ('finished_at', models.DateTimeField(blank=True, null=True)),
                        ('push', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='batches', to='pushes.rateplanpush')),
                    ],
                    options={
                        'db_table': 'devices_rateplanpushbatch',
                        'ordering': ['push', 'number'],
                    },
                ),
                migrations.AddConstraint(
                    model_name='rateplanpush',
                    constraint=models.UniqueConstraint(condition=models.Q(('status__in', ['running', 'verifying'])), fields=('provider',), name='one_running_push_per_provider'),
                ),
                migrations.AddConstraint(
                    model_name='rateplanpush',
                    constraint=models.CheckConstraint(condition=models.Q(models.Q(('status', 'no_go'), _negated=True), ('decision', 'no_go'), _connector='OR'), name='push_no_go_has_decision'),
                ),
                migrations.AddConstraint(
                    model_name='rateplanpush',
                    constraint=models.CheckConstraint(condition=models.Q(('batch_size__gte', 1)), name='push_batch_size_positive'),
                ),
                migrations.AddIndex(
                    model_name='rateplanchange',
                    index=models.Index(fields=['push', 'batch', 'status'], name='push_change_batch_status'),
                ),
                migrations.AddConstraint(
                    model_name='rateplanchange',
                    constraint=models.UniqueConstraint(fields=('push', 'device'), name='push_change_unique_device'),
                ),
                migrations.AddConstraint(
                    model_name='rateplanchange',
                    constraint=models.CheckConstraint(condition=models.Q(('from_plan_code', models.F('to_plan_code')), _negated=True), name='push_change_moves_plan'),
                ),
                migrations.AddIndex(
                    model_name='rateplanpushbatch',
                    index=models.Index(condition=models.Q(('status', 'running')), fields=['lease_expires_at'], name='push_batch_running_lease'),
                ),
                migrations.AddConstraint(
                    model_name='rateplanpushbatch',
                    constraint=models.UniqueConstraint(fields=('push', 'number'), name='push_batch_unique_number'),
                ),
            ],
            database_operations=[],
        ),
        migrations.AlterModelTable(name='rateplanpush', table=None),
        migrations.AlterModelTable(name='rateplanpushbatch', table=None),
        migrations.AlterModelTable(name='rateplanchange', table=None),
        # Permissions and admin history refer to content types: move them along with the models.
        migrations.RunPython(content_types_forward, content_types_backward),
    ]
