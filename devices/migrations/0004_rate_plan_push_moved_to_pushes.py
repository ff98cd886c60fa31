from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('devices', '0003_rate_plan_push'),
    ]

    # The push moved to its own app (pushes/migrations/0001_initial.py takes the tables over and renames
    # them): devices forgets the models without touching the database, so no row is lost.
    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveField(
                    model_name='rateplanpush',
                    name='provider',
                ),
                migrations.RemoveField(
                    model_name='rateplanpush',
                    name='session',
                ),
                migrations.RemoveField(
                    model_name='rateplanpushbatch',
                    name='push',
                ),
                migrations.DeleteModel(
                    name='RatePlanChange',
                ),
                migrations.DeleteModel(
                    name='RatePlanPush',
                ),
                migrations.DeleteModel(
                    name='RatePlanPushBatch',
                ),
            ],
            database_operations=[],
        ),
    ]
