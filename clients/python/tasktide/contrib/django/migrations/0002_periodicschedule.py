from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("tasktide", "0001_initial")]

    operations = [
        migrations.CreateModel(
            name="PeriodicSchedule",
            fields=[("name", models.CharField(max_length=255, primary_key=True, serialize=False))],
            options={
                "verbose_name": "periodic schedule",
                "verbose_name_plural": "periodic schedules",
                "managed": False,
                "default_permissions": ("view",),
            },
        ),
    ]
